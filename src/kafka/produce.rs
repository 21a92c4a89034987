//! Produce and InitProducerId: map a Produce request to one
//! `Partitions::append_records` call and its per-partition results back to
//! a response (nothing for acks=0).
//!
//! Must never: hold produce policy (acks, min-ISR, replication, the wait
//! and the flush live in `partition`). Locks: none held across a call; the
//! per-topic metrics are found under `metrics::Table`'s read lock.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};

use std::sync::atomic::Ordering;

use kafka_protocol::messages::{ApiKey, TopicName};

use super::errors::partition_error;
use super::{code, str_bytes};
use crate::broker::Broker;
use crate::log::batch::records_in_batches;
use crate::metrics;
use crate::partition::{AppendRequest, Partitions, TopicRecords, TxnAsk};

const PRODUCE: i16 = ApiKey::Produce as i16;

/// Append every partition's batches of a request from `client` (its
/// address keys the auto-creation limit). Returns `None` for acks=0.
pub async fn handle(
    partitions: &Partitions,
    req: ProduceRequest,
    version: i16,
    client: IpAddr,
) -> Option<ProduceResponse> {
    let acks = req.acks;
    let mut names = Vec::with_capacity(req.topic_data.len());
    let mut indexes = Vec::with_capacity(req.topic_data.len());
    let topics = req
        .topic_data
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            names.push(t.name);
            indexes.push(
                t.partition_data
                    .iter()
                    .map(|p| (p.index, p.records.as_deref().map_or((0, 0), batch_size)))
                    .collect::<Vec<_>>(),
            );
            TopicRecords {
                name,
                partitions: t
                    .partition_data
                    .into_iter()
                    .map(|p| (p.index, p.records.unwrap_or_default()))
                    .collect(),
            }
        })
        .collect();
    let results = partitions
        .append_records(AppendRequest {
            acks,
            timeout: Duration::from_millis(req.timeout_ms.max(0) as u64),
            transactional_id: req
                .transactional_id
                .as_ref()
                .filter(|t| !t.0.is_empty())
                .map(|t| t.0.to_string()),
            // KIP-890 part 2: from v12 the client leaves adding a partition
            // to its transaction to the partition's leader.
            txn_ask: if version >= 12 {
                TxnAsk::Add
            } else {
                TxnAsk::Verify
            },
            client,
            topics,
        })
        .await;
    count(&names, &indexes, &results);
    if acks == 0 {
        return None;
    }
    let mut resp = ProduceResponse::default();
    for ((name, indexes), results) in names.into_iter().zip(indexes).zip(results) {
        let mut t = TopicProduceResponse::default();
        t.name = name;
        t.partition_responses = indexes
            .into_iter()
            .zip(results)
            .map(|((index, _), result)| {
                let mut p = PartitionProduceResponse::default();
                p.index = index;
                match result {
                    Ok(info) => {
                        p.base_offset = info.base_offset;
                        p.log_append_time_ms = info.log_append_time;
                        p.log_start_offset = info.log_start_offset;
                    }
                    Err(e) => {
                        let (error_code, message) = partition_error(&e);
                        p.error_code = error_code;
                        p.base_offset = -1;
                        p.log_append_time_ms = -1;
                        p.log_start_offset = -1;
                        p.error_message = message.map(str_bytes);
                    }
                }
                p
            })
            .collect();
        resp.responses.push(t);
    }
    Some(resp)
}

/// The bytes and records of a partition's record set.
fn batch_size(records: &[u8]) -> (u64, u64) {
    (records.len() as u64, records_in_batches(records))
}

/// Count what was appended into each topic's metrics, and each partition's
/// error.
fn count(
    names: &[TopicName],
    sizes: &[Vec<(i32, (u64, u64))>],
    results: &[Vec<crate::partition::AppendResult>],
) {
    let metrics = metrics::global();
    for ((name, sizes), results) in names.iter().zip(sizes).zip(results) {
        let (mut bytes, mut records) = (0, 0);
        for ((_, size), result) in sizes.iter().zip(results) {
            match result {
                Ok(_) => {
                    bytes += size.0;
                    records += size.1;
                }
                Err(e) => metrics.kafka_error(PRODUCE, partition_error(e).0),
            }
        }
        if records > 0 {
            metrics.topic(&name.0, |t| {
                t.bytes_in.fetch_add(bytes, Ordering::Relaxed);
                t.records_in.fetch_add(records, Ordering::Relaxed);
            });
        }
    }
}

/// InitProducerId for idempotent producers. A producer that presents its id and
/// epoch (KIP-360) gets the epoch bumped; otherwise a new id. Transactions are
/// not offered.
pub fn init_producer_id(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        resp.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return resp;
    }
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return resp;
    }
    match broker.allocate_producer_id() {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp.error_code = code::KAFKA_STORAGE_ERROR;
        }
    }
    resp
}
