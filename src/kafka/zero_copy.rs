//! Encoding Fetch responses without copying record bytes.
//!
//! kafka-protocol encodes a message into any `ByteBufMut`, and writes a
//! `records` field with a single `put_slice`. `SegmentedBuf` recognises the
//! slices registered in a `RecordsArena` by address and length, and instead of
//! copying them keeps the stored batches (sled's own buffers, shared by
//! reference count) as separate segments of the frame, written with vectored I/O.
//!
//! A partition answered with several batches is represented in the message by
//! a placeholder of the right length cut from one shared, never-touched zeroed
//! region (so its address is unique); the placeholder is never sent: the arena
//! substitutes the batches for it. Every placeholder must be substituted;
//! `SegmentedBuf::finish` refuses the frame otherwise.

use std::sync::OnceLock;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Size of the placeholder region (virtual; the pages are never written).
const PLACEHOLDER_REGION: usize = 64 * 1024 * 1024;

fn placeholder_region() -> &'static Bytes {
    static REGION: OnceLock<Bytes> = OnceLock::new();
    REGION.get_or_init(|| Bytes::from(vec![0u8; PLACEHOLDER_REGION]))
}

/// The record sets of one response, by the address of what stands for them.
#[derive(Default)]
pub struct RecordsArena {
    /// (address, length, the batches to send instead).
    substitutes: Vec<(usize, usize, Vec<Bytes>)>,
    /// Next offset in the placeholder region (distinct placeholders, distinct addresses).
    next_placeholder: usize,
}

impl RecordsArena {
    /// The value to put in a partition's `records` field for these batches.
    pub fn records(&mut self, batches: Vec<Bytes>, total: usize) -> Bytes {
        match batches.len() {
            0 => Bytes::new(),
            1 => {
                let only = batches.into_iter().next().unwrap_or_default();
                self.substitutes
                    .push((only.as_ptr() as usize, only.len(), vec![only.clone()]));
                only
            }
            _ if self.next_placeholder + total <= PLACEHOLDER_REGION => {
                let start = self.next_placeholder;
                let placeholder = placeholder_region().slice(start..start + total);
                self.next_placeholder += 1;
                self.substitutes
                    .push((placeholder.as_ptr() as usize, total, batches));
                placeholder
            }
            _ => {
                // Larger than the placeholder region: join them (one copy).
                let mut joined = BytesMut::with_capacity(total);
                for b in &batches {
                    joined.extend_from_slice(b);
                }
                joined.freeze()
            }
        }
    }
}

/// A `ByteBufMut` that collects a frame as segments, passing registered
/// record sets through by reference.
pub struct SegmentedBuf {
    done: Vec<Bytes>,
    done_len: usize,
    current: BytesMut,
    arena: RecordsArena,
    substituted: usize,
}

/// Encoding went through a path the segmented buffer does not support, or a
/// placeholder was not substituted.
#[derive(Debug, thiserror::Error)]
#[error("segmented encoding failed: {0}")]
pub struct SegmentError(pub &'static str);

impl SegmentedBuf {
    pub fn new(arena: RecordsArena, capacity: usize) -> Self {
        SegmentedBuf {
            done: Vec::new(),
            done_len: 0,
            current: BytesMut::with_capacity(capacity),
            arena,
            substituted: 0,
        }
    }

    fn seal_current(&mut self) {
        if !self.current.is_empty() {
            let chunk = self.current.split().freeze();
            self.done_len += chunk.len();
            self.done.push(chunk);
        }
    }

    /// The frame's segments, once every registered record set was substituted.
    pub fn finish(mut self) -> Result<Vec<Bytes>, SegmentError> {
        if self.substituted != self.arena.substitutes.len() {
            return Err(SegmentError("a record set was not substituted"));
        }
        self.seal_current();
        Ok(self.done)
    }

    /// Total bytes written so far.
    pub fn len(&self) -> usize {
        self.done_len + self.current.len()
    }
}

// SAFETY: every method forwards to the inner `BytesMut`, whose contract holds.
unsafe impl BufMut for SegmentedBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut()`, which is
        // the inner buffer's chunk.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if !src.is_empty() {
            let address = src.as_ptr() as usize;
            if let Some(i) = self
                .arena
                .substitutes
                .iter()
                .position(|(a, l, _)| *a == address && *l == src.len())
            {
                let batches = std::mem::take(&mut self.arena.substitutes[i].2);
                self.seal_current();
                for b in batches {
                    self.done_len += b.len();
                    self.done.push(b);
                }
                self.substituted += 1;
                return;
            }
        }
        self.current.extend_from_slice(src);
    }
}

impl ByteBufMut for SegmentedBuf {
    fn offset(&self) -> usize {
        self.len()
    }

    fn seek(&mut self, offset: usize) {
        // Only the unsealed tail can be resized; Fetch responses never seek back
        // past a record set (pinned by the tests below).
        let local = offset.saturating_sub(self.done_len);
        self.current.resize(local, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.done_len);
        let end = r.end.saturating_sub(self.done_len);
        &mut self.current[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn response(records: Vec<Bytes>) -> FetchResponse {
        let mut resp = FetchResponse::default();
        let mut t = FetchableTopicResponse::default();
        t.topic = TopicName(StrBytes::from_static_str("t"));
        for (i, r) in records.into_iter().enumerate() {
            let mut p = PartitionData::default();
            p.partition_index = i as i32;
            p.high_watermark = 10;
            p.records = Some(r);
            t.partitions.push(p);
        }
        resp.responses.push(t);
        resp
    }

    #[test]
    fn segmented_encoding_equals_plain_encoding_in_every_version() {
        let batches = [
            Bytes::from_static(b"first-batch"),
            Bytes::from_static(b"second"),
            Bytes::from_static(b"third-batch-bytes"),
        ];
        let (_, _, newest) = crate::kafka::SUPPORTED_APIS
            .iter()
            .find(|(k, _, _)| *k == kafka_protocol::messages::ApiKey::Fetch)
            .copied()
            .expect("Fetch is served");
        for version in 4..=newest {
            let plain = {
                let joined: Vec<u8> = batches[..2].iter().flat_map(|b| b.to_vec()).collect();
                let resp = response(vec![Bytes::from(joined), batches[2].clone(), Bytes::new()]);
                let mut buf = BytesMut::new();
                resp.encode(&mut buf, version).expect("plain");
                buf.freeze()
            };
            let mut arena = RecordsArena::default();
            let two = arena.records(batches[..2].to_vec(), 17);
            let one = arena.records(vec![batches[2].clone()], batches[2].len());
            let none = arena.records(Vec::new(), 0);
            let resp = response(vec![two, one, none]);
            let mut buf = SegmentedBuf::new(arena, 256);
            resp.encode(&mut buf, version).expect("segmented");
            let segments = buf.finish().expect("all substituted");
            let joined: Vec<u8> = segments.iter().flat_map(|b| b.to_vec()).collect();
            assert_eq!(joined, plain.to_vec(), "version {version}");
            // The record bytes were passed by reference, not copied.
            assert!(segments.iter().any(|s| s.as_ptr() == batches[2].as_ptr()));
        }
    }

    #[test]
    fn unsubstituted_placeholder_is_refused() {
        let mut arena = RecordsArena::default();
        let _ = arena.records(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")], 2);
        let buf = SegmentedBuf::new(arena, 16);
        assert!(buf.finish().is_err());
    }
}
