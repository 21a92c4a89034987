//! One share-partition (KIP-932): the records of one topic partition as a
//! share group delivers them. Pure: no I/O, no clock of its own (the caller
//! passes `now`).
//!
//! The share-partition start offset (SPSO) is the first record not yet
//! acknowledged; `end_offset` is the first record never acquired. Every
//! offset in between has a state: available, acquired by one member until
//! its acquisition lock's deadline, acknowledged, or archived (rejected, a
//! gap, or delivered the most times allowed). The start offset moves past
//! acknowledged and archived records.
//!
//! Must never: hand one record to two members at once, or move the start
//! offset past a record that is not acknowledged or archived.
//! Locks: none (the caller's).

use std::collections::BTreeMap;

use tokio::time::Instant;

/// Acknowledgement types of ShareFetch and ShareAcknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckType {
    /// The offset holds no record (a compacted or control offset).
    Gap,
    /// Processed: never delivered again.
    Accept,
    /// Not processed: available again for delivery.
    Release,
    /// Unprocessable: never delivered again.
    Reject,
}

impl AckType {
    /// The wire value (0 gap, 1 accept, 2 release, 3 reject).
    pub fn from_wire(v: i8) -> Option<Self> {
        match v {
            0 => Some(AckType::Gap),
            1 => Some(AckType::Accept),
            2 => Some(AckType::Release),
            3 => Some(AckType::Reject),
            _ => None,
        }
    }
}

/// Why an acknowledgement was refused (INVALID_RECORD_STATE on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the records are not acquired by this member")]
pub struct InvalidRecordState;

/// Where a record is in its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    Available,
    Acquired {
        member_id: String,
        deadline: Instant,
    },
    Acknowledged,
    Archived,
}

/// One offset between the start and end offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub state: RecordState,
    /// How many times it was acquired.
    pub delivery_count: i16,
}

/// A contiguous range of records acquired with the same delivery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_count: i16,
}

/// The limits a share-partition applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A record acquired this many times is archived when released or when
    /// its lock expires (`group.share.delivery.count.limit`).
    pub max_delivery_count: i16,
    /// The most records between the start and end offsets
    /// (`group.share.partition.max.record.locks`).
    pub max_in_flight: i64,
}

/// One share-partition's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartition {
    start_offset: i64,
    end_offset: i64,
    /// The state of each offset in `[start_offset, end_offset)`.
    records: BTreeMap<i64, InFlight>,
}

impl SharePartition {
    /// A share-partition whose first record to deliver is `start_offset`.
    pub fn new(start_offset: i64) -> Self {
        SharePartition {
            start_offset,
            end_offset: start_offset,
            records: BTreeMap::new(),
        }
    }

    /// The share-partition start offset: the first record not acknowledged.
    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    /// The first offset never acquired.
    #[cfg(test)]
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// The state of one offset inside the window.
    #[cfg(test)]
    pub fn record(&self, offset: i64) -> Option<&InFlight> {
        self.records.get(&offset)
    }

    /// Records whose locks expired become available again (archived at the
    /// delivery limit); true when any did.
    pub fn expire_locks(&mut self, now: Instant, limits: Limits) -> bool {
        let mut changed = false;
        for r in self.records.values_mut() {
            if matches!(&r.state, RecordState::Acquired { deadline, .. } if *deadline <= now) {
                r.state = released_state(r.delivery_count, limits);
                changed = true;
            }
        }
        if changed {
            self.advance();
        }
        changed
    }

    /// The earliest acquisition-lock deadline, if any record is acquired.
    pub fn next_lock_deadline(&self) -> Option<Instant> {
        self.records
            .values()
            .filter_map(|r| match &r.state {
                RecordState::Acquired { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// The first offset a fetch should read from to find records to
    /// acquire: the first available one, else the end offset. None when the
    /// window is full and nothing in it is available.
    pub fn next_fetch_offset(&self, limits: Limits) -> Option<i64> {
        let available = self
            .records
            .iter()
            .find(|(_, r)| r.state == RecordState::Available)
            .map(|(o, _)| *o);
        match available {
            Some(o) => Some(o),
            None if self.end_offset - self.start_offset < limits.max_in_flight => {
                Some(self.end_offset)
            }
            None => None,
        }
    }

    /// Records before the log's start offset are gone: the share-partition
    /// starts at it (as Kafka does after retention).
    pub fn skip_to(&mut self, log_start_offset: i64) {
        if log_start_offset <= self.start_offset {
            return;
        }
        self.records = self.records.split_off(&log_start_offset);
        self.start_offset = log_start_offset;
        self.end_offset = self.end_offset.max(log_start_offset);
        self.advance();
    }

    /// Acquire for `member_id`, until `deadline`, at most `max_records`
    /// records in `[from, upto]`: available ones, then never acquired ones
    /// (within the window's limit). Returns the ranges acquired.
    pub fn acquire(
        &mut self,
        member_id: &str,
        from: i64,
        upto: i64,
        max_records: usize,
        deadline: Instant,
        limits: Limits,
    ) -> Vec<Acquired> {
        let mut offsets: Vec<(i64, i16)> = Vec::new();
        let from = from.max(self.start_offset);
        if from > upto {
            return Vec::new();
        }
        for (offset, r) in self.records.range_mut(from..=upto) {
            if offsets.len() >= max_records {
                break;
            }
            if r.state == RecordState::Available {
                r.delivery_count = r.delivery_count.saturating_add(1);
                r.state = RecordState::Acquired {
                    member_id: member_id.to_owned(),
                    deadline,
                };
                offsets.push((*offset, r.delivery_count));
            }
        }
        let window_end = self.start_offset.saturating_add(limits.max_in_flight);
        // New records only from the end offset on (never leaving a hole).
        let mut next = self.end_offset;
        while next >= from && next <= upto && next < window_end && offsets.len() < max_records {
            self.records.insert(
                next,
                InFlight {
                    state: RecordState::Acquired {
                        member_id: member_id.to_owned(),
                        deadline,
                    },
                    delivery_count: 1,
                },
            );
            offsets.push((next, 1));
            next += 1;
        }
        self.end_offset = self.end_offset.max(next);
        ranges(&offsets)
    }

    /// Apply one acknowledgement by `member_id` of `[first, last]`: every
    /// record in it must be acquired by that member (else nothing changes).
    /// `types` holds one type for the whole range or one per offset.
    pub fn acknowledge(
        &mut self,
        member_id: &str,
        first: i64,
        last: i64,
        types: &[AckType],
        limits: Limits,
    ) -> Result<(), InvalidRecordState> {
        let len = last
            .checked_sub(first)
            .and_then(|d| d.checked_add(1))
            .filter(|n| *n > 0)
            .ok_or(InvalidRecordState)?;
        if types.is_empty() || (types.len() != 1 && types.len() as i64 != len) {
            return Err(InvalidRecordState);
        }
        if first < self.start_offset || last >= self.end_offset {
            return Err(InvalidRecordState);
        }
        let owned = self.records.range(first..=last).count() as i64 == len
            && self.records.range(first..=last).all(|(_, r)| {
                matches!(&r.state, RecordState::Acquired { member_id: m, .. } if m == member_id)
            });
        if !owned {
            return Err(InvalidRecordState);
        }
        for (i, (_, r)) in self.records.range_mut(first..=last).enumerate() {
            let t = if types.len() == 1 { types[0] } else { types[i] };
            r.state = match t {
                AckType::Accept => RecordState::Acknowledged,
                AckType::Gap | AckType::Reject => RecordState::Archived,
                AckType::Release => released_state(r.delivery_count, limits),
            };
        }
        self.advance();
        Ok(())
    }

    /// Release every record `member_id` holds (it left, or closed its share
    /// session); true when any was.
    pub fn release_member(&mut self, member_id: &str, limits: Limits) -> bool {
        let mut changed = false;
        for r in self.records.values_mut() {
            if matches!(&r.state, RecordState::Acquired { member_id: m, .. } if m == member_id) {
                r.state = released_state(r.delivery_count, limits);
                changed = true;
            }
        }
        if changed {
            self.advance();
        }
        changed
    }

    /// Move the start offset past acknowledged and archived records.
    fn advance(&mut self) {
        while let Some(entry) = self.records.first_entry() {
            if matches!(
                entry.get().state,
                RecordState::Acknowledged | RecordState::Archived
            ) {
                let offset = *entry.key();
                entry.remove();
                self.start_offset = offset + 1;
            } else {
                break;
            }
        }
        if self.records.is_empty() {
            self.start_offset = self.start_offset.max(self.end_offset);
            self.end_offset = self.start_offset;
        }
    }

    /// The stored form: start and end offsets, then each offset's state and
    /// delivery count (an acquired record is stored as available: its lock
    /// does not outlive the node).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.records.len() * 11);
        out.push(STATE_FORMAT);
        out.extend_from_slice(&self.start_offset.to_be_bytes());
        out.extend_from_slice(&self.end_offset.to_be_bytes());
        for (offset, r) in &self.records {
            out.extend_from_slice(&offset.to_be_bytes());
            out.push(match r.state {
                RecordState::Available | RecordState::Acquired { .. } => 0,
                RecordState::Acknowledged => 1,
                RecordState::Archived => 2,
            });
            out.extend_from_slice(&r.delivery_count.to_be_bytes());
        }
        out
    }

    /// Read the stored form back (None if it is not one).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&format, rest) = bytes.split_first()?;
        if format != STATE_FORMAT || rest.len() < 16 || (rest.len() - 16) % 11 != 0 {
            return None;
        }
        let i64_at = |b: &[u8]| b.try_into().ok().map(i64::from_be_bytes);
        let start_offset = i64_at(&rest[0..8])?;
        let end_offset = i64_at(&rest[8..16])?;
        let mut records = BTreeMap::new();
        for chunk in rest[16..].chunks_exact(11) {
            let offset = i64_at(&chunk[0..8])?;
            let state = match chunk[8] {
                0 => RecordState::Available,
                1 => RecordState::Acknowledged,
                2 => RecordState::Archived,
                _ => return None,
            };
            let delivery_count = i16::from_be_bytes([chunk[9], chunk[10]]);
            records.insert(
                offset,
                InFlight {
                    state,
                    delivery_count,
                },
            );
        }
        let mut p = SharePartition {
            start_offset,
            end_offset,
            records,
        };
        p.advance();
        Some(p)
    }
}

/// The stored form's version.
const STATE_FORMAT: u8 = 1;

/// Where a released record goes: available, or archived at the limit.
fn released_state(delivery_count: i16, limits: Limits) -> RecordState {
    if delivery_count >= limits.max_delivery_count {
        RecordState::Archived
    } else {
        RecordState::Available
    }
}

/// Consecutive offsets with the same delivery count as ranges.
fn ranges(offsets: &[(i64, i16)]) -> Vec<Acquired> {
    let mut sorted = offsets.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<Acquired> = Vec::new();
    for (offset, count) in sorted {
        match out.last_mut() {
            Some(last) if last.last_offset + 1 == offset && last.delivery_count == count => {
                last.last_offset = offset;
            }
            _ => out.push(Acquired {
                first_offset: offset,
                last_offset: offset,
                delivery_count: count,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: Limits = Limits {
        max_delivery_count: 5,
        max_in_flight: 100,
    };

    fn range(first: i64, last: i64, count: i16) -> Acquired {
        Acquired {
            first_offset: first,
            last_offset: last,
            delivery_count: count,
        }
    }

    #[test]
    fn acquire_hands_each_record_to_one_member() {
        let now = Instant::now();
        let lock = now + Duration::from_secs(30);
        let mut p = SharePartition::new(0);
        assert_eq!(
            p.acquire("a", 0, 4, 500, lock, LIMITS),
            vec![range(0, 4, 1)]
        );
        assert_eq!(
            p.acquire("b", 0, 9, 500, lock, LIMITS),
            vec![range(5, 9, 1)]
        );
        assert_eq!(p.acquire("c", 0, 9, 500, lock, LIMITS), vec![]);
        assert_eq!(p.end_offset(), 10);
        assert_eq!(p.start_offset(), 0);
    }

    #[test]
    fn max_records_bounds_an_acquisition() {
        let lock = Instant::now() + Duration::from_secs(30);
        let mut p = SharePartition::new(10);
        assert_eq!(
            p.acquire("a", 10, 99, 3, lock, LIMITS),
            vec![range(10, 12, 1)]
        );
        assert_eq!(p.next_fetch_offset(LIMITS), Some(13));
    }

    #[test]
    fn accepted_records_move_the_start_offset() {
        let lock = Instant::now() + Duration::from_secs(30);
        let mut p = SharePartition::new(0);
        p.acquire("a", 0, 9, 500, lock, LIMITS);
        p.acknowledge("a", 2, 9, &[AckType::Accept], LIMITS)
            .expect("ack");
        assert_eq!(p.start_offset(), 0, "0 and 1 are still acquired");
        p.acknowledge("a", 0, 1, &[AckType::Accept], LIMITS)
            .expect("ack");
        assert_eq!(p.start_offset(), 10);
        assert_eq!(p.end_offset(), 10);
        assert_eq!(p.record(3), None);
    }

    #[test]
    fn only_the_holder_may_acknowledge() {
        let lock = Instant::now() + Duration::from_secs(30);
        let mut p = SharePartition::new(0);
        p.acquire("a", 0, 4, 500, lock, LIMITS);
        assert_eq!(
            p.acknowledge("b", 0, 0, &[AckType::Accept], LIMITS),
            Err(InvalidRecordState)
        );
        assert_eq!(
            p.acknowledge("a", 3, 7, &[AckType::Accept], LIMITS),
            Err(InvalidRecordState),
            "beyond what was acquired"
        );
        assert_eq!(
            p.acknowledge("a", 0, 1, &[AckType::Accept; 3], LIMITS),
            Err(InvalidRecordState),
            "one type per offset or one for all"
        );
        assert_eq!(p.start_offset(), 0);
    }

    #[test]
    fn a_released_record_is_delivered_again_with_a_higher_count() {
        let lock = Instant::now() + Duration::from_secs(30);
        let mut p = SharePartition::new(0);
        p.acquire("a", 0, 2, 500, lock, LIMITS);
        p.acknowledge(
            "a",
            0,
            2,
            &[AckType::Accept, AckType::Release, AckType::Reject],
            LIMITS,
        )
        .expect("ack");
        assert_eq!(p.start_offset(), 1);
        assert_eq!(p.next_fetch_offset(LIMITS), Some(1));
        assert_eq!(
            p.acquire("b", 0, 5, 500, lock, LIMITS),
            vec![range(1, 1, 2), range(3, 5, 1)]
        );
        assert_eq!(p.record(2).map(|r| &r.state), Some(&RecordState::Archived));
    }

    #[test]
    fn an_expired_lock_makes_records_available_again() {
        let now = Instant::now();
        let mut p = SharePartition::new(0);
        p.acquire("a", 0, 1, 500, now + Duration::from_secs(1), LIMITS);
        assert!(!p.expire_locks(now, LIMITS));
        assert_eq!(p.next_lock_deadline(), Some(now + Duration::from_secs(1)));
        assert!(p.expire_locks(now + Duration::from_secs(1), LIMITS));
        assert_eq!(
            p.acknowledge("a", 0, 1, &[AckType::Accept], LIMITS),
            Err(InvalidRecordState),
            "an expired lock cannot be acknowledged"
        );
        assert_eq!(
            p.acquire("b", 0, 1, 500, now + Duration::from_secs(60), LIMITS),
            vec![range(0, 1, 2)]
        );
    }

    #[test]
    fn a_record_is_archived_after_the_most_deliveries() {
        let now = Instant::now();
        let mut p = SharePartition::new(0);
        for attempt in 1..=5 {
            let got = p.acquire("a", 0, 0, 500, now, LIMITS);
            assert_eq!(got, vec![range(0, 0, attempt)]);
            assert!(p.expire_locks(now, LIMITS));
        }
        assert_eq!(p.start_offset(), 1, "archived after the fifth delivery");
        assert_eq!(p.acquire("a", 0, 0, 500, now, LIMITS), vec![]);
    }

    #[test]
    fn a_leaving_member_releases_what_it_holds() {
        let lock = Instant::now() + Duration::from_secs(30);
        let mut p = SharePartition::new(0);
        p.acquire("a", 0, 1, 500, lock, LIMITS);
        p.acquire("b", 0, 3, 500, lock, LIMITS);
        assert!(p.release_member("a", LIMITS));
        assert_eq!(
            p.acquire("c", 0, 3, 500, lock, LIMITS),
            vec![range(0, 1, 2)]
        );
    }

    #[test]
    fn the_window_bounds_records_in_flight() {
        let lock = Instant::now() + Duration::from_secs(30);
        let limits = Limits {
            max_delivery_count: 5,
            max_in_flight: 4,
        };
        let mut p = SharePartition::new(0);
        assert_eq!(
            p.acquire("a", 0, 9, 500, lock, limits),
            vec![range(0, 3, 1)]
        );
        assert_eq!(p.next_fetch_offset(limits), None);
        p.acknowledge("a", 0, 1, &[AckType::Accept], limits)
            .expect("ack");
        assert_eq!(
            p.acquire("a", 0, 9, 500, lock, limits),
            vec![range(4, 5, 1)]
        );
    }

    #[test]
    fn the_stored_form_keeps_acknowledged_records_and_releases_locks() {
        let lock = Instant::now() + Duration::from_secs(30);
        let mut p = SharePartition::new(5);
        p.acquire("a", 5, 9, 500, lock, LIMITS);
        p.acknowledge("a", 7, 8, &[AckType::Accept], LIMITS)
            .expect("ack");
        let back = SharePartition::decode(&p.encode()).expect("decodes");
        assert_eq!(back.start_offset(), 5);
        assert_eq!(back.end_offset(), 10);
        assert_eq!(
            back.record(5).map(|r| &r.state),
            Some(&RecordState::Available)
        );
        assert_eq!(
            back.record(7).map(|r| &r.state),
            Some(&RecordState::Acknowledged)
        );
        let mut back = back;
        assert_eq!(
            back.acquire("b", 5, 20, 500, lock, LIMITS),
            vec![range(5, 6, 2), range(9, 9, 2), range(10, 20, 1)]
        );
        assert_eq!(SharePartition::decode(b"\x09junk"), None);
    }

    #[test]
    fn retention_moves_the_start_offset() {
        let lock = Instant::now() + Duration::from_secs(30);
        let mut p = SharePartition::new(0);
        p.acquire("a", 0, 4, 500, lock, LIMITS);
        p.skip_to(3);
        assert_eq!(p.start_offset(), 3);
        p.skip_to(50);
        assert_eq!((p.start_offset(), p.end_offset()), (50, 50));
    }
}
