//! Fetch: map a Fetch request to one `Partitions::fetch_messages` call (which
//! applies the byte limits and the long poll) and its per-partition results
//! to a response whose record sets are the stored batches, passed by
//! reference (`zero_copy`).
//!
//! Versions: v13+ names topics by id (KIP-516; `resolve` gives them their
//! names first, an unknown id is answered UNKNOWN_TOPIC_ID), v15+ carries a
//! follower's id in `replica_state`, v16+ tells a client sent to a
//! follower who leads (`current_leader`, and the leaders' endpoints, which
//! `server` adds for the connection's listener), v17 adds the follower's
//! directory id (one log directory here: nothing to check), v18 the
//! follower's high watermark (the partition layer answers a follower behind
//! the leader's at once).
//!
//! Must never: read a log itself or decide who may read (the partition layer
//! does). Locks: none held across a call; the per-topic metrics are found
//! under `metrics::Table`'s read lock.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::FetchTopic as RequestTopic;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName,
};
use uuid::Uuid;

use super::errors::partition_error;
use super::zero_copy::RecordsArena;
use super::{code, str_bytes};
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

/// A topic's answer with `error_code` for each of its partitions.
fn topic_error(ft: &RequestTopic, error_code: i16) -> FetchableTopicResponse {
    let mut t = FetchableTopicResponse::default();
    t.topic = ft.topic.clone();
    t.topic_id = ft.topic_id;
    t.partitions = ft
        .partitions
        .iter()
        .map(|fp| empty_partition(fp.partition, error_code))
        .collect();
    t
}

/// Before a request is authorized and answered: take a follower's id from
/// `replica_state` (v15+), and name each topic the request names by id
/// (v13+). Topics of an id this node does not know are taken out of the
/// request and returned, answered UNKNOWN_TOPIC_ID (as Kafka answers them,
/// before any authorization).
pub fn resolve(
    partitions: &Partitions,
    req: &mut FetchRequest,
    version: i16,
) -> Vec<FetchableTopicResponse> {
    if version >= 15 {
        req.replica_id = req.replica_state.replica_id;
    }
    if version < 13 {
        return Vec::new();
    }
    let mut unknown = Vec::new();
    req.topics.retain_mut(|ft| {
        match (!ft.topic_id.is_nil())
            .then(|| partitions.topic_name(ft.topic_id))
            .flatten()
        {
            Some(name) => {
                ft.topic = TopicName(str_bytes(name));
                true
            }
            None => {
                unknown.push(topic_error(ft, code::UNKNOWN_TOPIC_ID));
                false
            }
        }
    });
    unknown
}

/// v16+: the leader and its epoch for each partition answered
/// NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH (KIP-951), so the client
/// moves without asking Metadata first. Returns the leaders' ids, whose
/// endpoints the response must carry.
fn current_leaders(partitions: &Partitions, resp: &mut FetchResponse) -> Vec<i32> {
    let mut leaders = Vec::new();
    for t in resp.responses.iter_mut() {
        for p in t.partitions.iter_mut().filter(|p| {
            p.error_code == code::NOT_LEADER_OR_FOLLOWER
                || p.error_code == code::FENCED_LEADER_EPOCH
        }) {
            let Some((leader, epoch)) = partitions.current_leader(&t.topic.0, p.partition_index)
            else {
                continue;
            };
            if leader < 0 {
                continue;
            }
            p.current_leader.leader_id = BrokerId(leader);
            p.current_leader.leader_epoch = epoch;
            if !leaders.contains(&leader) {
                leaders.push(leader);
            }
        }
    }
    leaders
}

/// v16+: the endpoints of the leaders `current_leader` named, as
/// `address` gives them for the connection's listener (a leader it has no
/// address for is left out).
pub fn add_node_endpoints(
    resp: &mut FetchResponse,
    leaders: &[i32],
    address: impl Fn(i32) -> Option<(String, i32)>,
) {
    for &leader in leaders {
        if let Some((host, port)) = address(leader) {
            let mut e = NodeEndpoint::default();
            e.node_id = BrokerId(leader);
            e.host = str_bytes(host);
            e.port = port;
            resp.node_endpoints.push(e);
        }
    }
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

/// Answer a fetch (its topics named, see `resolve`); the response's record
/// sets live in the returned arena (encode it with
/// `zero_copy::SegmentedBuf`), and the leaders whose endpoints a v16+
/// response carries are returned with it.
pub async fn handle(
    partitions: &Partitions,
    req: FetchRequest,
    version: i16,
) -> (FetchResponse, RecordsArena, Vec<i32>) {
    let mut resp = FetchResponse::default();
    if req.session_id != NO_SESSION {
        resp.error_code = code::FETCH_SESSION_ID_NOT_FOUND;
        return (resp, RecordsArena::default(), Vec::new());
    }
    if req.session_epoch > 0 {
        resp.error_code = code::INVALID_FETCH_SESSION_EPOCH;
        return (resp, RecordsArena::default(), Vec::new());
    }
    let by_id = version >= 13;
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
                topic_id: if by_id { ft.topic_id } else { Uuid::nil() },
                partitions: ft
                    .partitions
                    .iter()
                    .map(|fp| FetchPartition {
                        index: fp.partition,
                        fetch_offset: fp.fetch_offset,
                        current_leader_epoch: fp.current_leader_epoch,
                        max_bytes: fp.partition_max_bytes,
                        // Before v18 the codec leaves it at "not supported".
                        replica_high_watermark: fp.high_watermark,
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
    let leaders = if version >= 16 {
        current_leaders(partitions, &mut resp)
    } else {
        Vec::new()
    };
    (resp, arena, leaders)
}
