//! The pre-scan of a request frame: one pass over its bytes, before anything
//! is decoded, that allocates nothing. It checks every length prefix against
//! the bytes left in the frame (an array of `n` entries needs at least `n`
//! times the smallest encoding of one entry, a string its length) and adds up
//! the memory the decoder will take: the structures it builds for every array
//! entry and every tagged field. Strings, bytes and record batches cost
//! nothing extra: the decoder keeps them as slices of the frame.
//!
//! Why: kafka-protocol sizes each vector from the count it reads off the wire,
//! and a few bytes on the wire can become a large structure (an empty topic
//! entry of a Produce request is 3 bytes on the wire and about 100 in memory).
//! `server` charges the estimate to the node's request budget (`budget`)
//! before decoding, and refuses a request whose decoded form would not fit.
//!
//! The layouts (`schema`) follow kafka-protocol's decoders field for field,
//! and the tests check them against the codec at every supported version.
//!
//! Must never: allocate, or accept a length the frame cannot hold. Locks: none.

mod schema;

use std::mem::size_of;

use bytes::Buf;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use self::schema::{Field, Kind, Message, Schema};
use super::supported_range;

/// What the allocator adds to each allocation (glibc: a header of 8 bytes,
/// sizes rounded up to 16).
const ALLOCATION_OVERHEAD: usize = 16;

/// The most memory one unknown tagged field can take. The decoder keeps them in
/// a `BTreeMap<i32, Bytes>`: a leaf node holds up to 11 entries in about 400
/// bytes, an internal node about 500, and every node but the root holds at
/// least 5 entries, so `n` entries never take more than `n` nodes.
const TAGGED_FIELD_BYTES: usize = 512 + ALLOCATION_OVERHEAD;

/// Where in a frame something was found: a structure and one of its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub structure: &'static str,
    pub field: &'static str,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.structure, self.field)
    }
}

const HEADER: &str = "RequestHeader";

/// Why a frame is refused before it is decoded.
#[derive(Debug, thiserror::Error)]
pub enum PrescanError {
    #[error("truncated: {place} at byte {at} needs {needed} bytes, {left} left")]
    Truncated {
        place: Place,
        at: usize,
        needed: usize,
        left: usize,
    },
    #[error("negative length {length} of {place} at byte {at}")]
    NegativeLength {
        place: Place,
        at: usize,
        length: i64,
    },
    #[error("{count} entries of {place} at byte {at} need at least {needed} bytes, {left} left")]
    TooManyEntries {
        place: Place,
        at: usize,
        count: u64,
        needed: u64,
        left: usize,
    },
    #[error("decoding it would take more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("no request layout for {0:?}")]
    NoLayout(ApiKey),
}

/// The bytes of memory that decoding `frame` (a request frame without its
/// size prefix) will take, or why it must not be decoded. Stops as soon as
/// the estimate passes `limit`. A frame of an unknown API or an unsupported
/// version costs nothing: `server` closes the connection or answers it
/// without decoding it.
pub fn decoded_size(frame: &[u8], limit: usize) -> Result<usize, PrescanError> {
    walk(frame, limit).map(|walk| walk.decoded)
}

fn walk(frame: &[u8], limit: usize) -> Result<Walk<'_>, PrescanError> {
    let mut walk = Walk {
        rest: frame,
        len: frame.len(),
        flexible: false,
        version: 0,
        decoded: 0,
        limit,
    };
    let api_key = walk.i16(place(HEADER, "request_api_key"))?;
    let version = walk.i16(place(HEADER, "request_api_version"))?;
    let Ok(api) = ApiKey::try_from(api_key) else {
        return Ok(walk);
    };
    match supported_range(api) {
        Some((min, max)) if (min..=max).contains(&version) => {}
        _ => return Ok(walk),
    }
    let message = schema::message_of(api).ok_or(PrescanError::NoLayout(api))?;
    walk.version = version;
    walk.header(api.request_header_version(version))?;
    walk.body(message)?;
    Ok(walk)
}

const fn place(structure: &'static str, field: &'static str) -> Place {
    Place { structure, field }
}

/// A pass over one frame.
struct Walk<'a> {
    /// The bytes not yet walked.
    rest: &'a [u8],
    /// The frame's length.
    len: usize,
    /// Whether the message's version is flexible (compact lengths, tagged fields).
    flexible: bool,
    version: i16,
    /// The estimate so far.
    decoded: usize,
    /// Where the estimate stops the pass.
    limit: usize,
}

impl Walk<'_> {
    fn left(&self) -> usize {
        self.rest.len()
    }

    /// How far into the frame the walk is.
    fn pos(&self) -> usize {
        self.len - self.rest.len()
    }

    fn need(&self, n: usize, place: Place) -> Result<(), PrescanError> {
        if n > self.left() {
            return Err(PrescanError::Truncated {
                place,
                at: self.pos(),
                needed: n,
                left: self.left(),
            });
        }
        Ok(())
    }

    fn skip(&mut self, n: usize, place: Place) -> Result<(), PrescanError> {
        self.need(n, place)?;
        self.rest.advance(n);
        Ok(())
    }

    fn i16(&mut self, place: Place) -> Result<i16, PrescanError> {
        self.need(2, place)?;
        Ok(self.rest.get_i16())
    }

    fn i32(&mut self, place: Place) -> Result<i32, PrescanError> {
        self.need(4, place)?;
        Ok(self.rest.get_i32())
    }

    /// An unsigned varint as kafka-protocol reads it: at most five bytes.
    fn uvarint(&mut self, place: Place) -> Result<u32, PrescanError> {
        let mut value = 0u32;
        for i in 0..5 {
            self.need(1, place)?;
            let b = self.rest.get_u8() as u32;
            value |= (b & 0x7F) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    fn charge(&mut self, bytes: usize) -> Result<(), PrescanError> {
        self.decoded = self.decoded.saturating_add(bytes);
        if self.decoded > self.limit {
            return Err(PrescanError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    /// A length prefix: `None` for null. Compact lengths are stored plus one.
    fn length(&mut self, place: Place, wide: bool) -> Result<Option<usize>, PrescanError> {
        let at = self.pos();
        if self.flexible {
            return Ok(match self.uvarint(place)? {
                0 => None,
                n => Some(n as usize - 1),
            });
        }
        let n = if wide {
            self.i32(place)? as i64
        } else {
            self.i16(place)? as i64
        };
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(PrescanError::NegativeLength {
                place,
                at,
                length: n,
            }),
            n => Ok(Some(n as usize)),
        }
    }

    /// A string or bytes field: its length prefix, then that many bytes.
    fn sized(&mut self, place: Place, wide: bool) -> Result<(), PrescanError> {
        if let Some(n) = self.length(place, wide)? {
            self.skip(n, place)?;
        }
        Ok(())
    }

    /// An array's entry count, checked against the bytes left, and the
    /// memory of the vector that will hold the entries.
    fn entries(
        &mut self,
        place: Place,
        entry_wire_min: usize,
        entry_size: usize,
    ) -> Result<usize, PrescanError> {
        let at = self.pos();
        let count = self.length(place, true)?.unwrap_or(0);
        let needed = (count as u64).saturating_mul(entry_wire_min.max(1) as u64);
        if needed > self.left() as u64 {
            return Err(PrescanError::TooManyEntries {
                place,
                at,
                count: count as u64,
                needed,
                left: self.left(),
            });
        }
        if count > 0 {
            self.charge(
                count
                    .saturating_mul(entry_size)
                    .saturating_add(ALLOCATION_OVERHEAD),
            )?;
        }
        Ok(count)
    }

    fn header(&mut self, header_version: i16) -> Result<(), PrescanError> {
        self.charge(size_of::<RequestHeader>())?;
        self.skip(4, place(HEADER, "correlation_id"))?;
        if header_version >= 1 {
            // The client id is never compact, not even in flexible headers.
            self.sized(place(HEADER, "client_id"), false)?;
        }
        if header_version >= 2 {
            self.flexible = true;
            self.tagged_fields(HEADER, &[])?;
        }
        Ok(())
    }

    fn body(&mut self, message: &Message) -> Result<(), PrescanError> {
        self.flexible = message.flexible(self.version);
        self.charge(message.body.size)?;
        self.structure(message.body)
    }

    fn structure(&mut self, schema: &Schema) -> Result<(), PrescanError> {
        let version = self.version;
        for field in schema.fields.iter().filter(|f| f.present_in(version)) {
            self.field(schema.name, field)?;
        }
        if self.flexible {
            self.tagged_fields(schema.name, schema.known_tags)?;
        }
        Ok(())
    }

    fn field(&mut self, structure: &'static str, field: &Field) -> Result<(), PrescanError> {
        let here = place(structure, field.name);
        match field.kind {
            Kind::Fixed(n) => self.skip(n, here)?,
            Kind::Str => self.sized(here, false)?,
            Kind::Bytes => self.sized(here, true)?,
            Kind::Int8s => {
                let count = self.entries(here, 1, 1)?;
                self.skip(count, here)?;
            }
            Kind::Int32s => {
                let count = self.entries(here, 4, 4)?;
                self.skip(count * 4, here)?;
            }
            Kind::Int64s => {
                let count = self.entries(here, 8, 8)?;
                self.skip(count * 8, here)?;
            }
            Kind::Strs => {
                let count = self.entries(here, self.min_size(Kind::Str), size_of::<StrBytes>())?;
                for _ in 0..count {
                    self.sized(here, false)?;
                }
            }
            Kind::Structs(schema) => {
                let count = self.entries(here, self.min_entry_size(schema), schema.size)?;
                for _ in 0..count {
                    self.structure(schema)?;
                }
            }
            Kind::OptionalStruct(schema) => {
                self.need(1, here)?;
                // As the codec reads it: 1 is present, anything else null.
                if self.rest.get_i8() == 1 {
                    self.structure(schema)?;
                }
            }
            // Held inline: its memory is in its parent's size.
            Kind::Struct(schema) => self.structure(schema)?,
        }
        Ok(())
    }

    /// The fewest bytes a field of this kind takes on the wire.
    fn min_size(&self, kind: Kind) -> usize {
        match kind {
            Kind::Fixed(n) => n,
            Kind::Str if !self.flexible => 2,
            Kind::Bytes
            | Kind::Int8s
            | Kind::Int32s
            | Kind::Int64s
            | Kind::Strs
            | Kind::Structs(_)
                if !self.flexible =>
            {
                4
            }
            Kind::Struct(schema) => self.min_entry_size(schema),
            // A compact length or a presence byte: one byte at least.
            _ => 1,
        }
    }

    /// The fewest bytes one structure takes on the wire at this version.
    fn min_entry_size(&self, schema: &Schema) -> usize {
        let fields: usize = schema
            .fields
            .iter()
            .filter(|f| f.present_in(self.version))
            .map(|f| self.min_size(f.kind))
            .sum();
        // The count of tagged fields.
        fields + usize::from(self.flexible)
    }

    /// A structure's tagged fields. Known tags are decoded in place (as the
    /// codec does, whatever size they claim); unknown ones are kept as bytes.
    fn tagged_fields(
        &mut self,
        structure: &'static str,
        known: &[(u32, Field)],
    ) -> Result<(), PrescanError> {
        let here = place(structure, "tagged fields");
        let at = self.pos();
        let count = self.uvarint(here)?;
        // A tag and a size of at least one byte each.
        let needed = count as u64 * 2;
        if needed > self.left() as u64 {
            return Err(PrescanError::TooManyEntries {
                place: here,
                at,
                count: count as u64,
                needed,
                left: self.left(),
            });
        }
        let version = self.version;
        for _ in 0..count {
            let tag = self.uvarint(here)?;
            let size = self.uvarint(here)? as usize;
            match known
                .iter()
                .find(|(t, field)| *t == tag && field.present_in(version))
            {
                Some((_, field)) => self.field(structure, field)?,
                None => {
                    self.charge(TAGGED_FIELD_BYTES)?;
                    self.skip(size, here)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
