//! Open file handles of the segment store, bounded, and the disk-space guard.
//!
//! `FileCache` keeps at most `capacity` files open across every partition of
//! the node (least recently used closed first); a handle in use elsewhere
//! stays valid until its last user drops it, so an eviction never breaks a
//! read or a write in progress. `DiskSpace` refuses appends while the file
//! system holding the logs has less than the reserve free, so the node's sled
//! database always has room to write its metadata.
//!
//! Owns no log semantics. Lock order: a `FileCache` or `DiskSpace` lock is
//! taken last and never held across another lock.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::StorageError;

/// Which file of a segment a handle is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Log,
    Index,
    TimeIndex,
}

struct CacheInner {
    /// Incremented on every use; the smallest stamp is evicted first.
    clock: u64,
    open: HashMap<(u64, FileKind), (Arc<File>, u64)>,
}

/// A bounded set of open segment files, keyed by (segment id, kind).
pub struct FileCache {
    /// Most handles kept open at once (`--log-open-files`).
    capacity: usize,
    inner: Mutex<CacheInner>,
}

impl FileCache {
    pub fn new(capacity: usize) -> Self {
        FileCache {
            capacity: capacity.max(3),
            inner: Mutex::new(CacheInner {
                clock: 0,
                open: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open handle of `path` (opened read-write, created when missing).
    pub fn get(&self, segment: u64, kind: FileKind, path: &Path) -> std::io::Result<Arc<File>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some((file, stamp)) = inner.open.get_mut(&(segment, kind)) {
            *stamp = now;
            return Ok(file.clone());
        }
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?,
        );
        if inner.open.len() >= self.capacity {
            if let Some(oldest) = inner
                .open
                .iter()
                .min_by_key(|(_, (_, stamp))| *stamp)
                .map(|(k, _)| *k)
            {
                inner.open.remove(&oldest);
            }
        }
        inner.open.insert((segment, kind), (file.clone(), now));
        Ok(file)
    }

    /// Close the handles of a segment (it is being deleted).
    pub fn forget(&self, segment: u64) {
        let mut inner = self.lock();
        for kind in [FileKind::Log, FileKind::Index, FileKind::TimeIndex] {
            inner.open.remove(&(segment, kind));
        }
    }

    /// How many handles are open now.
    pub fn open_count(&self) -> usize {
        self.lock().open.len()
    }
}

struct SpaceInner {
    /// Free bytes at the last check.
    free: u64,
    /// Bytes admitted since then.
    admitted: u64,
    checked: Option<Instant>,
}

/// Refuses appends that would leave less than `reserve` bytes free.
pub struct DiskSpace {
    path: PathBuf,
    reserve: u64,
    inner: Mutex<SpaceInner>,
}

/// How long a free-space reading is trusted.
const RECHECK_EVERY: Duration = Duration::from_millis(100);

impl DiskSpace {
    pub fn new(path: PathBuf, reserve: u64) -> Self {
        DiskSpace {
            path,
            reserve,
            inner: Mutex::new(SpaceInner {
                free: 0,
                admitted: 0,
                checked: None,
            }),
        }
    }

    /// Admit a write of `len` bytes, or refuse it with `DiskFull`.
    pub fn admit(&self, len: u64) -> Result<(), StorageError> {
        if self.reserve == 0 {
            return Ok(());
        }
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let headroom = s.free.saturating_sub(self.reserve);
        // Re-read the file system when the reading is old, or when what was
        // admitted since could have used up half of the headroom.
        let stale = s.checked.is_none_or(|t| t.elapsed() >= RECHECK_EVERY)
            || (s.admitted + len) * 2 > headroom;
        if stale {
            s.free = free_bytes(&self.path)?;
            s.admitted = 0;
            s.checked = Some(Instant::now());
        }
        if s.free < self.reserve.saturating_add(s.admitted).saturating_add(len) {
            // Look again at the next write: space may come back at any time.
            s.checked = None;
            return Err(StorageError::DiskFull {
                free: s.free,
                reserve: self.reserve,
            });
        }
        s.admitted += len;
        Ok(())
    }
}

/// Free bytes (for unprivileged users) of the file system holding `path`.
pub fn free_bytes(path: &Path) -> Result<u64, StorageError> {
    Ok(volume_bytes(path)?.usable)
}

/// The size of the file system holding a path, and what of it is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeBytes {
    /// Its whole size.
    pub total: u64,
    /// Free for unprivileged users (what the log may still write).
    pub usable: u64,
}

/// The size and free bytes of the file system holding `path` (statvfs).
pub fn volume_bytes(path: &Path) -> Result<VolumeBytes, StorageError> {
    use std::os::unix::ffi::OsStrExt;
    let mut c_path = path.as_os_str().as_bytes().to_vec();
    c_path.push(0);
    // SAFETY: `statvfs` is plain old data, so all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and outlives the call; `st` is a
    // valid, writable statvfs.
    let rc = unsafe { libc::statvfs(c_path.as_ptr().cast(), &mut st) };
    if rc != 0 {
        return Err(StorageError::Io(std::io::Error::last_os_error()));
    }
    let block = st.f_frsize as u64;
    Ok(VolumeBytes {
        total: (st.f_blocks as u64).saturating_mul(block),
        usable: (st.f_bavail as u64).saturating_mul(block),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(4);
        for i in 0..10u64 {
            let path = dir.path().join(format!("{i}.log"));
            cache.get(i, FileKind::Log, &path).unwrap();
            assert!(cache.open_count() <= 4);
        }
        // The most recent ones are still open; a closed one reopens.
        let path = dir.path().join("0.log");
        cache.get(0, FileKind::Log, &path).unwrap();
        assert_eq!(cache.open_count(), 4);
    }

    #[test]
    fn the_volume_is_at_least_as_large_as_its_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let volume = volume_bytes(dir.path()).unwrap();
        assert!(volume.total > 0);
        assert!(volume.usable <= volume.total);
        assert!(volume_bytes(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path().to_path_buf(), u64::MAX / 2);
        assert!(matches!(space.admit(1), Err(StorageError::DiskFull { .. })));
        let roomy = DiskSpace::new(dir.path().to_path_buf(), 1);
        roomy.admit(1).unwrap();
    }
}
