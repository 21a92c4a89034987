//! Record batch (magic v2) framing: find batch boundaries, validate, rewrite
//! the broker-owned header fields. Works on bytes; never decodes records on the
//! produce path except to count uncompressed ones.
//!
//! Layout of a v2 batch header (Kafka's DefaultRecordBatch):
//! base offset i64 | batch length i32 | partition leader epoch i32 | magic i8 |
//! crc u32 (CRC-32C of everything after it) | attributes i16 | last offset delta i32 |
//! base timestamp i64 | max timestamp i64 | producer id i64 | producer epoch i16 |
//! base sequence i32 | record count i32 | records...

use bytes::{Bytes, BytesMut};

/// Size of the fixed v2 batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before the `batch length` field ends (base offset + length).
pub const LOG_OVERHEAD: usize = 12;

const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why a batch was refused; each maps to the Kafka error a client expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// CORRUPT_MESSAGE: framing or checksum is wrong.
    #[error("corrupt batch: {0}")]
    Corrupt(String),
    /// UNSUPPORTED_FOR_MESSAGE_FORMAT: message format v0/v1.
    #[error("unsupported message format (magic {0})")]
    UnsupportedMagic(i8),
    /// INVALID_RECORD: the batch is well framed but its content breaks a rule.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// MESSAGE_TOO_LARGE: larger than the topic's max.message.bytes.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
}

/// The header fields the broker reads from a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Total size of the batch on the wire (header included).
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }
    /// The compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    pub fn last_offset(&self) -> i64 {
        // Saturating: the header may come from a peer's fetch response.
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }
    /// The last sequence number of an idempotent batch (wrapping as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Records in the v2 batches of `b` (a produce's or a fetch's record set),
/// from their headers; a batch that does not parse ends the count.
pub fn records_in_batches(mut b: &[u8]) -> u64 {
    let mut records = 0;
    while let Ok(header) = parse_header(b) {
        records += header.record_count.max(0) as u64;
        let Some(rest) = b.get(header.total_len()..) else {
            break;
        };
        b = rest;
    }
    records
}

/// Read the header of a batch. `b` must hold at least `HEADER_LEN` bytes.
pub fn parse_header(b: &[u8]) -> Result<BatchHeader, BatchError> {
    if b.len() < MAGIC_AT + 1 {
        return Err(BatchError::Corrupt(format!(
            "{} bytes is too short for a batch",
            b.len()
        )));
    }
    let magic = b[MAGIC_AT] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    if b.len() < HEADER_LEN {
        return Err(BatchError::Corrupt(format!(
            "{} bytes is too short for a v2 batch header",
            b.len()
        )));
    }
    Ok(BatchHeader {
        base_offset: i64_at(b, 0),
        batch_length: i32_at(b, 8),
        partition_leader_epoch: i32_at(b, PARTITION_LEADER_EPOCH_AT),
        magic,
        crc: u32::from_be_bytes([b[CRC_AT], b[CRC_AT + 1], b[CRC_AT + 2], b[CRC_AT + 3]]),
        attributes: i16_at(b, ATTRIBUTES_AT),
        last_offset_delta: i32_at(b, LAST_OFFSET_DELTA_AT),
        base_timestamp: i64_at(b, BASE_TIMESTAMP_AT),
        max_timestamp: i64_at(b, MAX_TIMESTAMP_AT),
        producer_id: i64_at(b, PRODUCER_ID_AT),
        producer_epoch: i16_at(b, PRODUCER_EPOCH_AT),
        base_sequence: i32_at(b, BASE_SEQUENCE_AT),
        record_count: i32_at(b, RECORD_COUNT_AT),
    })
}

/// A validated batch from a produce request, ready to be given offsets.
#[derive(Debug, Clone)]
pub struct ProducedBatch {
    pub header: BatchHeader,
    pub bytes: BytesMut,
}

/// Split the `records` field of a produce request into batches and validate each:
/// magic 2, lengths, CRC-32C, record count, and size against `max_message_bytes`.
pub fn split_and_validate(
    records: &[u8],
    max_message_bytes: usize,
) -> Result<Vec<ProducedBatch>, BatchError> {
    let mut out = Vec::with_capacity(1);
    let mut rest = records;
    if rest.is_empty() {
        return Err(BatchError::InvalidRecord("empty record set".into()));
    }
    while !rest.is_empty() {
        if rest.len() < LOG_OVERHEAD {
            return Err(BatchError::Corrupt("truncated batch length".into()));
        }
        let batch_length = i32_at(rest, 8);
        if rest.len() > MAGIC_AT && rest[MAGIC_AT] as i8 != 2 {
            return Err(BatchError::UnsupportedMagic(rest[MAGIC_AT] as i8));
        }
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Corrupt(format!(
                "batch length {batch_length} is shorter than a header"
            )));
        }
        let total = LOG_OVERHEAD + batch_length as usize;
        if total > rest.len() {
            return Err(BatchError::Corrupt(format!(
                "batch length {total} exceeds the {} bytes sent",
                rest.len()
            )));
        }
        if total > max_message_bytes {
            return Err(BatchError::TooLarge {
                size: total,
                max: max_message_bytes,
            });
        }
        let bytes = &rest[..total];
        let header = parse_header(bytes)?;
        check_crc(bytes, &header)?;
        if header.record_count <= 0 {
            return Err(BatchError::InvalidRecord(format!(
                "record count {} must be positive",
                header.record_count
            )));
        }
        if header.last_offset_delta != header.record_count - 1 {
            return Err(BatchError::InvalidRecord(format!(
                "last offset delta {} does not match record count {}",
                header.last_offset_delta, header.record_count
            )));
        }
        if header.is_control() {
            return Err(BatchError::InvalidRecord(
                "clients may not produce control batches".into(),
            ));
        }
        if header.compression() == 0 {
            let counted = count_records(&bytes[HEADER_LEN..])?;
            if counted != header.record_count as usize {
                return Err(BatchError::InvalidRecord(format!(
                    "header says {} records, body holds {counted}",
                    header.record_count
                )));
            }
        } else if header.compression() > 4 {
            return Err(BatchError::InvalidRecord(format!(
                "unknown compression codec {}",
                header.compression()
            )));
        } else if header.compression() == 2 {
            check_snappy_claims(&bytes[HEADER_LEN..])?;
        }
        out.push(ProducedBatch {
            header,
            bytes: BytesMut::from(bytes),
        });
        rest = &rest[total..];
    }
    Ok(out)
}

/// Kafka's snappy framing (xerial): a 16-byte magic, then blocks each
/// prefixed by its compressed length.
const SNAPPY_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// The most a snappy element can expand: a 3-byte copy yields at most 64
/// bytes, so no honest block claims more than 22 times its size (plus a
/// literal's slack); the bound used is 32 times plus 64 bytes.
fn snappy_bound(compressed: usize) -> usize {
    compressed.saturating_mul(32).saturating_add(64)
}

/// Refuse a snappy payload whose blocks claim more decompressed bytes than
/// their size can produce. A decoder allocates the claimed length before
/// decompressing, so a few bytes claiming 4 GiB would otherwise be stored
/// and exhaust the memory of whoever reads them back (the log cleaner, a
/// consumer). The block structure (lengths within the payload) is checked
/// on the way; the compressed contents themselves are not.
fn check_snappy_claims(payload: &[u8]) -> Result<(), BatchError> {
    let claim = |block: &[u8]| -> Result<(), BatchError> {
        let claimed = snap::raw::decompress_len(block)
            .map_err(|e| BatchError::Corrupt(format!("snappy block header: {e}")))?;
        if claimed > snappy_bound(block.len()) {
            return Err(BatchError::Corrupt(format!(
                "a snappy block of {} bytes claims {claimed} bytes",
                block.len()
            )));
        }
        Ok(())
    };
    let Some(mut rest) = payload.strip_prefix(SNAPPY_MAGIC.as_slice()) else {
        return claim(payload);
    };
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(BatchError::Corrupt("truncated snappy block length".into()));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(BatchError::Corrupt(format!(
                "snappy block of {len} bytes exceeds the {} bytes left",
                tail.len()
            )));
        }
        claim(&tail[..len])?;
        rest = &tail[len..];
    }
    Ok(())
}

/// Check a whole batch's CRC-32C (over everything after the CRC field)
/// against its header.
pub fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let computed = crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or_default());
    if computed != header.crc {
        return Err(BatchError::Corrupt(format!(
            "CRC-32C mismatch: batch says {:#010x}, content gives {computed:#010x}",
            header.crc
        )));
    }
    Ok(())
}

/// Read a zig-zag varint; returns (value, bytes used).
fn read_varint(b: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in b.iter().enumerate().take(10) {
        value |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, i + 1));
        }
    }
    None
}

/// Count the records of an uncompressed batch body, reading each as a
/// consumer will: every field within the record's length and the length
/// used up, the offset delta its position, header keys UTF-8. A record that
/// fails this would make every reader of the partition fail on the batch.
fn count_records(mut body: &[u8]) -> Result<usize, BatchError> {
    let mut n = 0;
    while !body.is_empty() {
        let (len, used) =
            read_varint(body).ok_or_else(|| BatchError::Corrupt("bad record length".into()))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| used.checked_add(len))
            .filter(|end| *end <= body.len())
            .ok_or_else(|| {
                BatchError::Corrupt(format!("record {n} length {len} runs past the batch"))
            })?;
        check_record(&body[used..end], n)
            .map_err(|what| BatchError::Corrupt(format!("record {n}: {what}")))?;
        body = &body[end..];
        n += 1;
    }
    Ok(n)
}

/// The fields of one record (Kafka's DefaultRecord): attributes, timestamp
/// delta, offset delta, key, value, headers; they must fill it exactly.
fn check_record(mut record: &[u8], index: usize) -> Result<(), &'static str> {
    fn varint(b: &mut &[u8]) -> Result<i64, &'static str> {
        let (v, used) = read_varint(b).ok_or("bad varint")?;
        *b = &b[used..];
        Ok(v)
    }
    /// A length-prefixed field (-1 is null): its bytes.
    fn field<'a>(b: &mut &'a [u8], nullable: bool) -> Result<Option<&'a [u8]>, &'static str> {
        let len = varint(b)?;
        if len == -1 && nullable {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| "negative length")?;
        if len > b.len() {
            return Err("a field runs past the record");
        }
        let (bytes, rest) = b.split_at(len);
        *b = rest;
        Ok(Some(bytes))
    }
    let (_attributes, rest) = record.split_first().ok_or("empty record")?;
    record = rest;
    varint(&mut record)?; // timestamp delta
    if varint(&mut record)? != index as i64 {
        return Err("offset delta is not the record's position");
    }
    field(&mut record, true)?; // key
    field(&mut record, true)?; // value
    let headers = varint(&mut record)?;
    if headers < 0 {
        return Err("negative header count");
    }
    for _ in 0..headers {
        let key = field(&mut record, false)?.unwrap_or_default();
        std::str::from_utf8(key).map_err(|_| "header key is not UTF-8")?;
        field(&mut record, true)?;
    }
    if !record.is_empty() {
        return Err("bytes left after the record's fields");
    }
    Ok(())
}

/// Give a batch its offsets and leader epoch; with `log_append_time` set, stamp
/// it as LogAppendTime and recompute the CRC (the only case that touches it).
pub fn assign(
    batch: &mut BytesMut,
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(now) = log_append_time {
        let attributes = i16_at(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
        batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Iterate the batches of a stored or fetched record set (trusted framing).
pub fn iter_batches(mut set: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::from_fn(move || {
        if set.len() < LOG_OVERHEAD {
            return None;
        }
        let total = LOG_OVERHEAD + i32_at(&set, 8).max(0) as usize;
        if total > set.len() {
            return None;
        }
        Some(set.split_to(total))
    })
}

/// One record of a plain (non-idempotent, non-transactional) batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp: i64,
}

/// Encode records as one v2 batch with offsets from 0 and no producer id,
/// compressed with `compression` (the broker assigns the real offsets).
pub fn encode_plain(
    records: &[PlainRecord],
    compression: kafka_protocol::records::Compression,
) -> Result<BytesMut, BatchError> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder puts records in one batch while offset - sequence is
            // constant; this also makes the base sequence -1 (not idempotent).
            sequence: i as i32 - 1,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| BatchError::InvalidRecord(format!("cannot encode batch: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::Compression;

    pub(crate) fn encode(n: usize, compression: Compression) -> BytesMut {
        let records: Vec<PlainRecord> = (0..n)
            .map(|i| PlainRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("value {i}"))),
                timestamp: 1_700_000_000_000 + i as i64,
            })
            .collect();
        encode_plain(&records, compression).expect("encode")
    }

    #[test]
    fn valid_batch_is_accepted_with_its_record_count() {
        let b = encode(5, Compression::None);
        let batches = split_and_validate(&b, 1 << 20).expect("valid");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].header.record_count, 5);
        assert_eq!(batches[0].header.last_offset_delta, 4);
    }

    #[test]
    fn flipped_byte_is_corrupt_message() {
        let mut b = encode(3, Compression::None);
        let last = b.len() - 2;
        b[last] ^= 0xff;
        assert!(matches!(
            split_and_validate(&b, 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn old_magic_is_unsupported_format() {
        let mut b = encode(1, Compression::None);
        b[MAGIC_AT] = 1;
        assert_eq!(
            split_and_validate(&b, 1 << 20).unwrap_err(),
            BatchError::UnsupportedMagic(1)
        );
    }

    #[test]
    fn oversized_batch_is_message_too_large() {
        let b = encode(50, Compression::None);
        assert!(matches!(
            split_and_validate(&b, 100),
            Err(BatchError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_batch_is_corrupt() {
        let b = encode(3, Compression::None);
        assert!(matches!(
            split_and_validate(&b[..b.len() - 1], 1 << 20),
            Err(BatchError::Corrupt(_))
        ));
    }

    /// One uncompressed batch of a single record with the given body (its
    /// fields after the length), CRC and lengths made right.
    fn batch_of_record(record: &[u8]) -> BytesMut {
        let mut b = encode(1, Compression::None);
        b.truncate(HEADER_LEN);
        b.extend_from_slice(&[(record.len() as u8) << 1]);
        b.extend_from_slice(record);
        let length = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn a_record_readers_cannot_decode_is_refused() {
        use kafka_protocol::records::RecordBatchDecoder;
        // attributes, timestamp delta, offset delta, key (null), value (null), headers
        let good = [0, 0, 0, 1, 1, 2, 2, b'h', 0];
        let valid = batch_of_record(&good);
        split_and_validate(&valid, 1 << 20).expect("a well-formed record");
        assert!(RecordBatchDecoder::decode(&mut Bytes::from(valid.to_vec())).is_ok());
        // Found by the record_batches fuzz target: a header key that is not
        // UTF-8 was accepted, and no reader of the partition could decode it.
        let bad: [&[u8]; 4] = [
            &[0, 0, 0, 1, 1, 2, 2, 0xe9, 0], // header key not UTF-8
            &[0, 0, 2, 1, 1, 0],             // offset delta 1 for record 0
            &[0, 0, 0, 1, 1, 0, 7],          // a byte after the fields
            &[0, 0, 0, 40, 1, 0],            // a key longer than the record
        ];
        for record in bad {
            let batch = batch_of_record(record);
            assert!(
                matches!(
                    split_and_validate(&batch, 1 << 20),
                    Err(BatchError::Corrupt(_))
                ),
                "{record:?} accepted"
            );
        }
    }

    /// A snappy batch of one record whose compressed payload is `payload`,
    /// CRC and lengths made right.
    fn snappy_batch(payload: &[u8]) -> BytesMut {
        let mut b = encode(1, Compression::Snappy);
        b.truncate(HEADER_LEN);
        b.extend_from_slice(payload);
        let length = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn a_snappy_block_claiming_more_than_it_can_hold_is_refused() {
        // Real snappy batches (Kafka's framing, many blocks) pass.
        for n in [1, 2_000] {
            split_and_validate(&encode(n, Compression::Snappy), 1 << 24).expect("snappy batch");
        }
        // Found by the record_batches fuzz target: a raw snappy payload whose
        // length varint claims 4 GiB made every reader allocate 4 GiB.
        let four_gib = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let mut framed = SNAPPY_MAGIC.to_vec();
        framed.extend_from_slice(&(four_gib.len() as u32).to_be_bytes());
        framed.extend_from_slice(&four_gib);
        let mut overlong = SNAPPY_MAGIC.to_vec();
        overlong.extend_from_slice(&100u32.to_be_bytes());
        overlong.extend_from_slice(&[4, 0]);
        for payload in [&four_gib[..], &framed, &overlong] {
            assert!(
                matches!(
                    split_and_validate(&snappy_batch(payload), 1 << 20),
                    Err(BatchError::Corrupt(_))
                ),
                "{payload:?} accepted"
            );
        }
    }

    #[test]
    fn assign_sets_offset_and_keeps_crc_valid_for_log_append_time() {
        let b = encode(2, Compression::Gzip);
        let mut batch = split_and_validate(&b, 1 << 20)
            .expect("valid")
            .remove(0)
            .bytes;
        assign(&mut batch, 42, 3, Some(1234));
        let again = split_and_validate(&batch, 1 << 20).expect("still valid");
        assert_eq!(again[0].header.base_offset, 42);
        assert_eq!(again[0].header.partition_leader_epoch, 3);
        assert_eq!(again[0].header.max_timestamp, 1234);
    }
}
