//! The node's storage: its sled database (and the names of its trees), and
//! the directory where partition logs keep their segment files, with the
//! resources every log shares (bounded file handles, the disk-space guard).
//!
//! Owns opening, flushing and the key layout of every tree (`raft`: the Raft
//! trees). It knows nothing about Kafka semantics; `log`, `broker` and
//! `cluster` give the bytes their meaning. The database itself stays private
//! to this module: callers get trees (`log`) or typed calls.

mod app_trees;
mod files;
mod http_tokens;
mod raft;
mod security;
mod share_state;
mod topics;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::config::LogStoreKind;
pub use app_trees::{AppTree, AppTx, TxError, TxStop};
pub use files::{free_bytes, FileKind, VolumeBytes};
use files::{DiskSpace, FileCache};
pub use raft::{RaftTrees, RaftValue};
pub use share_state::ShareStateTree;

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in tree {tree}: {what}")]
    Corrupt { tree: String, what: String },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("disk full: {free} bytes free, {reserve} kept in reserve")]
    DiskFull { free: u64, reserve: u64 },
}

/// How the node's storage is set up.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// sled's flush interval; 0 disables its background flusher.
    pub flush_interval_ms: u64,
    /// sled's page cache.
    pub cache_capacity_bytes: u64,
    pub log_store: LogStoreKind,
    /// Most segment file handles open at once.
    pub log_open_files: usize,
    /// Appends are refused while less than this is free on the log disk.
    pub disk_reserve_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            flush_interval_ms: 500,
            cache_capacity_bytes: 64 * 1024 * 1024,
            log_store: LogStoreKind::Segments,
            log_open_files: 1024,
            disk_reserve_bytes: 0,
        }
    }
}

/// The directory of the partition logs and what they share.
pub struct LogDirs {
    /// `<data dir>/logs`: one directory per partition.
    pub root: PathBuf,
    pub kind: LogStoreKind,
    /// The node's `--flush-interval-ms` (0: fsync before acknowledging).
    pub flush_interval_ms: u64,
    pub(crate) files: FileCache,
    pub(crate) space: DiskSpace,
}

impl LogDirs {
    /// Bounded open handles of segment files.
    pub fn file(
        &self,
        segment: u64,
        kind: FileKind,
        path: &Path,
    ) -> std::io::Result<Arc<std::fs::File>> {
        self.files.get(segment, kind, path)
    }
    /// Close a deleted segment's handles.
    pub fn forget(&self, segment: u64) {
        self.files.forget(segment)
    }
    /// Admit an append of `len` bytes, or refuse it while the disk is full.
    pub fn admit(&self, len: u64) -> Result<(), StorageError> {
        self.space.admit(len)
    }
    /// Segment file handles open now.
    pub fn open_files(&self) -> usize {
        self.files.open_count()
    }
    /// The size and free bytes of the file system holding the logs.
    pub fn volume(&self) -> Result<VolumeBytes, StorageError> {
        files::volume_bytes(&self.root)
    }
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

/// The node's sled database and its log directory.
#[derive(Clone)]
pub struct Storage {
    /// The one sled database of this node's data directory (its trees are
    /// reached through this module's calls, never by name from outside).
    db: sled::Db,
    /// Where partition logs put their segments.
    pub logs: Arc<LogDirs>,
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
        Self::open_with(
            dir,
            &StorageOptions {
                flush_interval_ms,
                cache_capacity_bytes,
                ..StorageOptions::default()
            },
        )
    }

    /// Open (or create) the database and the log directory in `dir`.
    pub fn open_with(dir: &Path, options: &StorageOptions) -> Result<Self, StorageError> {
        let flush_every = if options.flush_interval_ms == 0 {
            None
        } else {
            Some(options.flush_interval_ms)
        };
        std::fs::create_dir_all(dir)?;
        remove_unfinished_snapshots(dir);
        if options.disk_reserve_bytes > 0 {
            let free = free_bytes(dir)?;
            if free < options.disk_reserve_bytes {
                // Opening sled may write (a snapshot, a new log file); on a
                // full disk that can leave a half-written file behind.
                return Err(StorageError::DiskFull {
                    free,
                    reserve: options.disk_reserve_bytes,
                });
            }
        }
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity_bytes)
            .flush_every_ms(flush_every)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let root = dir.join("logs");
        std::fs::create_dir_all(&root)?;
        let logs = Arc::new(LogDirs {
            space: DiskSpace::new(root.clone(), options.disk_reserve_bytes),
            files: FileCache::new(options.log_open_files),
            kind: options.log_store,
            flush_interval_ms: options.flush_interval_ms,
            root,
        });
        Ok(Storage { db, logs })
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

    /// `flush` for callers that may block (sled's own thread-blocking flush).
    pub fn flush_sync(&self) -> Result<(), StorageError> {
        self.db.flush()?;
        Ok(())
    }

    /// A durable, monotonically increasing id (used for producer ids).
    pub fn generate_id(&self) -> Result<u64, StorageError> {
        Ok(self.db.generate_id()?)
    }
}

/// sled writes a snapshot as `snap.<n>.generating` and renames it when
/// complete; one left behind by a crash (or a full disk) is garbage that
/// would keep sled from opening the directory.
fn remove_unfinished_snapshots(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::warn!(file = %name, "removed an unfinished sled snapshot"),
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove an unfinished sled snapshot")
                }
            }
        }
    }
}
