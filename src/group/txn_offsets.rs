//! The group side of transactions: TxnOffsetCommit writes a transaction's
//! offsets to the group's `__consumer_offsets` partition as a transactional
//! batch; they become the group's committed offsets only when the
//! transaction's COMMIT marker reaches that partition (the partition layer
//! tells the coordinator through `TxnMarkerListener`), and an ABORT marker
//! drops them. The keyed log keeps them pending until then, and its replay
//! applies what the markers it finds decided.

use std::sync::{Arc, Weak};

use super::offsets::OFFSET_METADATA_MAX_BYTES;
use super::records::{OffsetValue, RecordKey, OFFSETS_TOPIC};
use super::{lock, now_ms, CommitRequest, GroupCoordinator};
use super::{CoordinatorError as E, Outcome};
use crate::partition::TxnMarkerListener;

impl GroupCoordinator {
    /// TxnOffsetCommit: one outcome per partition, in request order.
    pub async fn txn_commit_offsets(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        req: CommitRequest,
    ) -> Vec<Outcome> {
        let all = |error| vec![error; req.partitions.len()];
        let store = match self.store_for(&req.group_id) {
            Ok(s) => s,
            Err(e) => return all(Err(e)),
        };
        if let Some(handle) = self.group(&req.group_id) {
            let g = lock(&handle);
            if !req.member_id.is_empty()
                && !g.members.contains_key(&req.member_id)
                && g.consumer.is_none()
            {
                return all(Err(E::UnknownMemberId));
            }
            if req.generation_id >= 0
                && g.consumer.is_none()
                && req.generation_id != g.generation_id
            {
                return all(Err(E::IllegalGeneration));
            }
        }
        let now = now_ms();
        let mut outcomes = Vec::with_capacity(req.partitions.len());
        let mut records = Vec::new();
        for p in &req.partitions {
            let metadata = p.metadata.clone().unwrap_or_default();
            if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                outcomes.push(Err(E::OffsetMetadataTooLarge));
                continue;
            }
            outcomes.push(Ok(()));
            let key = RecordKey::Offset {
                group: req.group_id.clone(),
                topic: p.topic.clone(),
                partition: p.partition,
            };
            let value = OffsetValue {
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata,
                commit_timestamp: now,
            };
            records.push((key.encode(), Some(value.encode())));
        }
        if let Err(e) = store.append_transactional(producer_id, producer_epoch, &records) {
            tracing::error!(group = %req.group_id, error = %e, "cannot write transactional offsets");
            return all(Err(E::NotCoordinator));
        }
        self.partition_layer.appended(store.log());
        if let Err(e) = self.wait_replicated(&req.group_id).await {
            return all(Err(e));
        }
        outcomes
    }

    /// A marker of `producer_id`'s transaction reached `__consumer_offsets`
    /// partition `partition`: its offsets there become committed (COMMIT)
    /// or are dropped (ABORT).
    fn complete_txn_offsets(&self, partition: i32, producer_id: i64, commit: bool) {
        let store = {
            let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
            usize::try_from(partition)
                .ok()
                .and_then(|p| partitions.get(p).cloned().flatten())
        };
        let Some(store) = store else {
            return;
        };
        for (key, value) in store.complete_transaction(producer_id, commit) {
            let Ok(RecordKey::Offset {
                group,
                topic,
                partition,
            }) = RecordKey::decode(&key)
            else {
                continue;
            };
            let handle = self.group_or_create(&group);
            let mut g = lock(&handle);
            match value.map(|v| OffsetValue::decode(&v)) {
                Some(Ok(v)) => {
                    g.offsets.insert((topic, partition), v);
                }
                None => {
                    g.offsets.remove(&(topic, partition));
                }
                Some(Err(e)) => tracing::warn!(error = %e, "unreadable transactional offset"),
            }
        }
    }

    /// Hear transaction markers written to `__consumer_offsets`.
    pub(super) fn listen_for_txn_markers(self: &Arc<Self>) {
        self.partition_layer
            .add_txn_marker_listener(Arc::new(TxnOffsets(Arc::downgrade(self))));
    }
}

/// Hears markers for the coordinator (weakly: it may be gone at shutdown).
struct TxnOffsets(Weak<GroupCoordinator>);

impl TxnMarkerListener for TxnOffsets {
    fn markers_written(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        _producer_epoch: i16,
        commit: bool,
    ) {
        if topic != OFFSETS_TOPIC {
            return;
        }
        if let Some(coordinator) = self.0.upgrade() {
            coordinator.complete_txn_offsets(partition, producer_id, commit);
        }
    }
}
