//! The node's log directory as DescribeLogDirs and AlterReplicaLogDirs see
//! it: one directory (`<data dir>/logs`), the replicas this node hosts in it
//! with their size on disk, and the size and free space of its file system.
//! A node has a single log directory, so a replica can only "move" to the
//! directory it is already in.
//!
//! Must never: speak in Kafka error codes. Locks: none (each log's own,
//! inside its calls).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Partitions;
use crate::log::PartitionLog;
use crate::storage::StorageError;

/// One replica in the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInDir {
    pub topic: String,
    pub partition: i32,
    /// Bytes of its log segments.
    pub size_bytes: u64,
    /// How far its log end is behind its high watermark (Kafka's offset
    /// lag of a current log; 0 once it holds what is committed).
    pub offset_lag: i64,
}

/// The node's log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir {
    /// Its absolute path.
    pub path: PathBuf,
    /// The size of its file system.
    pub total_bytes: u64,
    /// What of that unprivileged writers may still use.
    pub usable_bytes: u64,
    /// The replicas it holds (all, or those asked for), by topic and partition.
    pub replicas: Vec<ReplicaInDir>,
}

/// Why a replica was not moved to a log directory.
#[derive(Debug, thiserror::Error)]
pub enum LogDirError {
    #[error("log directory {0} is not one of this node's (it has one: {1})")]
    NotFound(String, String),
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("this node holds no replica of the partition")]
    NotHosted,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Partitions {
    /// The log directory with the replicas `only` names (topic and
    /// partitions), or every hosted replica when `only` is `None`.
    pub fn describe_log_dir(
        &self,
        only: Option<&[(String, Vec<i32>)]>,
    ) -> Result<LogDir, LogDirError> {
        let volume = self.broker().storage.logs.volume()?;
        let wanted = |log: &PartitionLog| {
            only.is_none_or(|list| {
                list.iter()
                    .any(|(t, ps)| *t == log.topic && ps.contains(&log.partition))
            })
        };
        let mut replicas: Vec<ReplicaInDir> = self
            .hosted_logs()
            .iter()
            .filter(|log| wanted(log))
            .map(|log| ReplicaInDir {
                topic: log.topic.clone(),
                partition: log.partition,
                size_bytes: log.size_bytes(),
                offset_lag: (log.high_watermark() - log.log_end_offset()).max(0),
            })
            .collect();
        replicas.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(LogDir {
            path: self.log_dir_path(),
            total_bytes: volume.total,
            usable_bytes: volume.usable,
            replicas,
        })
    }

    /// Move the replica of `topic`/`partition` to the log directory `path`:
    /// done already when `path` is this node's one directory.
    pub fn alter_replica_log_dir(
        &self,
        path: &str,
        topic: &str,
        partition: i32,
    ) -> Result<(), LogDirError> {
        let mine = self.log_dir_path();
        let asked = Path::new(path);
        let same = asked == mine || asked.canonicalize().is_ok_and(|p| p == mine);
        if !same {
            return Err(LogDirError::NotFound(
                path.to_string(),
                mine.display().to_string(),
            ));
        }
        let known = self
            .all_partitions()
            .iter()
            .any(|(t, p)| t == topic && *p == partition);
        if !known {
            return Err(LogDirError::UnknownTopicOrPartition);
        }
        let hosted = self
            .hosted_logs()
            .iter()
            .any(|log| log.topic == topic && log.partition == partition);
        if hosted {
            Ok(())
        } else {
            Err(LogDirError::NotHosted)
        }
    }

    /// The absolute path of the log directory.
    fn log_dir_path(&self) -> PathBuf {
        let root = &self.broker().storage.logs.root;
        root.canonicalize()
            .or_else(|_| std::path::absolute(root))
            .unwrap_or_else(|_| root.clone())
    }

    /// The local logs of the replicas this node hosts.
    fn hosted_logs(&self) -> Vec<Arc<PartitionLog>> {
        match self.replica_manager() {
            Some(rm) => rm.hosted_logs(),
            None => self
                .broker()
                .topics()
                .iter()
                .flat_map(|t| t.partitions())
                .collect(),
        }
    }
}
