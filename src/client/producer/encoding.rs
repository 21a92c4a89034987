//! Record and batch encoding for the producer: a record's framing estimate,
//! the record itself, and a batch's records as one v2 record batch stamped
//! with the producer id, epoch and sequence numbers.
//!
//! Must never: import the accumulator, the sender or the delivery side; it
//! turns records into bytes and nothing else.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::client::error::ClientError;

/// Size of a v2 record batch header, in bytes.
pub(super) const BATCH_HEADER_BYTES: usize = 61;
/// Upper bound of a record's framing overhead (length, attributes, deltas,
/// key/value lengths, header count), in bytes.
const RECORD_OVERHEAD_BYTES: usize = 21;

/// The producer id and epoch stamped on batches (-1/-1 without idempotence).
#[derive(Debug, Clone, Copy)]
pub(super) struct ProducerIdentity {
    pub(super) producer_id: i64,
    pub(super) producer_epoch: i16,
    /// Batches belong to transactions (the batch's transactional bit).
    pub(super) transactional: bool,
}

/// Estimated encoded size of a record, in bytes (what it takes of the
/// buffer memory and of a batch).
pub(super) fn record_size(
    key: Option<&Bytes>,
    value: Option<&Bytes>,
    headers: &IndexMap<StrBytes, Option<Bytes>>,
) -> usize {
    RECORD_OVERHEAD_BYTES
        + key.map_or(0, Bytes::len)
        + value.map_or(0, Bytes::len)
        + headers
            .iter()
            .map(|(k, v)| 10 + k.len() + v.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
}

/// A record created now; its offset, producer id and sequence are filled in
/// when it joins a batch and when the batch is encoded.
pub(super) fn new_record(
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: IndexMap<StrBytes, Option<Bytes>>,
) -> Record {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key,
        value,
        headers,
    }
}

/// Encode `records` as one v2 record batch of about `capacity` bytes,
/// stamped with `identity` and sequences from `base_sequence` (-1: none).
pub(super) fn encode_records(
    records: &mut [Record],
    identity: ProducerIdentity,
    base_sequence: i32,
    compression: Compression,
    capacity: usize,
) -> Result<Bytes, ClientError> {
    for (i, record) in records.iter_mut().enumerate() {
        record.producer_id = identity.producer_id;
        record.producer_epoch = identity.producer_epoch;
        record.transactional = identity.transactional;
        // The encoder derives the batch's base sequence from the first
        // record and keeps records together only while offset - sequence
        // is constant, so sequences advance with offsets even without
        // idempotence (the broker ignores them for producer id -1).
        record.sequence = base_sequence.wrapping_add(i as i32);
    }
    let mut buf = BytesMut::with_capacity(capacity);
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| ClientError::Codec {
        action: "encode",
        api: ApiKey::Produce,
        version: 2,
        reason: format!("record batch: {e}"),
    })?;
    Ok(buf.freeze())
}
