//! Fetch: map a Fetch request to one `Partitions::fetch_messages` call (which
//! applies the byte limits and the long poll) and its per-partition results
//! to a response whose record sets are the stored batches, passed by
//! reference (`zero_copy`).
//!
//! Must never: read a log itself or decide who may read (the partition layer
//! does). Locks: none held across a call; the per-topic metrics are found
//! under `metrics::Table`'s read lock.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId};

use super::code;
use super::errors::partition_error;
use super::zero_copy::RecordsArena;
use crate::log::batch::records_in_batches;
use crate::metrics;
use crate::partition::{self, FetchPartition, FetchTopic, PartitionError, Partitions};

/// Sessionless fetches (KIP-227 session id 0) are all this broker offers.
const NO_SESSION: i32 = 0;

const FETCH: i16 = ApiKey::Fetch as i16;

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

/// Count the bytes and records returned to a consumer into each topic's
/// metrics (a follower's fetch is replication, not consumption), and each
/// partition's error.
fn count(req: &FetchRequest, results: &[Vec<partition::FetchResult>]) {
    let metrics = metrics::global();
    for (ft, results) in req.topics.iter().zip(results) {
        let (mut bytes, mut records) = (0, 0);
        for result in results {
            match result {
                Ok(read) if req.replica_id.0 < 0 => {
                    bytes += read.bytes as u64;
                    records += read
                        .batches
                        .iter()
                        .map(|b| records_in_batches(b))
                        .sum::<u64>();
                }
                Ok(_) => {}
                Err(e) => metrics.kafka_error(FETCH, partition_error(e).0),
            }
        }
        if bytes > 0 {
            metrics.topic(&ft.topic.0, |t| {
                t.bytes_out.fetch_add(bytes, Ordering::Relaxed);
                t.records_out.fetch_add(records, Ordering::Relaxed);
            });
        }
    }
}

/// Answer a fetch; the response's record sets live in the returned arena
/// (encode it with `zero_copy::SegmentedBuf`).
pub async fn handle(partitions: &Partitions, req: FetchRequest) -> (FetchResponse, RecordsArena) {
    let mut resp = FetchResponse::default();
    if req.session_id != NO_SESSION {
        resp.error_code = code::FETCH_SESSION_ID_NOT_FOUND;
        return (resp, RecordsArena::default());
    }
    if req.session_epoch > 0 {
        resp.error_code = code::INVALID_FETCH_SESSION_EPOCH;
        return (resp, RecordsArena::default());
    }
    let fetch = partition::FetchRequest {
        replica_id: req.replica_id.0,
        max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
        min_bytes: req.min_bytes.max(0) as usize,
        max_bytes: req.max_bytes.max(0) as usize,
        read_committed: req.isolation_level == 1,
        topics: req
            .topics
            .iter()
            .map(|ft| FetchTopic {
                name: &ft.topic.0,
                partitions: ft
                    .partitions
                    .iter()
                    .map(|fp| FetchPartition {
                        index: fp.partition,
                        fetch_offset: fp.fetch_offset,
                        current_leader_epoch: fp.current_leader_epoch,
                        max_bytes: fp.partition_max_bytes,
                    })
                    .collect(),
            })
            .collect(),
    };
    let results = partitions.fetch_messages(&fetch).await;
    count(&req, &results);
    let mut arena = RecordsArena::default();
    resp.session_id = NO_SESSION;
    for (ft, results) in req.topics.iter().zip(results) {
        let mut t = FetchableTopicResponse::default();
        t.topic = ft.topic.clone();
        t.topic_id = ft.topic_id;
        for (fp, result) in ft.partitions.iter().zip(results) {
            let p = match result {
                Ok(read) => {
                    let mut p = empty_partition(fp.partition, code::NONE);
                    p.high_watermark = read.high_watermark;
                    p.last_stable_offset = read.last_stable_offset;
                    p.log_start_offset = read.log_start_offset;
                    p.aborted_transactions = (req.isolation_level == 1).then(|| {
                        read.aborted
                            .iter()
                            .map(|(producer_id, first_offset)| {
                                let mut a = AbortedTransaction::default();
                                a.producer_id = ProducerId(*producer_id);
                                a.first_offset = *first_offset;
                                a
                            })
                            .collect()
                    });
                    p.records = Some(arena.records(read.batches, read.bytes));
                    p
                }
                Err(PartitionError::OffsetOutOfRange {
                    high_watermark,
                    log_start_offset,
                }) => {
                    let mut p = empty_partition(fp.partition, code::OFFSET_OUT_OF_RANGE);
                    p.high_watermark = high_watermark;
                    p.last_stable_offset = high_watermark;
                    p.log_start_offset = log_start_offset;
                    p
                }
                Err(e) => empty_partition(fp.partition, partition_error(&e).0),
            };
            t.partitions.push(p);
        }
        resp.responses.push(t);
    }
    (resp, arena)
}
