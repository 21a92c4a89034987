//! The offset calls of the partition layer, one per Kafka API: ListOffsets
//! (`list_offsets`: earliest, latest, by timestamp, max timestamp, and the
//! tiered-storage lookups answered for a log that has no remote tier),
//! OffsetForLeaderEpoch (`offset_for_leader_epoch`) and DeleteRecords
//! (`delete_records`). Each takes every partition of a request, checks that
//! this node leads it (and the client's leader epoch), asks the partition's
//! log, and returns one typed result per partition, in request order.
//!
//! Must never: know the wire format (it returns `PartitionError`).
//! Locks: none of its own; the log takes its own.

use super::{PartitionError, Partitions};
use crate::log::{PartitionLog, ReadError};
use crate::replication::ReplicaError;

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// The earliest offset on local storage (KIP-405): all of the log here,
/// which has no remote tier.
pub const EARLIEST_LOCAL: i64 = -4;
/// The last offset in remote storage (KIP-1005): none without a remote tier.
pub const LATEST_TIERED: i64 = -5;

/// The partitions of one topic in an offsets request.
pub struct TopicQueries<'a, Q> {
    pub name: &'a str,
    pub partitions: Vec<Q>,
}

/// One partition of a ListOffsets.
#[derive(Debug, Clone, Copy)]
pub struct OffsetQuery {
    pub index: i32,
    /// The client's leader epoch, -1 when it has none.
    pub current_leader_epoch: i32,
    /// A timestamp (>= 0), or -1 (latest), -2 (earliest), -3 (max
    /// timestamp), -4 (earliest local), -5 (latest tiered).
    pub timestamp: i64,
}

/// What ListOffsets found in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The record's timestamp, -1 for earliest and latest (and when none matched).
    pub timestamp: i64,
    /// -1 when no record matched.
    pub offset: i64,
    /// The partition's leader epoch.
    pub leader_epoch: i32,
}

/// One partition of an OffsetForLeaderEpoch.
#[derive(Debug, Clone, Copy)]
pub struct EpochQuery {
    pub index: i32,
    /// The client's leader epoch, -1 when it has none.
    pub current_leader_epoch: i32,
    /// The epoch whose end offset is asked for.
    pub leader_epoch: i32,
}

/// The end of a leader epoch in one partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch at or below the one asked for (-1: none).
    pub leader_epoch: i32,
    /// The first offset after that epoch (-1: none).
    pub end_offset: i64,
}

/// One partition of a DeleteRecords.
#[derive(Debug, Clone, Copy)]
pub struct DeleteQuery {
    pub index: i32,
    /// The new log start offset, or -1 for the high watermark.
    pub offset: i64,
}

/// One partition's answer to ListOffsets.
pub type ListOffsetsResult = Result<ListedOffset, PartitionError>;
/// One partition's answer to OffsetForLeaderEpoch.
pub type EpochEndResult = Result<EpochEnd, PartitionError>;
/// One partition's answer to DeleteRecords: the new log start offset.
pub type DeleteRecordsResult = Result<i64, PartitionError>;

impl Partitions {
    /// ListOffsets: each partition's offset for its timestamp, on its leader
    /// and at the client's leader epoch. `read_committed` clients see offsets
    /// below the last stable offset only.
    pub fn list_offsets(
        &self,
        read_committed: bool,
        topics: &[TopicQueries<'_, OffsetQuery>],
    ) -> Vec<Vec<ListOffsetsResult>> {
        self.each_partition(
            topics,
            |q| q.index,
            |log, q| {
                self.check_leader(log, q.current_leader_epoch)?;
                let (timestamp, offset) = lookup(log, q.timestamp, read_committed)?;
                Ok(ListedOffset {
                    timestamp,
                    offset,
                    // Kafka answers "no offset" of a log without a remote
                    // tier with no epoch either.
                    leader_epoch: if q.timestamp == LATEST_TIERED {
                        -1
                    } else {
                        log.leader_epoch()
                    },
                })
            },
        )
    }

    /// OffsetForLeaderEpoch: the end offset of each asked epoch, on the
    /// partition's leader and at the client's leader epoch.
    pub fn offset_for_leader_epoch(
        &self,
        topics: &[TopicQueries<'_, EpochQuery>],
    ) -> Vec<Vec<EpochEndResult>> {
        self.each_partition(
            topics,
            |q| q.index,
            |log, q| {
                self.check_leader(log, q.current_leader_epoch)?;
                let (leader_epoch, end_offset) = log.end_offset_for_epoch(q.leader_epoch);
                Ok(EpochEnd {
                    leader_epoch,
                    end_offset,
                })
            },
        )
    }

    /// DeleteRecords: move each partition's log start offset forward. Only
    /// the leader deletes (followers follow its log start offset); any
    /// other answer is "not the leader".
    pub fn delete_records(
        &self,
        topics: &[TopicQueries<'_, DeleteQuery>],
    ) -> Vec<Vec<DeleteRecordsResult>> {
        self.each_partition(
            topics,
            |q| q.index,
            |log, q| {
                self.check_leader(log, -1)
                    .map_err(|_| ReplicaError::NotLeaderOrFollower)?;
                log.delete_records_before(q.offset).map_err(|e| match e {
                    ReadError::OffsetOutOfRange {
                        log_start_offset, ..
                    } => PartitionError::OffsetOutOfRange {
                        high_watermark: log.high_watermark(),
                        log_start_offset,
                    },
                    e => PartitionError::Read(e),
                })
            },
        )
    }

    /// `answer` for every partition of `topics` that this node has, in
    /// request order; unknown topics and partitions are answered as such.
    fn each_partition<Q, R>(
        &self,
        topics: &[TopicQueries<'_, Q>],
        index: impl Fn(&Q) -> i32,
        answer: impl Fn(&PartitionLog, &Q) -> Result<R, PartitionError>,
    ) -> Vec<Vec<Result<R, PartitionError>>> {
        topics
            .iter()
            .map(|t| {
                let topic = self.broker.topic(t.name);
                t.partitions
                    .iter()
                    .map(
                        |q| match topic.as_ref().and_then(|found| found.partition(index(q))) {
                            None => Err(PartitionError::UnknownTopicOrPartition),
                            Some(log) => answer(&log, q),
                        },
                    )
                    .collect()
            })
            .collect()
    }
}

/// (timestamp, offset) for a ListOffsets query; `read_committed` clients
/// see offsets below the last stable offset only.
fn lookup(
    log: &PartitionLog,
    timestamp: i64,
    read_committed: bool,
) -> Result<(i64, i64), PartitionError> {
    let visible = if read_committed {
        log.last_stable_offset()
    } else {
        i64::MAX
    };
    let below = |found: Option<(i64, i64)>| match found {
        Some((o, t)) if o < visible => (t, o),
        _ => (-1, -1),
    };
    let read = |e: ReadError| match e {
        ReadError::OffsetOutOfRange { .. } => PartitionError::InvalidTimestamp(timestamp),
        e => PartitionError::Read(e),
    };
    Ok(match timestamp {
        LATEST if read_committed => (-1, visible),
        LATEST => (-1, log.high_watermark()),
        EARLIEST | EARLIEST_LOCAL => (-1, log.log_start_offset()),
        LATEST_TIERED => (-1, -1),
        MAX_TIMESTAMP => below(log.max_timestamp_offset().map_err(read)?),
        ts if ts >= 0 => below(log.offset_for_timestamp(ts).map_err(read)?),
        _ => return Err(PartitionError::InvalidTimestamp(timestamp)),
    })
}
