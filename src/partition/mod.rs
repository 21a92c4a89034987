//! The partition layer, Kafka's `ReplicaManager` shape: one call down for a
//! write (`append_records`) and one for a read (`fetch_messages`), each
//! taking every partition of a request and returning one result per
//! partition, in request order.
//!
//! Owns: the produce policy (acks, the internal-topic guard, min-ISR, the
//! coordinator's check of transactional batches (`txn`), idempotence
//! through the log's producer state), the transaction markers,
//! telling replication about appends and waiting for acks=all, the fsync
//! before acknowledging (`--flush-interval-ms 0` or the topic's
//! `flush.messages`); the fetch policy (leader and
//! leader-epoch checks, byte limits, the long poll); the offset APIs
//! (`offsets`: ListOffsets, OffsetForLeaderEpoch, DeleteRecords, each one
//! call with its leader and epoch checks); topic changes made the
//! same way on one node and in a cluster (`topics`); auto-creation within
//! its limits per request and per client address (`auto_create`); leader
//! elections on request and the metadata quorum (`elections`), the log
//! directory (`log_dirs`) and what the cluster holds (`cluster_view`). A single
//! node is a replication set of one: the same code with
//! `Replication::Local`, so no caller asks "single node or cluster?".
//!
//! Must never: know the wire format (no Kafka error codes, no protocol
//! messages: it returns `PartitionError`), or import the layers above it
//! (`kafka`, `group`).
//!
//! Locks: none of its own; it takes no lock across an await.

mod auto_create;
mod cluster_view;
mod elections;
mod log_dirs;
mod offsets;
mod reassign;
mod topics;
mod txn;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use uuid::Uuid;

use crate::broker::{Broker, Topic, TopicError};
use crate::log::batch::{self, BatchError};
use crate::log::{AppendError, PartitionLog, ReadError, ReadLimit};
use crate::replication::{
    check_leader_epoch, CommitWait, LeadershipListener, ReplicaError, ReplicaManager,
};
use auto_create::AutoCreateLimits;
pub use log_dirs::LogDirError;
pub use offsets::{
    DeleteQuery, EpochQuery, OffsetQuery, TopicQueries, EARLIEST_LOCAL, LATEST_TIERED,
};
pub use txn::{TxnAsk, TxnMarker, TxnMarkerListener, TxnVerifier, TxnVerifyError, VerifyResults};

/// Why one partition of a request was not served.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("acks must be -1, 0 or 1")]
    InvalidRequiredAcks,
    /// The topic could not be found or created (shared by its partitions).
    #[error("{0}")]
    Topic(Arc<TopicError>),
    #[error("cannot produce to internal topic {0}")]
    InternalTopic(String),
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// The client named the topic by an id that is not its log's.
    #[error("the topic id does not match the log's")]
    InconsistentTopicId,
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error("the ISR has {isr} replica(s), fewer than min.insync.replicas {min_insync}")]
    NotEnoughReplicas { isr: usize, min_insync: usize },
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("offset outside the log")]
    OffsetOutOfRange {
        high_watermark: i64,
        log_start_offset: i64,
    },
    #[error("read failed: {0}")]
    Read(ReadError),
    /// A ListOffsets timestamp that is neither a time nor one of -1 to -5.
    #[error("no offset for timestamp {0}")]
    InvalidTimestamp(i64),
    #[error("{0}")]
    Flush(String),
    /// The transaction coordinator refused a transactional batch (KIP-890).
    #[error(transparent)]
    Txn(#[from] TxnVerifyError),
}

/// How this node replicates its partitions.
enum Replication {
    /// One node: it leads every partition with an ISR of itself.
    Local,
    /// A cluster member: the replica manager knows who leads what.
    Cluster(Arc<ReplicaManager>),
}

/// The partitions this node hosts, and how writes and reads reach them.
pub struct Partitions {
    broker: Arc<Broker>,
    replication: Replication,
    /// How many topics each client may auto-create per second.
    auto_create: AutoCreateLimits,
    /// The transaction coordinator's check and the marker listeners.
    txn: txn::TxnHooks,
}

/// One produce request, as the partition layer needs it.
pub struct AppendRequest {
    /// -1 (all in-sync replicas), 0 (no answer) or 1 (the leader).
    pub acks: i16,
    /// How long acks=all waits for the ISR.
    pub timeout: Duration,
    /// The producer's transactional id, for a transactional produce.
    pub transactional_id: Option<String>,
    /// What the coordinator is asked before a producer's first
    /// transactional batch on a partition (Produce v12+: add it).
    pub txn_ask: TxnAsk,
    /// The address the request came from (the key of the auto-creation limit).
    pub client: IpAddr,
    pub topics: Vec<TopicRecords>,
}

/// The record sets produced to one topic.
pub struct TopicRecords {
    pub name: String,
    /// (partition index, record batches as sent).
    pub partitions: Vec<(i32, Bytes)>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    /// The LogAppendTime stamped on the batches, or -1 for CreateTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

/// One partition's answer to a produce.
pub type AppendResult = Result<AppendInfo, PartitionError>;

/// One fetch request, as the partition layer needs it.
pub struct FetchRequest<'a> {
    /// A follower's broker id, or -1 for a consumer.
    pub replica_id: i32,
    pub max_wait: Duration,
    pub min_bytes: usize,
    pub max_bytes: usize,
    /// `isolation_level=read_committed`: read up to the last stable offset.
    pub read_committed: bool,
    pub topics: Vec<FetchTopic<'a>>,
}

/// The partitions fetched from one topic.
pub struct FetchTopic<'a> {
    pub name: &'a str,
    /// The id the client named the topic by (Fetch v13+, KIP-516), nil when
    /// it named it by name: a log of another id (the topic was deleted and
    /// created again) answers `InconsistentTopicId`.
    pub topic_id: Uuid,
    pub partitions: Vec<FetchPartition>,
}

/// One partition of a fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchPartition {
    pub index: i32,
    pub fetch_offset: i64,
    pub current_leader_epoch: i32,
    pub max_bytes: i32,
    /// The high watermark a follower knows (Fetch v18, KIP-1166): a follower
    /// behind the leader's is answered at once instead of waiting for
    /// data. `i64::MAX` when it does not say.
    pub replica_high_watermark: i64,
}

/// What a follower that does not report its high watermark is taken to know.
pub const HIGH_WATERMARK_UNSUPPORTED: i64 = i64::MAX;

/// What one partition returned to a fetch.
#[derive(Debug, Clone, Default)]
pub struct PartitionRead {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// For `read_committed`: the aborted transactions overlapping the
    /// batches, (producer id, first offset).
    pub aborted: Vec<(i64, i64)>,
    pub log_start_offset: i64,
    /// The stored batches, as they were stored.
    pub batches: Vec<Bytes>,
    pub bytes: usize,
}

/// One partition's answer to a fetch.
pub type FetchResult = Result<PartitionRead, PartitionError>;

impl Partitions {
    /// The partitions of a single node (a replication set of one).
    pub fn local(broker: Arc<Broker>) -> Arc<Self> {
        Arc::new(Partitions {
            auto_create: AutoCreateLimits::from_config(&broker.config),
            broker,
            replication: Replication::Local,
            txn: Default::default(),
        })
    }

    /// The partitions of a cluster member, replicated by `replicas`.
    pub fn replicated(broker: Arc<Broker>, replicas: Arc<ReplicaManager>) -> Arc<Self> {
        Arc::new(Partitions {
            auto_create: AutoCreateLimits::from_config(&broker.config),
            broker,
            replication: Replication::Cluster(replicas),
            txn: Default::default(),
        })
    }

    /// The broker whose topics these are.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The name of the topic with id `id`: in a cluster as the applied
    /// image has it, on a single node among its topics.
    pub fn topic_name(&self, id: Uuid) -> Option<String> {
        match &self.replication {
            Replication::Local => self.broker.topic_by_id(id).map(|t| t.name.clone()),
            Replication::Cluster(rm) => rm.topic_name(id),
        }
    }

    /// Who leads a partition and in which epoch, for the clients a
    /// follower sends there (Fetch v16, KIP-951): a single node leads them
    /// all; `None` when the partition is unknown.
    pub fn current_leader(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        match &self.replication {
            Replication::Local => {
                let log = self.broker.topic(topic)?.partition(partition)?;
                Some((self.broker.node_id(), log.leader_epoch()))
            }
            Replication::Cluster(rm) => rm.current_leader(topic, partition),
        }
    }

    /// The replica manager in a cluster (for views of the cluster: metadata,
    /// the dashboard), `None` on a single node.
    pub fn replica_manager(&self) -> Option<&Arc<ReplicaManager>> {
        match &self.replication {
            Replication::Local => None,
            Replication::Cluster(rm) => Some(rm),
        }
    }

    /// Register a listener for leadership changes. On a single node this
    /// node leads everything from the start and nothing changes.
    pub fn add_leadership_listener(&self, listener: Arc<dyn LeadershipListener>) {
        if let Replication::Cluster(rm) = &self.replication {
            rm.add_listener(listener);
        }
    }

    /// Ok when this node may answer for `log` as its leader, checked
    /// against the client's leader epoch (-1: unchecked).
    pub fn check_leader(&self, log: &PartitionLog, epoch: i32) -> Result<(), ReplicaError> {
        match &self.replication {
            Replication::Local => check_leader_epoch(epoch, log.leader_epoch()),
            Replication::Cluster(rm) => rm.check_leader(&log.topic, log.partition, epoch),
        }
    }

    /// The ISR size of a partition this node leads.
    fn leader_isr_len(&self, log: &PartitionLog) -> Result<usize, ReplicaError> {
        match &self.replication {
            Replication::Local => Ok(1),
            Replication::Cluster(rm) => rm.leader_isr_len(&log.topic, log.partition),
        }
    }

    /// How many in-sync replicas acks=all needs: the topic's
    /// `min.insync.replicas` in a cluster; a replication set of one is
    /// always enough on a single node, whose durability is the flush.
    fn min_insync_replicas(&self, topic: &Topic) -> usize {
        match &self.replication {
            Replication::Local => 1,
            Replication::Cluster(_) => topic.min_insync_replicas(),
        }
    }

    /// After a local append on a leader (an ISR of one commits at once).
    pub fn appended(&self, log: &PartitionLog) {
        if let Replication::Cluster(rm) = &self.replication {
            rm.appended(log);
        }
    }

    /// Wait until each partition's high watermark reaches its target. On a
    /// single node the high watermark is the log end: nothing to wait for.
    pub async fn wait_committed(
        &self,
        waits: &[CommitWait],
        timeout: Duration,
    ) -> Vec<Result<(), ReplicaError>> {
        match &self.replication {
            Replication::Local => vec![Ok(()); waits.len()],
            Replication::Cluster(rm) => rm.wait_committed(waits, timeout).await,
        }
    }

    /// Append every partition's batches (Kafka's `appendRecords`): check,
    /// validate, append, replicate and, for acks=all, wait. One result per
    /// partition, in request order.
    pub async fn append_records(&self, req: AppendRequest) -> Vec<Vec<AppendResult>> {
        let acks = req.acks;
        let mut results: Vec<Vec<AppendResult>> = Vec::with_capacity(req.topics.len());
        // Logs to fsync before answering: (topic index, partition index, log).
        let mut syncs: Vec<(usize, usize, Arc<PartitionLog>)> = Vec::new();
        // acks=all: (topic index, partition index, what to wait for).
        let mut waits: Vec<(usize, usize, CommitWait)> = Vec::new();
        let mut auto_create = self.auto_create_allowance(req.client);
        let mut refused = self.verify_transactions(&req).await;
        for (t, topic_data) in req.topics.into_iter().enumerate() {
            let name = topic_data.name;
            let topic = if acks != 0 && acks != 1 && acks != -1 {
                Err(None)
            } else {
                self.topic_or_auto_create(&name, &mut auto_create)
                    .await
                    .map_err(|e| Some(Arc::new(e)))
            };
            let mut out = Vec::with_capacity(topic_data.partitions.len());
            for (p, (index, records)) in topic_data.partitions.into_iter().enumerate() {
                if let Some(e) = refused.remove(&(t, p)) {
                    out.push(Err(e));
                    continue;
                }
                let topic = match &topic {
                    Ok(topic) => topic,
                    Err(None) => {
                        out.push(Err(PartitionError::InvalidRequiredAcks));
                        continue;
                    }
                    Err(Some(e)) => {
                        out.push(Err(PartitionError::Topic(Arc::clone(e))));
                        continue;
                    }
                };
                if topic.internal {
                    // Internal topics are written by the broker itself (the group
                    // coordinator owns __consumer_offsets), never by clients.
                    out.push(Err(PartitionError::InternalTopic(name.clone())));
                    continue;
                }
                let Some(log) = topic.partition(index) else {
                    out.push(Err(PartitionError::UnknownTopicOrPartition));
                    continue;
                };
                let mut min_insync = 1;
                match self.leader_isr_len(&log) {
                    Err(e) => {
                        out.push(Err(e.into()));
                        continue;
                    }
                    Ok(isr) if acks == -1 => {
                        min_insync = self.min_insync_replicas(topic);
                        if isr < min_insync {
                            out.push(Err(PartitionError::NotEnoughReplicas { isr, min_insync }));
                            continue;
                        }
                    }
                    Ok(_) => {}
                }
                let (max_message_bytes, log_append_time) = topic.produce_settings();
                let result = batch::split_and_validate(&records, max_message_bytes)
                    .map_err(AppendError::from)
                    .and_then(|batches| {
                        if req.transactional_id.is_none()
                            && batches.iter().any(|b| b.header.is_transactional())
                        {
                            Err(AppendError::Batch(BatchError::InvalidRecord(
                                "transactional records need a transactional id".into(),
                            )))
                        } else {
                            log.append(batches, log_append_time)
                        }
                    });
                match result {
                    Ok(outcome) => {
                        if log.must_sync_before_ack() {
                            syncs.push((results.len(), out.len(), log.clone()));
                        }
                        self.appended(&log);
                        if acks == -1 {
                            waits.push((
                                results.len(),
                                out.len(),
                                CommitWait {
                                    log: log.clone(),
                                    target: outcome.last_offset + 1,
                                    min_insync,
                                },
                            ));
                        }
                        out.push(Ok(AppendInfo {
                            base_offset: outcome.base_offset,
                            log_append_time: outcome.log_append_time,
                            log_start_offset: outcome.log_start_offset,
                        }));
                    }
                    Err(e) => {
                        tracing::debug!(topic = %name, partition = index, error = %e, "produce refused");
                        out.push(Err(e.into()));
                    }
                }
            }
            results.push(out);
        }
        if !waits.is_empty() {
            let (places, waits): (Vec<_>, Vec<_>) =
                waits.into_iter().map(|(t, p, w)| ((t, p), w)).unzip();
            let outcomes = self.wait_committed(&waits, req.timeout).await;
            for ((t, p), outcome) in places.into_iter().zip(outcomes) {
                if let Err(e) = outcome {
                    results[t][p] = Err(e.into());
                }
            }
        }
        // fsync where the topic's flush.messages or --flush-interval-ms 0
        // asks for it; concurrent requests share one fsync per partition.
        if acks != 0 {
            for (t, p, log) in syncs {
                if let Err(e) = log.sync().await {
                    tracing::error!(topic = %log.topic, partition = log.partition, error = %e, "fsync before acknowledging failed");
                    if results[t][p].is_ok() {
                        results[t][p] = Err(PartitionError::Flush(e.to_string()));
                    }
                }
            }
        }
        results
    }

    /// Read every partition of a fetch (Kafka's `fetchMessages`), waiting
    /// (woken by appends) until `min_bytes` are available, an error shows,
    /// or `max_wait` passes. One result per partition, in request order.
    pub async fn fetch_messages(&self, req: &FetchRequest<'_>) -> Vec<Vec<FetchResult>> {
        let deadline = tokio::time::Instant::now() + req.max_wait;
        // Subscribe before the first read so that an append in between still
        // wakes us. Followers wait for the log end, consumers for the high watermark.
        let replica = req.replica_id >= 0;
        let mut watchers: Vec<_> = req
            .topics
            .iter()
            .filter_map(|ft| self.broker.topic(ft.name).map(|t| (t, ft)))
            .flat_map(|(t, ft)| {
                ft.partitions
                    .iter()
                    .filter_map(move |fp| t.partition(fp.index))
                    .map(|log| {
                        if replica {
                            log.subscribe_end()
                        } else {
                            log.subscribe()
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        loop {
            let (results, bytes) = self.read_once(req);
            let errored = results.iter().flatten().any(|r| r.is_err());
            if bytes >= req.min_bytes.max(1)
                || errored
                || (replica && high_watermark_behind(req, &results))
                || watchers.is_empty()
                || tokio::time::Instant::now() >= deadline
            {
                return results;
            }
            let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
            match tokio::time::timeout_at(deadline, changed).await {
                Ok((Ok(()), _, _)) => continue,
                // A log was deleted (its sender dropped) or the wait timed out.
                Ok((Err(_), _, _)) | Err(_) => return self.read_once(req).0,
            }
        }
    }

    /// One pass over a fetch; returns the results and the bytes they carry.
    fn read_once(&self, req: &FetchRequest<'_>) -> (Vec<Vec<FetchResult>>, usize) {
        let limit = if req.replica_id >= 0 {
            ReadLimit::LogEndOffset
        } else if req.read_committed {
            ReadLimit::LastStable
        } else {
            ReadLimit::HighWatermark
        };
        let mut remaining = req.max_bytes;
        let mut total = 0usize;
        let mut results = Vec::with_capacity(req.topics.len());
        for ft in &req.topics {
            let topic = self.broker.topic(ft.name);
            let inconsistent =
                !ft.topic_id.is_nil() && topic.as_ref().is_some_and(|t| t.id != ft.topic_id);
            let mut out = Vec::with_capacity(ft.partitions.len());
            for fp in &ft.partitions {
                if inconsistent {
                    out.push(Err(PartitionError::InconsistentTopicId));
                    continue;
                }
                let Some(log) = topic.as_ref().and_then(|t| t.partition(fp.index)) else {
                    out.push(Err(PartitionError::UnknownTopicOrPartition));
                    continue;
                };
                let leader = match &self.replication {
                    // A follower's fetch reports its progress to the leader.
                    Replication::Cluster(rm) if req.replica_id >= 0 => rm.follower_fetched(
                        ft.name,
                        fp.index,
                        req.replica_id,
                        fp.fetch_offset,
                        fp.current_leader_epoch,
                    ),
                    _ => self.check_leader(&log, fp.current_leader_epoch),
                };
                if let Err(e) = leader {
                    out.push(Err(e.into()));
                    continue;
                }
                let max = (fp.max_bytes.max(0) as usize).min(remaining);
                // KIP-74: the first batch of the response is returned even when it is
                // larger than the limits, so a consumer can always make progress.
                let oversized_ok = total == 0;
                out.push(
                    match log.read_segments(fp.fetch_offset, max, oversized_ok, limit) {
                        Ok(read) => {
                            total += read.bytes;
                            remaining = remaining.saturating_sub(read.bytes);
                            Ok(PartitionRead {
                                high_watermark: read.high_watermark,
                                last_stable_offset: read.last_stable_offset,
                                aborted: read.aborted,
                                log_start_offset: read.log_start_offset,
                                batches: read.batches,
                                bytes: read.bytes,
                            })
                        }
                        Err(ReadError::OffsetOutOfRange {
                            log_start_offset,
                            log_end_offset,
                            ..
                        }) => Err(PartitionError::OffsetOutOfRange {
                            high_watermark: log.high_watermark().min(log_end_offset),
                            log_start_offset,
                        }),
                        Err(e) => {
                            tracing::error!(topic = %log.topic, partition = log.partition, error = %e, "read failed");
                            Err(PartitionError::Read(e))
                        }
                    },
                );
            }
            results.push(out);
        }
        (results, total)
    }
}

/// Whether a follower's fetch found a partition whose high watermark is
/// ahead of the one the follower reported (Fetch v18): it is answered at
/// once so that the follower learns the new high watermark.
fn high_watermark_behind(req: &FetchRequest<'_>, results: &[Vec<FetchResult>]) -> bool {
    req.topics.iter().zip(results).any(|(ft, results)| {
        ft.partitions
            .iter()
            .zip(results)
            .any(|(fp, r)| matches!(r, Ok(read) if fp.replica_high_watermark < read.high_watermark))
    })
}
