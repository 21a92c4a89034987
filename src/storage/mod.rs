//! The node's sled database and the names of its trees.
//!
//! Owns opening, flushing and the key layout of every tree. It knows nothing
//! about Kafka semantics; `log` and `broker` give the bytes their meaning.

mod topics;

use std::path::Path;

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in tree {tree}: {what}")]
    Corrupt { tree: String, what: String },
}

/// Tree holding topic definitions: topic name -> JSON `TopicRecord`.
pub const TOPICS_TREE: &str = "topics";
/// Tree holding idempotent-producer state: producer key -> JSON `ProducerEntry`.
pub const PRODUCERS_TREE: &str = "producers";
/// Tree holding per-partition metadata (log start offset, leader-epoch cache).
pub const LOGMETA_TREE: &str = "logmeta";

/// Name of the tree holding one partition's record batches, keyed by base offset.
pub fn log_tree_name(topic_id: &str, partition: i32) -> String {
    format!("log:{topic_id}:{partition}")
}

/// Name of the tree holding one partition's batch index (base offset -> summary).
pub fn index_tree_name(topic_id: &str, partition: i32) -> String {
    format!("idx:{topic_id}:{partition}")
}

/// The node's sled database.
#[derive(Clone)]
pub struct Storage {
    /// The one sled database of this node's data directory.
    pub db: sled::Db,
}

impl Storage {
    /// Open (or create) the database in `dir`.
    ///
    /// `flush_interval_ms` of 0 disables sled's background flusher: callers flush
    /// explicitly before acknowledging. `cache_capacity_bytes` bounds sled's cache.
    pub fn open(
        dir: &Path,
        flush_interval_ms: u64,
        cache_capacity_bytes: u64,
    ) -> Result<Self, StorageError> {
        let flush_every = if flush_interval_ms == 0 {
            None
        } else {
            Some(flush_interval_ms)
        };
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity_bytes)
            .flush_every_ms(flush_every)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Ok(Storage { db })
    }

    /// Open a tree by name.
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StorageError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Drop a tree and everything in it.
    pub fn drop_tree(&self, name: &str) -> Result<(), StorageError> {
        self.db.drop_tree(name)?;
        Ok(())
    }

    /// Write every dirty buffer to disk (sled's `flush`: `sync_file_range`, not fsync).
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// A durable, monotonically increasing id (used for producer ids).
    pub fn generate_id(&self) -> Result<u64, StorageError> {
        Ok(self.db.generate_id()?)
    }
}
