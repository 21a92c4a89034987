//! ListOffsets (earliest, latest, by timestamp, max timestamp),
//! OffsetForLeaderEpoch and DeleteRecords.

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
use super::errors::replica_result_code;
use crate::log::{PartitionLog, ReadError};
use crate::partition::Partitions;

/// ListOffsets special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// (timestamp, offset) for a ListOffsets query; `read_committed` clients
/// see offsets below the last stable offset only.
fn lookup(
    log: &PartitionLog,
    timestamp: i64,
    read_committed: bool,
) -> Result<(i64, i64), ReadError> {
    let visible = if read_committed {
        log.last_stable_offset()
    } else {
        i64::MAX
    };
    let below = |found: Option<(i64, i64)>| match found {
        Some((o, t)) if o < visible => (t, o),
        _ => (-1, -1),
    };
    Ok(match timestamp {
        LATEST if read_committed => (-1, visible),
        LATEST => (-1, log.high_watermark()),
        EARLIEST => (-1, log.log_start_offset()),
        MAX_TIMESTAMP => below(log.max_timestamp_offset()?),
        ts if ts >= 0 => below(log.offset_for_timestamp(ts)?),
        _ => {
            return Err(ReadError::OffsetOutOfRange {
                offset: timestamp,
                log_start_offset: 0,
                log_end_offset: 0,
            })
        }
    })
}

pub fn list_offsets(
    partitions: &Partitions,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut resp = ListOffsetsResponse::default();
    for rt in req.topics {
        let topic = partitions.broker().topic(&rt.name.0);
        let mut t = ListOffsetsTopicResponse::default();
        t.name = rt.name;
        for rp in rt.partitions {
            let mut p = ListOffsetsPartitionResponse::default();
            p.partition_index = rp.partition_index;
            p.timestamp = -1;
            p.offset = -1;
            p.leader_epoch = -1;
            match topic.as_ref().and_then(|t| t.partition(rp.partition_index)) {
                None => p.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
                Some(log) => {
                    let epoch_error = replica_result_code(
                        &partitions.check_leader(&log, rp.current_leader_epoch),
                    );
                    if epoch_error != code::NONE {
                        p.error_code = epoch_error;
                    } else {
                        match lookup(&log, rp.timestamp, req.isolation_level == 1) {
                            Ok((ts, offset)) => {
                                p.timestamp = ts;
                                p.offset = offset;
                                if version >= 4 {
                                    p.leader_epoch = log.leader_epoch();
                                }
                            }
                            Err(ReadError::OffsetOutOfRange { .. }) => {
                                p.error_code = code::INVALID_REQUEST
                            }
                            Err(ReadError::Storage(_)) => p.error_code = code::KAFKA_STORAGE_ERROR,
                        }
                    }
                }
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
    let mut resp = OffsetForLeaderEpochResponse::default();
    for rt in req.topics {
        let topic = partitions.broker().topic(&rt.topic.0);
        let mut t = OffsetForLeaderTopicResult::default();
        t.topic = rt.topic;
        for rp in rt.partitions {
            let mut p = EpochEndOffset::default();
            p.partition = rp.partition;
            p.leader_epoch = -1;
            p.end_offset = -1;
            match topic.as_ref().and_then(|t| t.partition(rp.partition)) {
                None => p.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
                Some(log) => {
                    let epoch_error = replica_result_code(
                        &partitions.check_leader(&log, rp.current_leader_epoch),
                    );
                    if epoch_error != code::NONE {
                        p.error_code = epoch_error;
                    } else {
                        let (epoch, end) = log.end_offset_for_epoch(rp.leader_epoch);
                        p.leader_epoch = epoch;
                        p.end_offset = end;
                    }
                }
            }
            t.partitions.push(p);
        }
        resp.topics.push(t);
    }
    resp
}

pub fn delete_records(partitions: &Partitions, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    for rt in req.topics {
        let topic = partitions.broker().topic(&rt.name.0);
        let mut t = DeleteRecordsTopicResult::default();
        t.name = rt.name;
        for rp in rt.partitions {
            let mut p = DeleteRecordsPartitionResult::default();
            p.partition_index = rp.partition_index;
            p.low_watermark = -1;
            match topic.as_ref().and_then(|t| t.partition(rp.partition_index)) {
                None => p.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
                Some(log)
                    if replica_result_code(&partitions.check_leader(&log, -1)) != code::NONE =>
                {
                    p.error_code = code::NOT_LEADER_OR_FOLLOWER
                }
                Some(log) => match log.delete_records_before(rp.offset) {
                    Ok(low) => p.low_watermark = low,
                    Err(ReadError::OffsetOutOfRange { .. }) => {
                        p.error_code = code::OFFSET_OUT_OF_RANGE
                    }
                    Err(ReadError::Storage(_)) => p.error_code = code::KAFKA_STORAGE_ERROR,
                },
            }
            t.partitions.push(p);
        }
        resp.topics.push(t);
    }
    resp
}
