//! ListOffsets (earliest, latest, by timestamp, max timestamp; v8+
//! earliest local, v9+ latest tiered, v10 the timeout of remote lookups,
//! which a node without a remote tier never makes), OffsetForLeaderEpoch
//! and DeleteRecords: each maps its request to one call of the partition
//! layer and the per-partition results back.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};

use super::code;
use super::errors::partition_error;
use crate::partition::{
    DeleteQuery, EpochQuery, OffsetQuery, PartitionError, Partitions, TopicQueries, EARLIEST_LOCAL,
    LATEST_TIERED,
};

/// Each topic of a request, named, with its partitions as the partition
/// layer's queries.
fn queries<'a, T, P: 'a, Q>(
    topics: &'a [T],
    topic: impl Fn(&'a T) -> (&'a str, &'a [P]),
    query: impl Fn(&P) -> Q,
) -> Vec<TopicQueries<'a, Q>> {
    topics
        .iter()
        .map(|t| {
            let (name, partitions) = topic(t);
            TopicQueries {
                name,
                partitions: partitions.iter().map(&query).collect(),
            }
        })
        .collect()
}

/// The Kafka error code of one partition's error.
fn error_code(e: &PartitionError) -> i16 {
    partition_error(e).0
}

/// Whether a ListOffsets version may ask for `timestamp`: earliest local
/// from v8, latest tiered from v9 (Kafka answers UNSUPPORTED_VERSION).
fn timestamp_in_version(timestamp: i64, version: i16) -> bool {
    match timestamp {
        EARLIEST_LOCAL => version >= 8,
        LATEST_TIERED => version >= 9,
        _ => true,
    }
}

pub fn list_offsets(
    partitions: &Partitions,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let queries = queries(
        &req.topics,
        |rt| (&*rt.name.0, rt.partitions.as_slice()),
        |rp| OffsetQuery {
            index: rp.partition_index,
            current_leader_epoch: rp.current_leader_epoch,
            timestamp: rp.timestamp,
        },
    );
    let results = partitions.list_offsets(req.isolation_level == 1, &queries);
    let mut resp = ListOffsetsResponse::default();
    for (rt, results) in req.topics.into_iter().zip(results) {
        let mut t = ListOffsetsTopicResponse::default();
        t.name = rt.name;
        for (rp, result) in rt.partitions.into_iter().zip(results) {
            let mut p = ListOffsetsPartitionResponse::default();
            p.partition_index = rp.partition_index;
            p.timestamp = -1;
            p.offset = -1;
            p.leader_epoch = -1;
            match result {
                _ if !timestamp_in_version(rp.timestamp, version) => {
                    p.error_code = code::UNSUPPORTED_VERSION;
                }
                Ok(found) => {
                    p.timestamp = found.timestamp;
                    p.offset = found.offset;
                    if version >= 4 {
                        p.leader_epoch = found.leader_epoch;
                    }
                }
                Err(e) => p.error_code = error_code(&e),
            }
            t.partitions.push(p);
        }
        resp.topics.push(t);
    }
    resp
}

pub fn offset_for_leader_epoch(
    partitions: &Partitions,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let queries = queries(
        &req.topics,
        |rt| (&*rt.topic.0, rt.partitions.as_slice()),
        |rp| EpochQuery {
            index: rp.partition,
            current_leader_epoch: rp.current_leader_epoch,
            leader_epoch: rp.leader_epoch,
        },
    );
    let results = partitions.offset_for_leader_epoch(&queries);
    let mut resp = OffsetForLeaderEpochResponse::default();
    for (rt, results) in req.topics.into_iter().zip(results) {
        let mut t = OffsetForLeaderTopicResult::default();
        t.topic = rt.topic;
        for (rp, result) in rt.partitions.into_iter().zip(results) {
            let mut p = EpochEndOffset::default();
            p.partition = rp.partition;
            p.leader_epoch = -1;
            p.end_offset = -1;
            match result {
                Ok(end) => {
                    p.leader_epoch = end.leader_epoch;
                    p.end_offset = end.end_offset;
                }
                Err(e) => p.error_code = error_code(&e),
            }
            t.partitions.push(p);
        }
        resp.topics.push(t);
    }
    resp
}

pub fn delete_records(partitions: &Partitions, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let queries = queries(
        &req.topics,
        |rt| (&*rt.name.0, rt.partitions.as_slice()),
        |rp| DeleteQuery {
            index: rp.partition_index,
            offset: rp.offset,
        },
    );
    let results = partitions.delete_records(&queries);
    let mut resp = DeleteRecordsResponse::default();
    for (rt, results) in req.topics.into_iter().zip(results) {
        let mut t = DeleteRecordsTopicResult::default();
        t.name = rt.name;
        for (rp, result) in rt.partitions.into_iter().zip(results) {
            let mut p = DeleteRecordsPartitionResult::default();
            p.partition_index = rp.partition_index;
            p.low_watermark = -1;
            match result {
                Ok(low_watermark) => p.low_watermark = low_watermark,
                Err(e) => p.error_code = error_code(&e),
            }
            t.partitions.push(p);
        }
        resp.topics.push(t);
    }
    resp
}
