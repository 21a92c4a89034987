//! The records a consumer group (KIP-848) writes to `__consumer_offsets`,
//! with Kafka's record types as key versions: 3 group metadata (the group
//! epoch), 5 member metadata (subscription, client, instance id), 6 target
//! assignment metadata (the assignment epoch), 7 a member's target
//! assignment, 8 a member's current assignment (epochs, state, assigned and
//! pending-revocation partitions). Keys use the classic (non-flexible)
//! string encoding; values are flexible (compact strings and arrays, empty
//! tagged fields), as Kafka writes them. A tombstone deletes its key.
//!
//! Owns: bytes to records and back. Must never: touch the log or a group.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::assignor::Assignment;
use super::reconcile::{MemberAssignment, MemberState};
use crate::group::records::RecordError;

const KEY_METADATA: i16 = 3;
const KEY_MEMBER: i16 = 5;
const KEY_TARGET_METADATA: i16 = 6;
const KEY_TARGET_MEMBER: i16 = 7;
const KEY_CURRENT_ASSIGNMENT: i16 = 8;
const VALUE_VERSION: i16 = 0;

/// The key of a consumer-group record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerKey {
    Metadata { group: String },
    Member { group: String, member: String },
    TargetMetadata { group: String },
    TargetMember { group: String, member: String },
    CurrentAssignment { group: String, member: String },
}

impl ConsumerKey {
    pub fn group(&self) -> &str {
        match self {
            ConsumerKey::Metadata { group }
            | ConsumerKey::TargetMetadata { group }
            | ConsumerKey::Member { group, .. }
            | ConsumerKey::TargetMember { group, .. }
            | ConsumerKey::CurrentAssignment { group, .. } => group,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        let (kind, group, member) = match self {
            ConsumerKey::Metadata { group } => (KEY_METADATA, group, None),
            ConsumerKey::TargetMetadata { group } => (KEY_TARGET_METADATA, group, None),
            ConsumerKey::Member { group, member } => (KEY_MEMBER, group, Some(member)),
            ConsumerKey::TargetMember { group, member } => (KEY_TARGET_MEMBER, group, Some(member)),
            ConsumerKey::CurrentAssignment { group, member } => {
                (KEY_CURRENT_ASSIGNMENT, group, Some(member))
            }
        };
        buf.put_i16(kind);
        put_classic_string(&mut buf, group);
        if let Some(m) = member {
            put_classic_string(&mut buf, m);
        }
        buf.freeze()
    }

    /// `None` when the key is not a consumer-group record (another type).
    pub fn decode(bytes: &[u8]) -> Option<Result<Self, RecordError>> {
        let kind = i16::from_be_bytes(bytes.get(..2)?.try_into().ok()?);
        if !matches!(
            kind,
            KEY_METADATA
                | KEY_MEMBER
                | KEY_TARGET_METADATA
                | KEY_TARGET_MEMBER
                | KEY_CURRENT_ASSIGNMENT
        ) {
            return None;
        }
        let mut r = Reader(&bytes[2..]);
        Some((|| {
            let group = r.classic_string("group")?;
            Ok(match kind {
                KEY_METADATA => ConsumerKey::Metadata { group },
                KEY_TARGET_METADATA => ConsumerKey::TargetMetadata { group },
                KEY_MEMBER => ConsumerKey::Member {
                    group,
                    member: r.classic_string("member")?,
                },
                KEY_TARGET_MEMBER => ConsumerKey::TargetMember {
                    group,
                    member: r.classic_string("member")?,
                },
                _ => ConsumerKey::CurrentAssignment {
                    group,
                    member: r.classic_string("member")?,
                },
            })
        })())
    }
}

/// A member's subscription and client (value of type 5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// Set for a member of the classic protocol in a consumer group (online
    /// migration): Kafka's `ClassicMemberMetadata`, tagged field 0.
    pub classic: Option<ClassicMemberMetadata>,
}

/// What a classic member joined with: its session timeout and protocols
/// (name, `ConsumerProtocolSubscription` bytes), most preferred first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClassicMemberMetadata {
    pub session_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
}

/// The tag of `ClassicMemberMetadata` in a member metadata value.
const TAG_CLASSIC_MEMBER: u32 = 0;

impl ClassicMemberMetadata {
    fn encode(&self) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_i32(self.session_timeout_ms);
        put_uvarint(&mut buf, self.protocols.len() as u32 + 1);
        for (name, metadata) in &self.protocols {
            put_compact(&mut buf, name);
            put_uvarint(&mut buf, metadata.len() as u32 + 1);
            buf.put_slice(metadata);
            buf.put_u8(0);
        }
        buf.put_u8(0);
        buf
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, RecordError> {
        let session_timeout_ms = r.i32("session timeout")?;
        let n = r.array_len("protocols")?;
        let mut protocols = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let name = r.compact("protocol name")?;
            let len = r.compact_len("protocol metadata")?.unwrap_or(0);
            let metadata = Bytes::copy_from_slice(r.take(len, "protocol metadata")?);
            r.tagged_fields()?;
            protocols.push((name, metadata));
        }
        r.tagged_fields()?;
        Ok(ClassicMemberMetadata {
            session_timeout_ms,
            protocols,
        })
    }
}

/// Encode an epoch value (types 3 and 6).
pub fn encode_epoch(epoch: i32) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i32(epoch);
    buf.put_u8(0);
    buf.freeze()
}

pub fn decode_epoch(bytes: &[u8]) -> Result<i32, RecordError> {
    let mut r = Reader(bytes);
    r.version()?;
    r.i32("epoch")
}

impl MemberMetadata {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(VALUE_VERSION);
        put_compact_nullable(&mut buf, self.instance_id.as_deref());
        put_compact_nullable(&mut buf, self.rack_id.as_deref());
        put_compact(&mut buf, &self.client_id);
        put_compact(&mut buf, &self.client_host);
        put_uvarint(&mut buf, self.subscribed_topic_names.len() as u32 + 1);
        for t in &self.subscribed_topic_names {
            put_compact(&mut buf, t);
        }
        put_compact_nullable(&mut buf, self.subscribed_topic_regex.as_deref());
        put_compact_nullable(&mut buf, self.server_assignor.as_deref());
        buf.put_i32(self.rebalance_timeout_ms);
        match &self.classic {
            None => buf.put_u8(0),
            Some(classic) => {
                let field = classic.encode();
                put_uvarint(&mut buf, 1);
                put_uvarint(&mut buf, TAG_CLASSIC_MEMBER);
                put_uvarint(&mut buf, field.len() as u32);
                buf.put_slice(&field);
            }
        }
        buf.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        r.version()?;
        let instance_id = r.compact_nullable("instance id")?;
        let rack_id = r.compact_nullable("rack id")?;
        let client_id = r.compact("client id")?;
        let client_host = r.compact("client host")?;
        let n = r.array_len("topics")?;
        let mut subscribed_topic_names = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            subscribed_topic_names.push(r.compact("topic")?);
        }
        let subscribed_topic_regex = r.compact_nullable("regex")?;
        let server_assignor = r.compact_nullable("assignor")?;
        let rebalance_timeout_ms = r.i32("rebalance timeout")?;
        // Tagged fields (absent in values written before they existed).
        let mut classic = None;
        if !r.0.is_empty() {
            for _ in 0..r.uvarint("tagged fields")? {
                let tag = r.uvarint("tag")?;
                let size = r.uvarint("tag size")? as usize;
                let mut field = Reader(r.take(size, "tagged field")?);
                if tag == TAG_CLASSIC_MEMBER {
                    classic = Some(ClassicMemberMetadata::decode(&mut field)?);
                }
            }
        }
        Ok(MemberMetadata {
            instance_id,
            rack_id,
            client_id,
            client_host,
            subscribed_topic_names,
            subscribed_topic_regex,
            server_assignor,
            rebalance_timeout_ms,
            classic,
        })
    }
}

/// Encode a member's target assignment (type 7).
pub fn encode_target(assignment: &Assignment) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    put_assignment(&mut buf, assignment);
    buf.put_u8(0);
    buf.freeze()
}

pub fn decode_target(bytes: &[u8]) -> Result<Assignment, RecordError> {
    let mut r = Reader(bytes);
    r.version()?;
    r.assignment()
}

/// Encode a member's current assignment (type 8).
pub fn encode_current(a: &MemberAssignment) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i32(a.member_epoch);
    buf.put_i32(a.previous_member_epoch);
    buf.put_i8(a.state.code());
    put_assignment(&mut buf, &a.assigned);
    put_assignment(&mut buf, &a.pending_revocation);
    buf.put_u8(0);
    buf.freeze()
}

pub fn decode_current(bytes: &[u8]) -> Result<MemberAssignment, RecordError> {
    let mut r = Reader(bytes);
    r.version()?;
    Ok(MemberAssignment {
        member_epoch: r.i32("member epoch")?,
        previous_member_epoch: r.i32("previous member epoch")?,
        state: MemberState::from_code(r.i8("state")?),
        assigned: r.assignment()?,
        pending_revocation: r.assignment()?,
    })
}

fn put_assignment(buf: &mut BytesMut, a: &Assignment) {
    put_uvarint(buf, a.len() as u32 + 1);
    for (topic, partitions) in a {
        buf.put_slice(topic.as_bytes());
        put_uvarint(buf, partitions.len() as u32 + 1);
        for p in partitions {
            buf.put_i32(*p);
        }
        buf.put_u8(0);
    }
}

fn put_classic_string(buf: &mut BytesMut, s: &str) {
    let b = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    buf.put_i16(b.len() as i16);
    buf.put_slice(b);
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_compact(buf: &mut BytesMut, s: &str) {
    put_uvarint(buf, s.len() as u32 + 1);
    buf.put_slice(s.as_bytes());
}

fn put_compact_nullable(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_compact(buf, s),
        None => buf.put_u8(0),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn version(&mut self) -> Result<(), RecordError> {
        let b = self.take(2, "value version")?;
        match i16::from_be_bytes([b[0], b[1]]) {
            VALUE_VERSION => Ok(()),
            version => Err(RecordError::UnknownVersion {
                what: "consumer group value",
                version,
            }),
        }
    }

    fn i8(&mut self, what: &'static str) -> Result<i8, RecordError> {
        Ok(self.take(1, what)?[0] as i8)
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, RecordError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uvarint(&mut self, what: &'static str) -> Result<u32, RecordError> {
        let mut v: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = self.take(1, what)?[0];
            v |= u32::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RecordError::Truncated(what))
    }

    /// A compact length (`None` for null), bounded by the bytes left.
    fn compact_len(&mut self, what: &'static str) -> Result<Option<usize>, RecordError> {
        match self.uvarint(what)? {
            0 => Ok(None),
            n => {
                let n = (n - 1) as usize;
                if n > self.0.len() {
                    return Err(RecordError::Truncated(what));
                }
                Ok(Some(n))
            }
        }
    }

    fn array_len(&mut self, what: &'static str) -> Result<usize, RecordError> {
        Ok(self.compact_len(what)?.unwrap_or(0))
    }

    fn compact_nullable(&mut self, what: &'static str) -> Result<Option<String>, RecordError> {
        match self.compact_len(what)? {
            None => Ok(None),
            Some(n) => String::from_utf8(self.take(n, what)?.to_vec())
                .map(Some)
                .map_err(|_| RecordError::Utf8(what)),
        }
    }

    fn compact(&mut self, what: &'static str) -> Result<String, RecordError> {
        Ok(self.compact_nullable(what)?.unwrap_or_default())
    }

    fn classic_string(&mut self, what: &'static str) -> Result<String, RecordError> {
        let b = self.take(2, what)?;
        let n = i16::from_be_bytes([b[0], b[1]]).max(0) as usize;
        String::from_utf8(self.take(n, what)?.to_vec()).map_err(|_| RecordError::Utf8(what))
    }

    fn tagged_fields(&mut self) -> Result<(), RecordError> {
        let count = self.uvarint("tagged fields")?;
        for _ in 0..count {
            self.uvarint("tag")?;
            let size = self.uvarint("tag size")? as usize;
            self.take(size, "tagged field")?;
        }
        Ok(())
    }

    fn assignment(&mut self) -> Result<Assignment, RecordError> {
        let topics = self.array_len("assignment")?;
        let mut out = Assignment::new();
        for _ in 0..topics {
            let id = Uuid::from_slice(self.take(16, "topic id")?)
                .map_err(|_| RecordError::Truncated("topic id"))?;
            let n = self.array_len("partitions")?;
            let set = out.entry(id).or_default();
            for _ in 0..n {
                set.insert(self.i32("partition")?);
            }
            self.tagged_fields()?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn consumer_records_round_trip() {
        let key = ConsumerKey::CurrentAssignment {
            group: "g".into(),
            member: "m".into(),
        };
        assert_eq!(ConsumerKey::decode(&key.encode()), Some(Ok(key)));
        // Classic keys are not ours.
        assert_eq!(ConsumerKey::decode(&[0, 2, 0, 1, b'g']), None);
        let meta = MemberMetadata {
            instance_id: Some("i".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            subscribed_topic_names: vec!["a".into(), "b".into()],
            subscribed_topic_regex: Some("^orders.*".into()),
            rebalance_timeout_ms: 300_000,
            server_assignor: Some("range".into()),
            classic: None,
        };
        assert_eq!(MemberMetadata::decode(&meta.encode()), Ok(meta.clone()));
        let classic = MemberMetadata {
            classic: Some(ClassicMemberMetadata {
                session_timeout_ms: 6000,
                protocols: vec![("range".into(), Bytes::from_static(b"\0\x01sub"))],
            }),
            ..meta
        };
        assert_eq!(MemberMetadata::decode(&classic.encode()), Ok(classic));
        let t = Uuid::from_bytes([7; 16]);
        let assigned = Assignment::from([(t, BTreeSet::from([0, 2]))]);
        let current = MemberAssignment {
            member_epoch: 5,
            previous_member_epoch: 4,
            state: MemberState::UnrevokedPartitions,
            assigned: assigned.clone(),
            pending_revocation: Assignment::from([(t, BTreeSet::from([1]))]),
        };
        assert_eq!(decode_current(&encode_current(&current)), Ok(current));
        assert_eq!(decode_target(&encode_target(&assigned)), Ok(assigned));
        assert_eq!(decode_epoch(&encode_epoch(9)), Ok(9));
    }

    #[test]
    fn hostile_consumer_records_are_errors_not_panics() {
        let meta = MemberMetadata::default().encode();
        // (The trailing tagged fields are not needed to read the value.)
        for n in 0..meta.len() - 1 {
            assert!(MemberMetadata::decode(&meta[..n]).is_err());
        }
        assert!(decode_current(&[0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(ConsumerKey::decode(&[0, 5, 0x7f, 0xff]).is_some_and(|r| r.is_err()));
    }
}
