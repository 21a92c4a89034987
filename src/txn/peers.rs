//! Requests from the transaction coordinator to other brokers of a cluster
//! over the Kafka protocol (`client`): WriteTxnMarkers to a partition's
//! leader, and the KIP-890 check (AddPartitionsToTxn v4 `verify_only`) to
//! a transactional id's coordinator. One connection per broker, opened on
//! first use and again after it fails.
//!
//! Locks: the connection map's, held only to look up or insert.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::connection::{BrokerConnection, ConnectionConfig};
use crate::partition::TxnAsk;

/// A partition and the error code a peer answered for it (0: none).
pub type PartitionCode = ((String, i32), i16);

/// Connections to the other brokers, by broker id.
pub struct Peers {
    node_id: i32,
    connections: Mutex<HashMap<i32, Arc<BrokerConnection>>>,
}

impl Peers {
    pub fn new(node_id: i32) -> Self {
        Peers {
            node_id,
            connections: Mutex::new(HashMap::new()),
        }
    }

    async fn connection(&self, broker: i32, addr: &str) -> Option<Arc<BrokerConnection>> {
        let cached = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&broker)
            .filter(|c| !c.is_poisoned() && c.addr() == addr)
            .cloned();
        if cached.is_some() {
            return cached;
        }
        let config = ConnectionConfig {
            client_id: format!("sluice-txn-coordinator-{}", self.node_id),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            ..ConnectionConfig::default()
        };
        match BrokerConnection::connect(addr, &config).await {
            Ok(c) => {
                let c = Arc::new(c);
                self.connections
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(broker, c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::debug!(broker, error = %e, "cannot reach a broker for transactions");
                None
            }
        }
    }

    /// WriteTxnMarkers with one marker for `partitions` to broker `broker`;
    /// None when the broker could not be asked.
    #[allow(clippy::too_many_arguments)]
    pub async fn write_markers(
        &self,
        broker: i32,
        addr: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        partitions: &[(String, i32)],
    ) -> Option<Vec<PartitionCode>> {
        let conn = self.connection(broker, addr).await?;
        let mut marker = WritableTxnMarker::default();
        marker.producer_id = ProducerId(producer_id);
        marker.producer_epoch = producer_epoch;
        marker.transaction_result = commit;
        marker.coordinator_epoch = coordinator_epoch;
        marker.topics = by_topic(partitions)
            .into_iter()
            .map(|(topic, ps)| {
                let mut t = WritableTxnMarkerTopic::default();
                t.name = TopicName(StrBytes::from_string(topic));
                t.partition_indexes = ps;
                t
            })
            .collect();
        let mut req = WriteTxnMarkersRequest::default();
        req.markers = vec![marker];
        let resp = conn.request(&req).await.ok()?;
        Some(
            resp.markers
                .iter()
                .flat_map(|m| &m.topics)
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| ((t.name.0.to_string(), p.partition_index), p.error_code))
                })
                .collect(),
        )
    }

    /// AddPartitionsToTxn v4+ to the coordinator `broker`: with
    /// `verify_only` for [`TxnAsk::Verify`], without it to add.
    pub async fn ask(
        &self,
        broker: i32,
        addr: &str,
        ask: TxnAsk,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        partitions: &[(String, i32)],
    ) -> Option<Vec<PartitionCode>> {
        let conn = self.connection(broker, addr).await?;
        let mut txn = AddPartitionsToTxnTransaction::default();
        txn.transactional_id = TransactionalId(StrBytes::from_string(transactional_id.to_owned()));
        txn.producer_id = ProducerId(producer_id);
        txn.producer_epoch = producer_epoch;
        txn.verify_only = ask == TxnAsk::Verify;
        txn.topics = by_topic(partitions)
            .into_iter()
            .map(|(topic, ps)| {
                let mut t = AddPartitionsToTxnTopic::default();
                t.name = TopicName(StrBytes::from_string(topic));
                t.partitions = ps;
                t
            })
            .collect();
        let mut req = AddPartitionsToTxnRequest::default();
        req.transactions = vec![txn];
        let version = conn
            .version_for::<AddPartitionsToTxnRequest>()
            .ok()
            .filter(|v| *v >= 4)?;
        let resp = conn.request_with_version(&req, version).await.ok()?;
        if resp.error_code != 0 {
            return Some(
                partitions
                    .iter()
                    .map(|p| (p.clone(), resp.error_code))
                    .collect(),
            );
        }
        Some(
            resp.results_by_transaction
                .iter()
                .flat_map(|r| &r.topic_results)
                .flat_map(|t| {
                    t.results_by_partition.iter().map(|p| {
                        (
                            (t.name.0.to_string(), p.partition_index),
                            p.partition_error_code,
                        )
                    })
                })
                .collect(),
        )
    }
}

/// Partitions grouped by topic, in order.
pub fn by_topic(partitions: &[(String, i32)]) -> Vec<(String, Vec<i32>)> {
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for (topic, p) in partitions {
        match out.last_mut() {
            Some((t, ps)) if t == topic => ps.push(*p),
            _ => out.push((topic.clone(), vec![*p])),
        }
    }
    out
}
