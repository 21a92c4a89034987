//! DescribeLogDirs (35) and AlterReplicaLogDirs (34): the node's one log
//! directory (`Partitions::describe_log_dir`: its absolute path, the size
//! of each hosted replica, the size and free space of its file system) and
//! the move of a replica to a directory (`Partitions::alter_replica_log_dir`:
//! done already for the node's own directory, LOG_DIR_NOT_FOUND for any
//! other path).
//!
//! Must never: read files itself. Locks: none.

use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, TopicName,
};

use super::errors::log_dir_error_code;
use super::str_bytes;
use crate::partition::Partitions;

/// Answer a DescribeLogDirs: the log directory with the replicas asked for
/// (every hosted replica when the request names no topics).
pub fn describe(partitions: &Partitions, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let only: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut resp = DescribeLogDirsResponse::default();
    let dir = match partitions.describe_log_dir(only.as_deref()) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(error = %e, "cannot describe the log directory");
            resp.error_code = log_dir_error_code(&e);
            return resp;
        }
    };
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = str_bytes(dir.path.display().to_string());
    result.total_bytes = i64::try_from(dir.total_bytes).unwrap_or(i64::MAX);
    result.usable_bytes = i64::try_from(dir.usable_bytes).unwrap_or(i64::MAX);
    for replica in dir.replicas {
        let mut p = DescribeLogDirsPartition::default();
        p.partition_index = replica.partition;
        p.partition_size = i64::try_from(replica.size_bytes).unwrap_or(i64::MAX);
        p.offset_lag = replica.offset_lag;
        p.is_future_key = false;
        match result.topics.last_mut() {
            Some(t) if *t.name.0 == *replica.topic => t.partitions.push(p),
            _ => {
                let mut t = DescribeLogDirsTopic::default();
                t.name = TopicName(str_bytes(replica.topic));
                t.partitions.push(p);
                result.topics.push(t);
            }
        }
    }
    resp.results.push(result);
    resp
}

/// A DescribeLogDirs refused with `error` (v3+ carries it; older versions
/// get no directory).
pub fn describe_refused(error: i16) -> DescribeLogDirsResponse {
    let mut resp = DescribeLogDirsResponse::default();
    resp.error_code = error;
    resp
}

/// Answer an AlterReplicaLogDirs, one result per partition named.
pub fn alter(
    partitions: &Partitions,
    req: AlterReplicaLogDirsRequest,
) -> AlterReplicaLogDirsResponse {
    let mut resp = AlterReplicaLogDirsResponse::default();
    for dir in req.dirs {
        let path = dir.path.to_string();
        for topic in dir.topics {
            let name = topic.name.0.to_string();
            let mut t = AlterReplicaLogDirTopicResult::default();
            t.topic_name = topic.name;
            for partition in topic.partitions {
                let mut p = AlterReplicaLogDirPartitionResult::default();
                p.partition_index = partition;
                if let Err(e) = partitions.alter_replica_log_dir(&path, &name, partition) {
                    p.error_code = log_dir_error_code(&e);
                }
                t.partitions.push(p);
            }
            resp.results.push(t);
        }
    }
    resp
}

/// An AlterReplicaLogDirs refused with `error` for every partition.
pub fn alter_refused(req: AlterReplicaLogDirsRequest, error: i16) -> AlterReplicaLogDirsResponse {
    let mut resp = AlterReplicaLogDirsResponse::default();
    for topic in req.dirs.into_iter().flat_map(|d| d.topics) {
        let mut t = AlterReplicaLogDirTopicResult::default();
        t.topic_name = topic.name;
        t.partitions = topic
            .partitions
            .into_iter()
            .map(|i| {
                let mut p = AlterReplicaLogDirPartitionResult::default();
                p.partition_index = i;
                p.error_code = error;
                p
            })
            .collect();
        resp.results.push(t);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::super::code;
    use super::*;
    use kafka_protocol::messages::alter_replica_log_dirs_request::{
        AlterReplicaLogDir, AlterReplicaLogDirTopic,
    };

    #[test]
    fn a_refusal_answers_every_partition() {
        let mut topic = AlterReplicaLogDirTopic::default();
        topic.name = TopicName(str_bytes("orders"));
        topic.partitions = vec![0, 2];
        let mut dir = AlterReplicaLogDir::default();
        dir.path = str_bytes("/data/logs");
        dir.topics = vec![topic];
        let mut req = AlterReplicaLogDirsRequest::default();
        req.dirs = vec![dir];
        let resp = alter_refused(req, code::CLUSTER_AUTHORIZATION_FAILED);
        let codes: Vec<(i32, i16)> = resp.results[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        assert_eq!(
            codes,
            vec![
                (0, code::CLUSTER_AUTHORIZATION_FAILED),
                (2, code::CLUSTER_AUTHORIZATION_FAILED)
            ]
        );
        assert_eq!(describe_refused(code::NONE).results.len(), 0);
    }
}
