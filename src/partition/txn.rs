//! Transactions at the partition layer: the COMMIT and ABORT markers the
//! transaction coordinator writes (Kafka's WriteTxnMarkers), the check
//! before a producer's first transactional batch on a partition (KIP-890:
//! the coordinator must have the partition in the producer's transaction),
//! and who hears of written markers (the group coordinator completes
//! transactional offset commits on `__consumer_offsets`).
//!
//! The coordinator itself lives above this layer and registers its verifier
//! (`set_txn_verifier`); the group coordinator registers a marker listener.
//! A node without a verifier accepts transactional batches unchecked.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;

use super::{AppendRequest, PartitionError, Partitions};
use crate::log::batch::{self, BatchError};
use crate::log::txn::Marker;
use crate::log::{AppendError, ProducerView};
use crate::replication::CommitWait;

/// How long a marker waits for the ISR before it is reported as failed (the
/// coordinator retries).
const MARKER_COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// One producer's transaction result for a set of partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

/// Why a transactional batch was refused by the coordinator's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnVerifyError {
    #[error("not the coordinator of the transactional id")]
    NotCoordinator,
    #[error("the transaction coordinator is loading")]
    CoordinatorLoading,
    #[error("the producer was fenced by a newer instance")]
    ProducerFenced,
    #[error("the producer epoch is not the transaction's")]
    InvalidProducerEpoch,
    #[error("the partition is not in the producer's transaction")]
    NotInTransaction,
    #[error("the markers of the producer's previous transaction are being written")]
    ConcurrentTransactions,
}

/// What the partition layer asks of the transaction coordinator before a
/// producer's first transactional batch on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnAsk {
    /// KIP-890 part 1 (Produce up to v11): the client added the partition
    /// itself (AddPartitionsToTxn); the coordinator must have it in the
    /// producer's ongoing transaction.
    Verify,
    /// KIP-890 part 2 (Produce v12+, TxnOffsetCommit v5+): the client does
    /// not send AddPartitionsToTxn; the coordinator adds the partition to
    /// the producer's transaction (starting it) if the epoch is current.
    Add,
}

/// Per partition: Ok or why it is refused.
pub type VerifyResults = Vec<((String, i32), Result<(), TxnVerifyError>)>;

/// Asked by `append_records` before it accepts the first transactional
/// batch of a producer on a partition.
pub trait TxnVerifier: Send + Sync + 'static {
    fn verify(
        &self,
        ask: TxnAsk,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'static, VerifyResults>;
}

/// Told after a marker was written and committed on a partition.
pub trait TxnMarkerListener: Send + Sync + 'static {
    fn markers_written(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    );
}

/// The registered verifier and marker listeners.
#[derive(Default)]
pub(super) struct TxnHooks {
    verifier: RwLock<Option<Arc<dyn TxnVerifier>>>,
    listeners: RwLock<Vec<Arc<dyn TxnMarkerListener>>>,
}

/// A partition a produce request asks the coordinator about: (topic
/// index, partition index, topic, partition).
type Ask = (usize, usize, String, i32);

/// Each partition's result of writing markers.
pub type MarkerResults = Vec<(String, i32, Result<(), PartitionError>)>;

impl Partitions {
    /// Register the transaction coordinator's check (KIP-890).
    pub fn set_txn_verifier(&self, verifier: Arc<dyn TxnVerifier>) {
        *self.txn.verifier.write().unwrap_or_else(|p| p.into_inner()) = Some(verifier);
    }

    /// Register a listener for written markers.
    pub fn add_txn_marker_listener(&self, listener: Arc<dyn TxnMarkerListener>) {
        self.txn
            .listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Append a COMMIT or ABORT marker to each listed partition this node
    /// leads and wait until the ISR has it; then its last stable offset
    /// and aborted index have moved, and the listeners are told. One
    /// result list per marker, in order.
    pub async fn write_txn_markers(&self, markers: Vec<TxnMarker>) -> Vec<MarkerResults> {
        let mut results: Vec<MarkerResults> = Vec::with_capacity(markers.len());
        let mut waits: Vec<(usize, usize, CommitWait)> = Vec::new();
        for (m, marker) in markers.iter().enumerate() {
            let kind = if marker.commit {
                Marker::Commit
            } else {
                Marker::Abort
            };
            let mut out = Vec::with_capacity(marker.partitions.len());
            for (topic, index) in &marker.partitions {
                let log = self
                    .broker
                    .topic(topic)
                    .and_then(|t| t.partition(*index))
                    .ok_or(PartitionError::UnknownTopicOrPartition);
                let written = log.and_then(|log| {
                    self.leader_isr_len(&log)?;
                    let outcome = log.write_marker(
                        marker.producer_id,
                        marker.producer_epoch,
                        kind,
                        marker.coordinator_epoch,
                    )?;
                    self.appended(&log);
                    Ok(CommitWait {
                        log,
                        target: outcome.last_offset + 1,
                        min_insync: 1,
                    })
                });
                match written {
                    Ok(wait) => {
                        waits.push((m, out.len(), wait));
                        out.push((topic.clone(), *index, Ok(())));
                    }
                    Err(e) => {
                        tracing::debug!(%topic, partition = index, error = %e, "marker not written");
                        out.push((topic.clone(), *index, Err(e)));
                    }
                }
            }
            results.push(out);
        }
        let (places, waits): (Vec<_>, Vec<_>) =
            waits.into_iter().map(|(m, p, w)| ((m, p), w)).unzip();
        let outcomes = self.wait_committed(&waits, MARKER_COMMIT_TIMEOUT).await;
        for (((m, p), outcome), wait) in places.into_iter().zip(outcomes).zip(&waits) {
            let mut outcome = outcome.map_err(PartitionError::from);
            if outcome.is_ok() && wait.log.must_sync_before_ack() {
                if let Err(e) = wait.log.sync().await {
                    outcome = Err(PartitionError::Flush(e.to_string()));
                }
            }
            if outcome.is_ok() {
                let marker = &markers[m];
                let listeners = self
                    .txn
                    .listeners
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                for l in listeners {
                    l.markers_written(
                        &wait.log.topic,
                        wait.log.partition,
                        marker.producer_id,
                        marker.producer_epoch,
                        marker.commit,
                    );
                }
            }
            results[m][p].2 = outcome;
        }
        results
    }

    /// The KIP-890 check of a produce request: for each partition whose
    /// records are transactional and whose producer has no transaction open
    /// there yet, ask the coordinator (to verify, or for Produce v12+ to add
    /// the partition: `req.txn_ask`). Returns the refused partitions by
    /// (topic index, partition index).
    pub(super) async fn verify_transactions(
        &self,
        req: &AppendRequest,
    ) -> HashMap<(usize, usize), PartitionError> {
        let mut refused = HashMap::new();
        // (producer id, epoch) -> [(topic index, partition index, topic, partition)]
        let mut asks: HashMap<(i64, i16), Vec<Ask>> = HashMap::new();
        for (t, topic) in req.topics.iter().enumerate() {
            for (p, (index, records)) in topic.partitions.iter().enumerate() {
                let Ok(h) = batch::parse_header(records) else {
                    continue;
                };
                if !h.is_transactional() {
                    continue;
                }
                if req.transactional_id.is_none() {
                    refused.insert(
                        (t, p),
                        PartitionError::Append(AppendError::Batch(BatchError::InvalidRecord(
                            "transactional records need a transactional id".into(),
                        ))),
                    );
                    continue;
                }
                let open = self
                    .broker
                    .topic(&topic.name)
                    .and_then(|tp| tp.partition(*index))
                    .is_some_and(|log| log.open_transaction(h.producer_id).is_some());
                if !open {
                    asks.entry((h.producer_id, h.producer_epoch))
                        .or_default()
                        .push((t, p, topic.name.clone(), *index));
                }
            }
        }
        let verifier = self
            .txn
            .verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (Some(verifier), Some(id)) = (verifier, req.transactional_id.as_ref()) else {
            return refused;
        };
        for ((producer_id, epoch), places) in asks {
            let partitions = places
                .iter()
                .map(|(_, _, name, index)| (name.clone(), *index))
                .collect();
            let verdicts: HashMap<(String, i32), Result<(), TxnVerifyError>> = verifier
                .verify(req.txn_ask, id.clone(), producer_id, epoch, partitions)
                .await
                .into_iter()
                .collect();
            for (t, p, name, index) in places {
                match verdicts.get(&(name, index)) {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        refused.insert((t, p), PartitionError::Txn(*e));
                    }
                    None => {
                        refused.insert(
                            (t, p),
                            PartitionError::Txn(TxnVerifyError::NotInTransaction),
                        );
                    }
                }
            }
        }
        refused
    }

    /// The producers a partition this node leads knows (DescribeProducers).
    pub fn describe_producers(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<ProducerView>, PartitionError> {
        let log = self
            .broker
            .topic(topic)
            .and_then(|t| t.partition(partition))
            .ok_or(PartitionError::UnknownTopicOrPartition)?;
        self.check_leader(&log, -1)?;
        Ok(log.producers())
    }
}
