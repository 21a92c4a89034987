//! The records of `__transaction_state`, in Kafka's format so the topic reads
//! the same as a Kafka broker's:
//!
//! - key version 0: `transactional_id`;
//! - value version 0: `producer_id, producer_epoch, transaction_timeout_ms,
//!   state, partitions [topic, [partition]], last_update_timestamp_ms,
//!   start_timestamp_ms`.
//!
//! The latest value of a key wins; a record without a value (a tombstone)
//! forgets the transactional id. This file only converts bytes.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnState};
use crate::log::keyed::KeyValue;

/// The internal topic holding the coordinator's transactions.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// Why a record of `__transaction_state` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    #[error("unknown {what} version {version}")]
    UnknownVersion { what: &'static str, version: i16 },
    #[error("invalid UTF-8 in {0}")]
    Utf8(&'static str),
    #[error("unknown transaction state {0}")]
    UnknownState(i8),
}

/// The partition of `__transaction_state` that owns `transactional_id`
/// (Kafka: `Utils.abs(transactionalId.hashCode) % partitions`).
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    let hash = transactional_id
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

pub fn decode_key(bytes: &[u8]) -> Result<String, RecordError> {
    let mut r = Reader(bytes);
    match r.i16("key version")? {
        0 => r.string("transactional id"),
        version => Err(RecordError::UnknownVersion {
            what: "key",
            version,
        }),
    }
}

/// The record that stores `m`.
pub fn record(m: &TxnMetadata) -> KeyValue {
    (encode_key(&m.transactional_id), Some(encode_value(m)))
}

pub fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(m.producer_id);
    buf.put_i16(m.producer_epoch);
    buf.put_i32(m.timeout_ms);
    buf.put_i8(m.state.code());
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &m.partitions {
        match topics.last_mut() {
            Some((t, ps)) if t == topic => ps.push(*partition),
            _ => topics.push((topic, vec![*partition])),
        }
    }
    buf.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_string(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i64(m.last_update_ms);
    buf.put_i64(m.start_ms);
    buf.freeze()
}

pub fn decode_value(transactional_id: &str, bytes: &[u8]) -> Result<TxnMetadata, RecordError> {
    let mut r = Reader(bytes);
    let version = r.i16("value version")?;
    if version != 0 {
        return Err(RecordError::UnknownVersion {
            what: "value",
            version,
        });
    }
    let producer_id = r.i64("producer id")?;
    let producer_epoch = r.i16("producer epoch")?;
    let timeout_ms = r.i32("timeout")?;
    let code = r.i8("state")?;
    let state = TxnState::from_code(code).ok_or(RecordError::UnknownState(code))?;
    let mut partitions = BTreeSet::new();
    for _ in 0..r.count("topics")? {
        let topic = r.string("topic")?;
        for _ in 0..r.count("partitions")? {
            partitions.insert((topic.clone(), r.i32("partition")?));
        }
    }
    let last_update_ms = r.i64("last update")?;
    let start_ms = r.i64("start")?;
    Ok(TxnMetadata {
        transactional_id: transactional_id.to_owned(),
        producer_id,
        producer_epoch,
        last_producer_epoch: -1,
        previous_producer_id: -1,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
    })
}

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

/// A bounds-checked reader of big-endian fields.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn i8(&mut self, what: &'static str) -> Result<i8, RecordError> {
        Ok(self.take(1, what)?[0] as i8)
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, RecordError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, RecordError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// An array length; never more than the bytes left could hold.
    fn count(&mut self, what: &'static str) -> Result<usize, RecordError> {
        let n = self.i32(what)?.max(0) as usize;
        if n > self.0.len() {
            return Err(RecordError::Truncated(what));
        }
        Ok(n)
    }

    fn string(&mut self, what: &'static str) -> Result<String, RecordError> {
        let len = self.i16(what)?.max(0) as usize;
        let b = self.take(len, what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| RecordError::Utf8(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trips_with_partitions_grouped_by_topic() {
        let m = TxnMetadata {
            transactional_id: "t1".into(),
            producer_id: 4711,
            producer_epoch: 3,
            last_producer_epoch: -1,
            previous_producer_id: -1,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [
                ("a".to_owned(), 0),
                ("a".to_owned(), 2),
                ("b".to_owned(), 1),
            ]
            .into_iter()
            .collect(),
            start_ms: 10,
            last_update_ms: 20,
        };
        let (key, value) = record(&m);
        assert_eq!(decode_key(&key).expect("key"), "t1");
        let back = decode_value("t1", &value.expect("value")).expect("value decodes");
        assert_eq!(back, m);
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let m = TxnMetadata::new("t", 1, 100, 0);
        let value = encode_value(&m);
        for cut in 0..value.len() {
            assert!(decode_value("t", &value[..cut]).is_err());
        }
    }

    #[test]
    fn partition_is_kafkas() {
        // Kafka places "transactional-id" at abs(hashCode) % 50.
        let hash = "transactional-id"
            .encode_utf16()
            .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32));
        assert_eq!(partition_for("transactional-id", 50), hash.abs() % 50);
    }
}
