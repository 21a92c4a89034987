//! The segment store: one partition's record batches in append-only files,
//! Kafka's layout.
//!
//! A partition has a directory; in it, segments named by the zero-padded base
//! offset of their first batch: `00000000000000000000.log` holds batches byte
//! for byte as served, `.index` a sparse offset index (relative offset u32,
//! position u32, one entry per `INDEX_INTERVAL` bytes of log) and
//! `.timeindex` a time index (timestamp i64, relative offset u32: the largest
//! timestamp seen up to that indexed batch). The last segment is the active
//! one; appends go there with `pwrite`, so an acknowledged batch is in the
//! kernel's page cache and survives a crash of the process. Reads use `pread`
//! and keep no copy of the log in the process.
//!
//! Recovery at open: closed segments are trusted (their indexes are loaded,
//! or rebuilt when missing or damaged); the active segment is checked batch
//! by batch (lengths, offsets, CRC-32C) and a torn tail is cut off.
//!
//! Never assigns offsets or decides what is committed (`PartitionLog` does).
//! Lock order: the segment list, then one segment's metadata; file handles
//! and the disk guard are taken last (see `files`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use super::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use super::store::{BatchSummary, LogStore, RollPolicy, SegmentInfo, StoredRead};
use crate::storage::{FileKind, LogDirs, StorageError};

/// Bytes of log between two offset-index entries (Kafka's `index.interval.bytes`).
pub const INDEX_INTERVAL: u64 = 4096;
/// Size of one offset-index entry on disk.
const INDEX_ENTRY: usize = 8;
/// Size of one time-index entry on disk.
const TIME_ENTRY: usize = 12;
/// How much a header walk reads at once.
const WALK_BUFFER: usize = 64 * 1024;
/// Segments stay below this size so positions fit the index's u32.
const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

/// Ids of segments in the file cache, unique in the process.
static NEXT_SEGMENT_ID: AtomicU64 = AtomicU64::new(1);

/// The mutable part of a segment.
#[derive(Debug, Clone)]
struct SegmentMeta {
    /// Bytes of whole batches in the file (what reads may see).
    size: u64,
    /// One past the last offset stored (the base offset while empty).
    next_offset: i64,
    /// Largest timestamp stored, -1 while empty.
    max_timestamp: i64,
    /// Sparse offset index: (base offset of a batch, its position).
    index: Vec<(i64, u64)>,
    /// Time index: (largest timestamp up to this batch, its base offset, its position).
    time_index: Vec<(i64, i64, u64)>,
    /// Log bytes written since the last index entry.
    since_index: u64,
    /// When this segment became active (for `segment.ms`).
    created_ms: i64,
    /// Written since the last fsync.
    dirty: bool,
}

struct Segment {
    /// Key of its handles in the file cache.
    id: u64,
    base_offset: i64,
    log_path: PathBuf,
    index_path: PathBuf,
    time_path: PathBuf,
    meta: RwLock<SegmentMeta>,
}

impl Segment {
    fn new(dir: &Path, base_offset: i64, meta: SegmentMeta) -> Self {
        let stem = format!("{:020}", base_offset);
        Segment {
            id: NEXT_SEGMENT_ID.fetch_add(1, Ordering::Relaxed),
            base_offset,
            log_path: dir.join(format!("{stem}.log")),
            index_path: dir.join(format!("{stem}.index")),
            time_path: dir.join(format!("{stem}.timeindex")),
            meta: RwLock::new(meta),
        }
    }

    fn meta(&self) -> std::sync::RwLockReadGuard<'_, SegmentMeta> {
        self.meta.read().unwrap_or_else(|p| p.into_inner())
    }

    fn meta_mut(&self) -> std::sync::RwLockWriteGuard<'_, SegmentMeta> {
        self.meta.write().unwrap_or_else(|p| p.into_inner())
    }

    fn file(&self, env: &LogDirs, kind: FileKind) -> Result<Arc<File>, StorageError> {
        let path = match kind {
            FileKind::Log => &self.log_path,
            FileKind::Index => &self.index_path,
            FileKind::TimeIndex => &self.time_path,
        };
        Ok(env.file(self.id, kind, path)?)
    }

    fn info(&self) -> SegmentInfo {
        let m = self.meta();
        SegmentInfo {
            base_offset: self.base_offset,
            next_offset: m.next_offset,
            size_bytes: m.size,
            max_timestamp: m.max_timestamp,
        }
    }

    /// Position of the batch holding `offset`, or of the first batch after
    /// it; `size` when there is none.
    fn locate(&self, env: &LogDirs, offset: i64) -> Result<u64, StorageError> {
        let (start, size) = {
            let m = self.meta();
            let i = m.index.partition_point(|(o, _)| *o <= offset);
            (if i == 0 { 0 } else { m.index[i - 1].1 }, m.size)
        };
        let mut found = size;
        walk_headers(&*self.file(env, FileKind::Log)?, start, size, |pos, h| {
            if h.last_offset() >= offset {
                found = pos;
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    fn remove_files(&self, env: &LogDirs) {
        env.forget(self.id);
        for path in [&self.log_path, &self.index_path, &self.time_path] {
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove segment file");
                }
            }
        }
    }
}

/// Walk the batch headers in `[pos, end)` of a log file; `f` gets each
/// batch's position and header and says whether to go on. Stops quietly at
/// anything that is not a whole batch header.
fn walk_headers(
    file: &File,
    mut pos: u64,
    end: u64,
    mut f: impl FnMut(u64, &BatchHeader) -> bool,
) -> Result<(), StorageError> {
    // Sized to the range walked: `locate` walks a few KiB on every fetch.
    let mut buf = vec![0u8; (end.saturating_sub(pos) as usize).min(WALK_BUFFER)];
    let mut buf_start = 0u64;
    let mut buf_len = 0usize;
    while pos + HEADER_LEN as u64 <= end {
        if pos < buf_start || pos + HEADER_LEN as u64 > buf_start + buf_len as u64 {
            let n = ((end - pos) as usize).min(WALK_BUFFER);
            file.read_exact_at(&mut buf[..n], pos)?;
            buf_start = pos;
            buf_len = n;
        }
        let at = (pos - buf_start) as usize;
        let Ok(h) = batch::parse_header(&buf[at..at + HEADER_LEN]) else {
            return Ok(());
        };
        if (h.batch_length as usize) < HEADER_LEN - LOG_OVERHEAD {
            return Ok(());
        }
        if !f(pos, &h) {
            return Ok(());
        }
        pos += h.total_len() as u64;
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn empty_meta(base_offset: i64) -> SegmentMeta {
    SegmentMeta {
        size: 0,
        next_offset: base_offset,
        max_timestamp: -1,
        index: Vec::new(),
        time_index: Vec::new(),
        since_index: 0,
        created_ms: now_ms(),
        dirty: false,
    }
}

/// Record a batch written at `pos` in a segment's metadata (and its index
/// entries, every `INDEX_INTERVAL` bytes).
fn account(
    m: &mut SegmentMeta,
    base_offset: i64,
    last_offset: i64,
    max_ts: i64,
    pos: u64,
    len: u64,
) {
    m.max_timestamp = m.max_timestamp.max(max_ts);
    if pos > 0 && m.since_index >= INDEX_INTERVAL {
        m.index.push((base_offset, pos));
        m.since_index = 0;
        if m.time_index.last().is_none_or(|t| m.max_timestamp > t.0) {
            m.time_index.push((m.max_timestamp, base_offset, pos));
        }
    }
    m.since_index += len;
    m.size = pos + len;
    m.next_offset = last_offset + 1;
}

/// One partition's segments.
pub struct SegmentStore {
    dir: PathBuf,
    env: Arc<LogDirs>,
    /// Oldest first; the last one is active. Empty until the first append.
    segments: RwLock<Vec<Arc<Segment>>>,
}

impl SegmentStore {
    /// Open the partition in `dir` (created on the first append), recovering
    /// what a crash left.
    pub fn open(dir: PathBuf, env: Arc<LogDirs>) -> Result<Self, StorageError> {
        let mut bases = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    if name.ends_with(".log.cleaned") {
                        // A compaction cut short: the old segment is intact.
                        std::fs::remove_file(entry.path())?;
                        continue;
                    }
                    if let Some(stem) = name.strip_suffix(".log") {
                        if let Ok(base) = stem.parse::<i64>() {
                            bases.push(base);
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        bases.sort_unstable();
        let store = SegmentStore {
            dir,
            env,
            segments: RwLock::new(Vec::new()),
        };
        let count = bases.len();
        let mut list = Vec::with_capacity(count);
        for (i, base) in bases.into_iter().enumerate() {
            let active = i + 1 == count;
            let segment = Segment::new(&store.dir, base, empty_meta(base));
            store.recover(&segment, active)?;
            list.push(Arc::new(segment));
        }
        *store.segments.write().unwrap_or_else(|p| p.into_inner()) = list;
        Ok(store)
    }

    fn list(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuild a segment's metadata from its files. The active segment is
    /// checked batch by batch and cut at the first damaged or partial batch;
    /// a closed one trusts its indexes when they look sound.
    fn recover(&self, segment: &Segment, active: bool) -> Result<(), StorageError> {
        let file = segment.file(&self.env, FileKind::Log)?;
        let file_len = file.metadata()?.len();
        let mut m = empty_meta(segment.base_offset);
        let loaded = if active {
            None
        } else {
            self.load_indexes(segment, file_len)?
        };
        let (start, verify) = match loaded {
            Some((index, time_index)) => {
                let start = time_index.last().map(|t| t.2).unwrap_or(0);
                m.max_timestamp = time_index.last().map(|t| t.0).unwrap_or(-1);
                m.index = index;
                m.time_index = time_index;
                (start, false)
            }
            None => (0, active),
        };
        let rebuilding = start == 0;
        // Walk from `start`, checking each batch; stop at the first bad one.
        let mut pos = start;
        let mut header = [0u8; HEADER_LEN];
        let mut body = Vec::new();
        let mut expected = segment.base_offset;
        loop {
            if pos + HEADER_LEN as u64 > file_len {
                break;
            }
            file.read_exact_at(&mut header, pos)?;
            let Ok(h) = batch::parse_header(&header) else {
                break;
            };
            let total = h.total_len() as u64;
            if (h.batch_length as usize) < HEADER_LEN - LOG_OVERHEAD
                || pos + total > file_len
                || h.base_offset < expected
                || h.last_offset() < h.base_offset
            {
                break;
            }
            if verify {
                body.resize(total as usize, 0);
                file.read_exact_at(&mut body, pos)?;
                if batch::check_crc(&body, &h).is_err() {
                    break;
                }
            }
            if rebuilding {
                account(
                    &mut m,
                    h.base_offset,
                    h.last_offset(),
                    h.max_timestamp,
                    pos,
                    total,
                );
            } else {
                m.max_timestamp = m.max_timestamp.max(h.max_timestamp);
                m.size = pos + total;
                m.next_offset = h.last_offset() + 1;
            }
            expected = h.last_offset() + 1;
            pos += total;
        }
        m.size = pos;
        if pos < file_len {
            tracing::warn!(
                segment = %segment.log_path.display(),
                valid_bytes = pos,
                file_bytes = file_len,
                "torn or damaged tail removed from the log"
            );
            file.set_len(pos)?;
            file.sync_all()?;
        }
        if rebuilding {
            self.rewrite_indexes(segment, &m)?;
        }
        *segment.meta_mut() = m;
        Ok(())
    }

    /// The indexes of a closed segment as written, if they are consistent
    /// with a log of `file_len` bytes.
    #[allow(clippy::type_complexity)]
    fn load_indexes(
        &self,
        segment: &Segment,
        file_len: u64,
    ) -> Result<Option<(Vec<(i64, u64)>, Vec<(i64, i64, u64)>)>, StorageError> {
        let read_all = |path: &Path| -> Result<Option<Vec<u8>>, StorageError> {
            match std::fs::read(path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        let (Some(raw_index), Some(raw_time)) = (
            read_all(&segment.index_path)?,
            read_all(&segment.time_path)?,
        ) else {
            return Ok(None);
        };
        if raw_index.len() % INDEX_ENTRY != 0 || raw_time.len() % TIME_ENTRY != 0 {
            return Ok(None);
        }
        let mut index = Vec::with_capacity(raw_index.len() / INDEX_ENTRY);
        for e in raw_index.chunks_exact(INDEX_ENTRY) {
            let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]) as i64;
            let pos = u32::from_be_bytes([e[4], e[5], e[6], e[7]]) as u64;
            let offset = segment.base_offset + rel;
            if pos >= file_len || index.last().is_some_and(|(o, p)| *o >= offset || *p >= pos) {
                return Ok(None);
            }
            index.push((offset, pos));
        }
        let mut time_index = Vec::with_capacity(raw_time.len() / TIME_ENTRY);
        for e in raw_time.chunks_exact(TIME_ENTRY) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&e[0..8]);
            let ts = i64::from_be_bytes(ts);
            let offset =
                segment.base_offset + u32::from_be_bytes([e[8], e[9], e[10], e[11]]) as i64;
            let Ok(i) = index.binary_search_by_key(&offset, |(o, _)| *o) else {
                return Ok(None);
            };
            time_index.push((ts, offset, index[i].1));
        }
        Ok(Some((index, time_index)))
    }

    /// Write a segment's indexes anew from its metadata.
    fn rewrite_indexes(&self, segment: &Segment, m: &SegmentMeta) -> Result<(), StorageError> {
        let mut raw = Vec::with_capacity(m.index.len() * INDEX_ENTRY);
        for (offset, pos) in &m.index {
            raw.extend_from_slice(&((offset - segment.base_offset) as u32).to_be_bytes());
            raw.extend_from_slice(&(*pos as u32).to_be_bytes());
        }
        let index = segment.file(&self.env, FileKind::Index)?;
        index.set_len(0)?;
        index.write_all_at(&raw, 0)?;
        let mut raw = Vec::with_capacity(m.time_index.len() * TIME_ENTRY);
        for (ts, offset, _) in &m.time_index {
            raw.extend_from_slice(&ts.to_be_bytes());
            raw.extend_from_slice(&((offset - segment.base_offset) as u32).to_be_bytes());
        }
        let time = segment.file(&self.env, FileKind::TimeIndex)?;
        time.set_len(0)?;
        time.write_all_at(&raw, 0)?;
        Ok(())
    }

    /// Start a new active segment at `base_offset`.
    fn roll(&self, base_offset: i64) -> Result<Arc<Segment>, StorageError> {
        std::fs::create_dir_all(&self.dir)?;
        let segment = Arc::new(Segment::new(
            &self.dir,
            base_offset,
            empty_meta(base_offset),
        ));
        // Create the files now so that a restart finds the segment.
        segment.file(&self.env, FileKind::Log)?;
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(segment.clone());
        Ok(segment)
    }

    /// The segments from the one that may hold `offset` on.
    fn segments_from(&self, offset: i64) -> Vec<Arc<Segment>> {
        let list = self.segments.read().unwrap_or_else(|p| p.into_inner());
        let i = list.partition_point(|s| s.base_offset <= offset);
        list[i.saturating_sub(1)..].to_vec()
    }

    fn remove_segment(&self, segment: &Segment) {
        segment.remove_files(&self.env);
    }
}

impl LogStore for SegmentStore {
    fn first_offset(&self) -> Option<i64> {
        let list = self.segments.read().unwrap_or_else(|p| p.into_inner());
        list.first().map(|s| s.base_offset)
    }

    fn next_offset(&self) -> Option<i64> {
        // The active segment may be empty: its base is then the log end
        // (kept so that a restart after retention removed everything
        // continues from the same offset).
        let list = self.segments.read().unwrap_or_else(|p| p.into_inner());
        list.last().map(|s| s.meta().next_offset)
    }

    fn size_bytes(&self) -> u64 {
        self.list().iter().map(|s| s.meta().size).sum()
    }

    fn append(
        &self,
        summary: &BatchSummary,
        bytes: &[u8],
        roll: RollPolicy,
    ) -> Result<(), StorageError> {
        let len = bytes.len() as u64;
        self.env.admit(len)?;
        let active = self
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned();
        let active = match active {
            Some(s) => {
                let m = s.meta();
                let limit = roll.segment_bytes.clamp(1, MAX_SEGMENT_BYTES);
                let must_roll = m.size > 0
                    && (m.size + len > limit
                        || now_ms() - m.created_ms >= roll.segment_ms
                        || summary.last_offset - s.base_offset > u32::MAX as i64 / 2);
                let stale_empty = m.size == 0 && s.base_offset != summary.base_offset;
                drop(m);
                if stale_empty {
                    // An empty active segment named for another offset.
                    self.segments
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .pop();
                    self.remove_segment(&s);
                    self.roll(summary.base_offset)?
                } else if must_roll {
                    self.roll(summary.base_offset)?
                } else {
                    s
                }
            }
            None => self.roll(summary.base_offset)?,
        };
        let file = active.file(&self.env, FileKind::Log)?;
        let pos = active.meta().size;
        if let Err(e) = file.write_all_at(bytes, pos) {
            // Leave nothing of a partial write behind (best effort: the next
            // append writes over it anyway, and recovery would cut it).
            let _ = file.set_len(pos);
            return Err(e.into());
        }
        // The index entries this batch gets, if any, are written before the
        // metadata says the batch is there (an index may point at a batch
        // that never became visible; recovery drops such entries).
        let (index_at, time_entry) = {
            let m = active.meta();
            if pos > 0 && m.since_index >= INDEX_INTERVAL {
                let max_ts = m.max_timestamp.max(summary.max_timestamp);
                let time = m
                    .time_index
                    .last()
                    .is_none_or(|t| max_ts > t.0)
                    .then_some((max_ts, m.time_index.len()));
                (Some(m.index.len()), time)
            } else {
                (None, None)
            }
        };
        if let Some(slot) = index_at {
            let rel = ((summary.base_offset - active.base_offset) as u32).to_be_bytes();
            let mut raw = [0u8; INDEX_ENTRY];
            raw[..4].copy_from_slice(&rel);
            raw[4..].copy_from_slice(&(pos as u32).to_be_bytes());
            let index = active.file(&self.env, FileKind::Index)?;
            index.write_all_at(&raw, (slot * INDEX_ENTRY) as u64)?;
            if let Some((ts, slot)) = time_entry {
                let mut raw = [0u8; TIME_ENTRY];
                raw[..8].copy_from_slice(&ts.to_be_bytes());
                raw[8..].copy_from_slice(&rel);
                let time_file = active.file(&self.env, FileKind::TimeIndex)?;
                time_file.write_all_at(&raw, (slot * TIME_ENTRY) as u64)?;
            }
        }
        let mut m = active.meta_mut();
        account(
            &mut m,
            summary.base_offset,
            summary.last_offset,
            summary.max_timestamp,
            pos,
            len,
        );
        m.dirty = true;
        Ok(())
    }

    fn read(
        &self,
        from: i64,
        upper: i64,
        max_bytes: usize,
        allow_oversized_first: bool,
    ) -> Result<StoredRead, StorageError> {
        let mut out = StoredRead::default();
        let mut first = true;
        for segment in self.segments_from(from) {
            if segment.base_offset >= upper {
                break;
            }
            let (size, upper_pos) = {
                let m = segment.meta();
                // Batches from the first indexed one at or past `upper` on are out.
                let i = m.index.partition_point(|(o, _)| *o < upper);
                (m.size, m.index.get(i).map_or(m.size, |e| e.1))
            };
            let start = if first {
                segment.locate(&self.env, from)?
            } else {
                0
            };
            first = false;
            if start >= upper_pos {
                if upper_pos < size {
                    break;
                }
                continue;
            }
            let file = segment.file(&self.env, FileKind::Log)?;
            let budget = max_bytes.saturating_sub(out.bytes) as u64;
            let mut want = (upper_pos - start).min(budget);
            if out.bytes == 0 && allow_oversized_first {
                let mut header = [0u8; LOG_OVERHEAD];
                file.read_exact_at(&mut header, start)?;
                let first_len = LOG_OVERHEAD as u64
                    + i32::from_be_bytes([header[8], header[9], header[10], header[11]]).max(0)
                        as u64;
                want = want.max(first_len.min(upper_pos - start));
            }
            if want == 0 {
                break;
            }
            let mut buf = vec![0u8; want as usize];
            if let Err(e) = file.read_exact_at(&mut buf, start) {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    // Truncated under this read (a follower cut its log).
                    break;
                }
                return Err(e.into());
            }
            // Keep whole batches below `upper`.
            let mut cut = 0usize;
            let mut stopped = false;
            while cut + LOG_OVERHEAD <= buf.len() {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[cut..cut + 8]);
                let base = i64::from_be_bytes(b);
                let len =
                    i32::from_be_bytes([buf[cut + 8], buf[cut + 9], buf[cut + 10], buf[cut + 11]]);
                let total = LOG_OVERHEAD + len.max(0) as usize;
                if base >= upper || cut + total > buf.len() || len <= 0 {
                    stopped = true;
                    break;
                }
                cut += total;
            }
            if cut > 0 {
                buf.truncate(cut);
                out.bytes += cut;
                out.chunks.push(Bytes::from(buf));
            }
            if stopped || start + want < size || out.bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    fn batch_at(&self, offset: i64) -> Result<Option<(BatchSummary, Bytes)>, StorageError> {
        let Some(segment) = self.segments_from(offset).into_iter().next() else {
            return Ok(None);
        };
        let pos = segment.locate(&self.env, offset)?;
        let size = segment.meta().size;
        if pos + HEADER_LEN as u64 > size {
            return Ok(None);
        }
        let file = segment.file(&self.env, FileKind::Log)?;
        let mut header = [0u8; HEADER_LEN];
        file.read_exact_at(&mut header, pos)?;
        let h = batch::parse_header(&header).map_err(|e| StorageError::Corrupt {
            tree: segment.log_path.display().to_string(),
            what: e.to_string(),
        })?;
        if h.base_offset > offset || pos + h.total_len() as u64 > size {
            return Ok(None);
        }
        let mut bytes = vec![0u8; h.total_len()];
        file.read_exact_at(&mut bytes, pos)?;
        Ok(Some((summary_of(&h), Bytes::from(bytes))))
    }

    fn find_by_timestamp(
        &self,
        timestamp: i64,
        from: i64,
        upper: i64,
    ) -> Result<Option<BatchSummary>, StorageError> {
        for segment in self.segments_from(from) {
            if segment.base_offset >= upper {
                break;
            }
            let (size, max_ts, start) = {
                let m = segment.meta();
                // The last time-index entry below the timestamp: every batch
                // up to it is older.
                let i = m.time_index.partition_point(|t| t.0 < timestamp);
                let start = if i == 0 { 0 } else { m.time_index[i - 1].2 };
                (m.size, m.max_timestamp, start)
            };
            if max_ts < timestamp {
                continue;
            }
            let mut found = None;
            walk_headers(
                &*segment.file(&self.env, FileKind::Log)?,
                start,
                size,
                |_, h| {
                    if h.base_offset >= upper {
                        return false;
                    }
                    if h.last_offset() >= from && h.max_timestamp >= timestamp {
                        found = Some(summary_of(h));
                        return false;
                    }
                    true
                },
            )?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    fn max_timestamp_batch(&self, upper: i64) -> Result<Option<BatchSummary>, StorageError> {
        let list = self.list();
        // The best segment by its recorded maximum; the last one may hold
        // batches past `upper`, so its maximum is measured below `upper`.
        let mut best: Option<(i64, &Arc<Segment>)> = None;
        for (i, segment) in list.iter().enumerate() {
            if segment.base_offset >= upper {
                break;
            }
            let (size, recorded, next) = {
                let m = segment.meta();
                (m.size, m.max_timestamp, m.next_offset)
            };
            let max = if next <= upper && i + 1 < list.len() {
                recorded
            } else {
                let mut max = -1;
                walk_headers(
                    &*segment.file(&self.env, FileKind::Log)?,
                    0,
                    size,
                    |_, h| {
                        if h.base_offset >= upper {
                            return false;
                        }
                        max = max.max(h.max_timestamp);
                        true
                    },
                )?;
                max
            };
            if size > 0 && best.is_none_or(|(b, _)| max > b) {
                best = Some((max, segment));
            }
        }
        let Some((max, segment)) = best else {
            return Ok(None);
        };
        let mut found = None;
        let size = segment.meta().size;
        walk_headers(
            &*segment.file(&self.env, FileKind::Log)?,
            0,
            size,
            |_, h| {
                if h.base_offset >= upper {
                    return false;
                }
                if h.max_timestamp == max {
                    found = Some(summary_of(h));
                    return false;
                }
                true
            },
        )?;
        Ok(found)
    }

    fn segments(&self) -> Vec<SegmentInfo> {
        self.list().iter().map(|s| s.info()).collect()
    }

    fn delete_before(&self, offset: i64) -> Result<(), StorageError> {
        let doomed: Vec<Arc<Segment>> = {
            let mut list = self.segments.write().unwrap_or_else(|p| p.into_inner());
            let mut keep_from = list
                .iter()
                .position(|s| s.meta().next_offset > offset)
                .unwrap_or(list.len());
            if list.last().is_some_and(|s| s.meta().size == 0) {
                // An empty active segment stays: it names the log end.
                keep_from = keep_from.min(list.len() - 1);
            }
            list.drain(..keep_from).collect()
        };
        // Never leave the partition without a segment: an empty one named
        // for the log end keeps that offset across a restart.
        if let Some(last) = doomed.last() {
            let next = last.meta().next_offset;
            let empty = self
                .segments
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            if empty {
                self.roll(next)?;
            }
        }
        for segment in doomed {
            self.remove_segment(&segment);
        }
        Ok(())
    }

    fn truncate_from(&self, offset: i64) -> Result<Option<i64>, StorageError> {
        let doomed: Vec<Arc<Segment>> = {
            let mut list = self.segments.write().unwrap_or_else(|p| p.into_inner());
            let keep = list.partition_point(|s| s.base_offset < offset);
            list.drain(keep..).collect()
        };
        for segment in doomed {
            self.remove_segment(&segment);
        }
        if let Some(last) = self.list().last().cloned() {
            let cut = last.locate(&self.env, offset)?;
            let size = last.meta().size;
            if cut < size {
                let file = last.file(&self.env, FileKind::Log)?;
                file.set_len(cut)?;
                let mut m = last.meta().clone();
                m.index.retain(|e| e.1 < cut);
                m.time_index.retain(|e| e.2 < cut);
                // Measure what remains after the last time-index entry.
                let start = m.time_index.last().map_or(0, |t| t.2);
                let mut max_ts = m.time_index.last().map_or(-1, |t| t.0);
                let mut next = last.base_offset;
                let mut tail_since_index = 0;
                let last_indexed = m.index.last().map_or(0, |e| e.1);
                walk_headers(&file, start, cut, |pos, h| {
                    max_ts = max_ts.max(h.max_timestamp);
                    next = h.last_offset() + 1;
                    if pos >= last_indexed {
                        tail_since_index += h.total_len() as u64;
                    }
                    true
                })?;
                if start == 0 && cut == 0 {
                    next = last.base_offset;
                }
                m.size = cut;
                m.max_timestamp = max_ts;
                m.next_offset = next;
                m.since_index = tail_since_index;
                m.dirty = true;
                self.rewrite_indexes(&last, &m)?;
                *last.meta_mut() = m;
            }
            if last.meta().size == 0 {
                self.segments
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|s| !Arc::ptr_eq(s, &last));
                self.remove_segment(&last);
            }
        }
        Ok(self.next_offset())
    }

    fn replace_segment(&self, run: &SegmentInfo, bytes: Vec<u8>) -> Result<bool, StorageError> {
        let old = {
            let list = self.segments.read().unwrap_or_else(|p| p.into_inner());
            let Some(i) = list.iter().position(|s| s.base_offset == run.base_offset) else {
                return Ok(false);
            };
            if i + 1 == list.len() || list[i].info() != *run {
                return Ok(false);
            }
            list[i].clone()
        };
        // Write the new log beside the old one, make it durable, then put it
        // in place with a rename; the indexes are rebuilt from it.
        let cleaned = old.log_path.with_extension("log.cleaned");
        {
            let f = std::fs::File::create(&cleaned)?;
            f.write_all_at(&bytes, 0)?;
            f.sync_all()?;
        }
        let replacement = Segment::new(&self.dir, old.base_offset, empty_meta(old.base_offset));
        for path in [&old.index_path, &old.time_path] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.env.forget(old.id);
        std::fs::rename(&cleaned, &old.log_path)?;
        self.recover(&replacement, false)?;
        let mut list = self.segments.write().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = list.iter_mut().find(|s| Arc::ptr_eq(s, &old)) {
            *slot = Arc::new(replacement);
        }
        Ok(true)
    }

    fn clear(&self) -> Result<(), StorageError> {
        let doomed: Vec<Arc<Segment>> =
            std::mem::take(&mut *self.segments.write().unwrap_or_else(|p| p.into_inner()));
        for segment in doomed {
            self.remove_segment(&segment);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        for segment in self.list() {
            if !segment.meta().dirty {
                continue;
            }
            segment.meta_mut().dirty = false;
            let result = (|| -> Result<(), StorageError> {
                segment.file(&self.env, FileKind::Log)?.sync_data()?;
                if !segment.meta().index.is_empty() {
                    segment.file(&self.env, FileKind::Index)?.sync_data()?;
                    segment.file(&self.env, FileKind::TimeIndex)?.sync_data()?;
                }
                Ok(())
            })();
            if let Err(e) = result {
                segment.meta_mut().dirty = true;
                return Err(e);
            }
        }
        Ok(())
    }

    fn destroy(&self) -> Result<(), StorageError> {
        self.clear()?;
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn summary_of(h: &BatchHeader) -> BatchSummary {
    BatchSummary {
        base_offset: h.base_offset,
        last_offset: h.last_offset(),
        max_timestamp: h.max_timestamp,
        size: h.total_len() as u32,
        leader_epoch: h.partition_leader_epoch,
    }
}
