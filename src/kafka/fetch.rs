//! Fetch: read stored batches from each requested partition, honouring the
//! per-partition and per-response byte limits, and long-poll (woken by appends)
//! until `min_bytes` are available or `max_wait_ms` passes. Batches go out as
//! they were stored.

use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};

use super::zero_copy::RecordsArena;
use super::{code, leader_epoch_error};
use crate::broker::Broker;
use crate::log::{ReadError, ReadLimit};

/// Sessionless fetches (KIP-227 session id 0) are all this broker offers.
const NO_SESSION: i32 = 0;

fn empty_partition(index: i32, error_code: i16) -> PartitionData {
    let mut p = PartitionData::default();
    p.partition_index = index;
    p.error_code = error_code;
    p.high_watermark = -1;
    p.last_stable_offset = -1;
    p.log_start_offset = -1;
    p.preferred_read_replica = BrokerId(-1);
    p
}

/// One pass over the request; returns the response, the record sets it refers
/// to, and the bytes it carries.
fn read_once(broker: &Broker, req: &FetchRequest) -> (FetchResponse, RecordsArena, usize) {
    let mut arena = RecordsArena::default();
    let mut resp = FetchResponse::default();
    resp.session_id = NO_SESSION;
    let limit = if req.replica_id.0 >= 0 {
        ReadLimit::LogEndOffset
    } else {
        ReadLimit::HighWatermark
    };
    let mut remaining = req.max_bytes.max(0) as usize;
    let mut total = 0usize;
    for ft in &req.topics {
        let mut t = FetchableTopicResponse::default();
        t.topic = ft.topic.clone();
        t.topic_id = ft.topic_id;
        let topic = broker.topic(&ft.topic.0);
        for fp in &ft.partitions {
            let Some(log) = topic.as_ref().and_then(|t| t.partition(fp.partition)) else {
                t.partitions.push(empty_partition(
                    fp.partition,
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                ));
                continue;
            };
            let epoch_error = match broker.replicas() {
                // A follower's fetch reports its progress to the leader.
                Some(rm) if req.replica_id.0 >= 0 => rm.follower_fetched(
                    &ft.topic.0,
                    fp.partition,
                    req.replica_id.0,
                    fp.fetch_offset,
                    fp.current_leader_epoch,
                ),
                Some(rm) => rm.leader_error(&ft.topic.0, fp.partition, fp.current_leader_epoch),
                None => leader_epoch_error(fp.current_leader_epoch, log.leader_epoch()),
            };
            if epoch_error != code::NONE {
                t.partitions
                    .push(empty_partition(fp.partition, epoch_error));
                continue;
            }
            let max = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            // KIP-74: the first batch of the response is returned even when it is
            // larger than the limits, so a consumer can always make progress.
            let oversized_ok = total == 0;
            let mut p = empty_partition(fp.partition, code::NONE);
            match log.read_segments(fp.fetch_offset, max, oversized_ok, limit) {
                Ok(read) => {
                    p.high_watermark = read.high_watermark;
                    p.last_stable_offset = read.high_watermark;
                    p.log_start_offset = read.log_start_offset;
                    p.aborted_transactions = if req.isolation_level == 1 {
                        Some(Vec::new())
                    } else {
                        None
                    };
                    total += read.bytes;
                    remaining = remaining.saturating_sub(read.bytes);
                    p.records = Some(arena.records(read.batches, read.bytes));
                }
                Err(ReadError::OffsetOutOfRange {
                    log_start_offset,
                    log_end_offset,
                    ..
                }) => {
                    p.error_code = code::OFFSET_OUT_OF_RANGE;
                    p.high_watermark = log.high_watermark().min(log_end_offset);
                    p.last_stable_offset = p.high_watermark;
                    p.log_start_offset = log_start_offset;
                }
                Err(ReadError::Storage(e)) => {
                    tracing::error!(topic = %log.topic, partition = log.partition, error = %e, "read failed");
                    p.error_code = code::KAFKA_STORAGE_ERROR;
                }
            }
            t.partitions.push(p);
        }
        resp.responses.push(t);
    }
    (resp, arena, total)
}

/// Answer a fetch; the response's record sets live in the returned arena
/// (encode it with `zero_copy::SegmentedBuf`).
pub async fn handle(broker: &Arc<Broker>, req: FetchRequest) -> (FetchResponse, RecordsArena) {
    if req.session_id != NO_SESSION {
        let mut resp = FetchResponse::default();
        resp.error_code = code::FETCH_SESSION_ID_NOT_FOUND;
        return (resp, RecordsArena::default());
    }
    if req.session_epoch > 0 {
        let mut resp = FetchResponse::default();
        resp.error_code = code::INVALID_FETCH_SESSION_EPOCH;
        return (resp, RecordsArena::default());
    }
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    // Subscribe before the first read so that an append in between still
    // wakes us. Followers wait for the log end, consumers for the high watermark.
    let replica = req.replica_id.0 >= 0;
    let mut watchers: Vec<_> = req
        .topics
        .iter()
        .filter_map(|ft| broker.topic(&ft.topic.0).map(|t| (t, ft)))
        .flat_map(|(t, ft)| {
            ft.partitions
                .iter()
                .filter_map(move |fp| t.partition(fp.partition))
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
        let (resp, arena, bytes) = read_once(broker, &req);
        let errored = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .any(|p| p.error_code != code::NONE);
        if bytes >= req.min_bytes.max(1) as usize
            || errored
            || watchers.is_empty()
            || tokio::time::Instant::now() >= deadline
        {
            return (resp, arena);
        }
        let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        match tokio::time::timeout_at(deadline, changed).await {
            Ok((Ok(()), _, _)) => continue,
            // A log was deleted (its sender dropped) or the wait timed out.
            Ok((Err(_), _, _)) | Err(_) => {
                let (resp, arena, _) = read_once(broker, &req);
                return (resp, arena);
            }
        }
    }
}
