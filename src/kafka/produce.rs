//! Produce and InitProducerId: validate batches, append them to partition
//! logs, answer with offsets (or nothing for acks=0).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};

use super::{code, str_bytes, topic_error_code};
use crate::broker::Broker;
use crate::log::batch::{self, BatchError};
use crate::log::AppendError;
use crate::replication::{topics, CommitWait};

fn partition_error(
    index: i32,
    error_code: i16,
    message: Option<String>,
) -> PartitionProduceResponse {
    let mut p = PartitionProduceResponse::default();
    p.index = index;
    p.error_code = error_code;
    p.base_offset = -1;
    p.log_append_time_ms = -1;
    p.log_start_offset = -1;
    p.error_message = message.map(str_bytes);
    p
}

fn append_error_code(e: &AppendError) -> i16 {
    match e {
        AppendError::Batch(BatchError::Corrupt(_)) => code::CORRUPT_MESSAGE,
        AppendError::Batch(BatchError::UnsupportedMagic(_)) => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
        AppendError::Batch(BatchError::InvalidRecord(_)) => code::INVALID_RECORD,
        AppendError::Batch(BatchError::TooLarge { .. }) => code::MESSAGE_TOO_LARGE,
        AppendError::OutOfOrderSequence { .. } => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        AppendError::InvalidProducerEpoch { .. } => code::INVALID_PRODUCER_EPOCH,
        AppendError::Storage(_) => code::KAFKA_STORAGE_ERROR,
    }
}

/// Append every partition's batches. Returns `None` for acks=0.
pub async fn handle(broker: &Arc<Broker>, req: ProduceRequest) -> Option<ProduceResponse> {
    let acks = req.acks;
    let mut resp = ProduceResponse::default();
    let mut syncs: Vec<(usize, usize, Arc<crate::log::PartitionLog>)> = Vec::new();
    // acks=all in a cluster: (topic index, partition index, what to wait for).
    let mut waits: Vec<(usize, usize, CommitWait)> = Vec::new();
    for topic_data in req.topic_data {
        let name = topic_data.name.0.to_string();
        let mut t = TopicProduceResponse::default();
        t.name = topic_data.name.clone();
        let topic = if acks != 0 && acks != 1 && acks != -1 {
            Err(None)
        } else {
            topics::get_or_create(broker, &name).await.map_err(Some)
        };
        for part in topic_data.partition_data {
            let topic = match &topic {
                Ok(topic) => topic,
                Err(None) => {
                    t.partition_responses.push(partition_error(
                        part.index,
                        code::INVALID_REQUIRED_ACKS,
                        None,
                    ));
                    continue;
                }
                Err(Some(e)) => {
                    t.partition_responses.push(partition_error(
                        part.index,
                        topic_error_code(e),
                        Some(e.to_string()),
                    ));
                    continue;
                }
            };
            if topic.internal {
                // Internal topics are written by the broker itself (the group
                // coordinator owns __consumer_offsets), never by clients.
                t.partition_responses.push(partition_error(
                    part.index,
                    code::INVALID_TOPIC_EXCEPTION,
                    Some(format!("cannot produce to internal topic {name}")),
                ));
                continue;
            }
            let Some(log) = topic.partition(part.index) else {
                t.partition_responses.push(partition_error(
                    part.index,
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    None,
                ));
                continue;
            };
            let mut min_insync = 1;
            if let Some(rm) = broker.replicas() {
                let error = match rm.leader_isr_len(&name, part.index) {
                    Err(error) => error,
                    Ok(isr) if acks == -1 => {
                        min_insync = topic.min_insync_replicas();
                        if isr < min_insync {
                            code::NOT_ENOUGH_REPLICAS
                        } else {
                            code::NONE
                        }
                    }
                    Ok(_) => code::NONE,
                };
                if error != code::NONE {
                    t.partition_responses
                        .push(partition_error(part.index, error, None));
                    continue;
                }
            }
            let (max_message_bytes, log_append_time) = topic.produce_settings();
            let records = part.records.unwrap_or_default();
            let result = batch::split_and_validate(&records, max_message_bytes)
                .map_err(AppendError::from)
                .and_then(|batches| {
                    if req
                        .transactional_id
                        .as_ref()
                        .is_some_and(|t| !t.0.is_empty())
                        || batches.iter().any(|b| b.header.is_transactional())
                    {
                        Err(AppendError::Batch(BatchError::InvalidRecord(
                            "transactions are not supported".into(),
                        )))
                    } else {
                        log.append(batches, log_append_time)
                    }
                });
            match result {
                Ok(outcome) => {
                    if log.must_sync_before_ack() {
                        syncs.push((
                            resp.responses.len(),
                            t.partition_responses.len(),
                            log.clone(),
                        ));
                    }
                    if let Some(rm) = broker.replicas() {
                        rm.appended(&log);
                        if acks == -1 {
                            waits.push((
                                resp.responses.len(),
                                t.partition_responses.len(),
                                CommitWait {
                                    log: log.clone(),
                                    target: outcome.last_offset + 1,
                                    min_insync,
                                },
                            ));
                        }
                    }
                    let mut p = PartitionProduceResponse::default();
                    p.index = part.index;
                    p.base_offset = outcome.base_offset;
                    p.log_append_time_ms = outcome.log_append_time;
                    p.log_start_offset = outcome.log_start_offset;
                    t.partition_responses.push(p);
                }
                Err(e) => {
                    tracing::debug!(topic = %name, partition = part.index, error = %e, "produce refused");
                    t.partition_responses.push(partition_error(
                        part.index,
                        append_error_code(&e),
                        Some(e.to_string()),
                    ));
                }
            }
        }
        resp.responses.push(t);
    }
    if let (Some(rm), false) = (broker.replicas(), waits.is_empty()) {
        let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
        let (places, waits): (Vec<_>, Vec<_>) =
            waits.into_iter().map(|(t, p, w)| ((t, p), w)).unzip();
        let results = rm.wait_committed(&waits, timeout).await;
        for ((t, p), error) in places.into_iter().zip(results) {
            if error != code::NONE {
                let slot = &mut resp.responses[t].partition_responses[p];
                *slot = partition_error(slot.index, error, None);
            }
        }
    }
    if acks == 0 {
        return None;
    }
    // fsync where the topic's flush.messages or --flush-interval-ms 0 asks
    // for it; concurrent requests share one fsync per partition.
    for (t, p, log) in syncs {
        if let Err(e) = log.sync().await {
            tracing::error!(topic = %log.topic, partition = log.partition, error = %e, "fsync before acknowledging failed");
            let slot = &mut resp.responses[t].partition_responses[p];
            if slot.error_code == code::NONE {
                *slot = partition_error(slot.index, code::KAFKA_STORAGE_ERROR, Some(e.to_string()));
            }
        }
    }
    Some(resp)
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
