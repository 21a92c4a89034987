#![allow(dead_code, clippy::type_complexity)] // until the partition layer provides it
//! The partition layer's transaction interface (`partition::txn`), as this
//! module uses it, until the partition layer provides it: markers cannot be
//! written yet, so every marker write fails and the coordinator retries.

use std::sync::Arc;

use crate::partition::{PartitionError, Partitions};

pub(crate) struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

pub(crate) enum TxnVerifyError {
    NotCoordinator,
    CoordinatorLoading,
    ProducerFenced,
    InvalidProducerEpoch,
    NotInTransaction,
}

pub(crate) trait TxnVerifier: Send + Sync + 'static {
    fn verify(
        &self,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> futures::future::BoxFuture<'static, Vec<((String, i32), Result<(), TxnVerifyError>)>>;
}

pub(crate) trait TxnMarkerListener: Send + Sync + 'static {
    fn markers_written(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    );
}

pub(crate) trait PartitionsTxn {
    async fn write_txn_markers(
        &self,
        markers: Vec<TxnMarker>,
    ) -> Vec<Vec<(String, i32, Result<(), PartitionError>)>>;
    fn set_txn_verifier(&self, verifier: Arc<dyn TxnVerifier>);
    fn add_txn_marker_listener(&self, listener: Arc<dyn TxnMarkerListener>);
}

impl PartitionsTxn for Partitions {
    async fn write_txn_markers(
        &self,
        markers: Vec<TxnMarker>,
    ) -> Vec<Vec<(String, i32, Result<(), PartitionError>)>> {
        markers
            .into_iter()
            .map(|m| {
                m.partitions
                    .into_iter()
                    .map(|(t, p)| (t, p, Err(PartitionError::UnknownTopicOrPartition)))
                    .collect()
            })
            .collect()
    }
    fn set_txn_verifier(&self, _verifier: Arc<dyn TxnVerifier>) {}
    fn add_txn_marker_listener(&self, _listener: Arc<dyn TxnMarkerListener>) {}
}
