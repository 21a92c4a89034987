//! The partition side of transactions on the wire: WriteTxnMarkers (the
//! transaction coordinator ends a transaction on the partitions this node
//! leads) and DescribeProducers (the producers a partition knows, with the
//! start of their open transaction). Each maps to one call into the
//! partition layer.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, TopicName,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};

use super::code;
use super::errors::partition_error;
use super::str_bytes;
use crate::partition::{Partitions, TxnMarker};

/// WriteTxnMarkers: every marker's partitions, one result each, grouped by
/// topic in the order asked.
pub async fn write_txn_markers(
    partitions: &Partitions,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let markers: Vec<TxnMarker> = req
        .markers
        .iter()
        .map(|m| TxnMarker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
            partitions: m
                .topics
                .iter()
                .flat_map(|t| {
                    t.partition_indexes
                        .iter()
                        .map(|p| (t.name.0.to_string(), *p))
                })
                .collect(),
        })
        .collect();
    let results = partitions.write_txn_markers(markers).await;
    let mut resp = WriteTxnMarkersResponse::default();
    for (m, results) in req.markers.iter().zip(results) {
        let mut out = WritableTxnMarkerResult::default();
        out.producer_id = m.producer_id;
        for (name, index, result) in results {
            let error_code = result
                .as_ref()
                .err()
                .map_or(code::NONE, |e| partition_error(e).0);
            let topic = match out.topics.iter_mut().find(|t| t.name.0.as_str() == name) {
                Some(t) => t,
                None => {
                    let mut t = WritableTxnMarkerTopicResult::default();
                    t.name = TopicName(str_bytes(name));
                    out.topics.push(t);
                    out.topics.last_mut().expect("just pushed")
                }
            };
            let mut p = WritableTxnMarkerPartitionResult::default();
            p.partition_index = index;
            p.error_code = error_code;
            topic.partitions.push(p);
        }
        resp.markers.push(out);
    }
    resp
}

/// DescribeProducers: the producers of each partition this node leads.
pub fn describe_producers(
    partitions: &Partitions,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut resp = DescribeProducersResponse::default();
    for t in req.topics {
        let mut out = TopicResponse::default();
        for index in t.partition_indexes {
            let mut p = PartitionResponse::default();
            p.partition_index = index;
            match partitions.describe_producers(&t.name.0, index) {
                Ok(producers) => {
                    p.active_producers = producers
                        .into_iter()
                        .map(|v| {
                            let mut s = ProducerState::default();
                            s.producer_id = ProducerId(v.producer_id);
                            s.producer_epoch = v.producer_epoch as i32;
                            s.last_sequence = v.last_sequence;
                            s.last_timestamp = -1;
                            s.coordinator_epoch = -1;
                            s.current_txn_start_offset = v.current_txn_start_offset;
                            s
                        })
                        .collect();
                }
                Err(e) => {
                    let (error_code, message) = partition_error(&e);
                    p.error_code = error_code;
                    p.error_message = message.map(str_bytes);
                }
            }
            out.partitions.push(p);
        }
        out.name = t.name;
        resp.topics.push(out);
    }
    resp
}
