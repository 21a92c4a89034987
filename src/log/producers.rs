//! Idempotent-producer state of one partition: per producer id, its epoch and
//! the last few batches' sequence ranges, so a retried batch is recognised and
//! answered with its original offset, and gaps or stale epochs are refused.
//!
//! Kept in memory and written through to sled so it survives restarts.

use std::collections::{HashMap, VecDeque};

/// How many recent batches per producer are remembered (Kafka keeps 5, the
/// client's max.in.flight.requests.per.connection limit for idempotence).
pub const BATCHES_REMEMBERED: usize = 5;

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

/// What the log knows of one producer on this partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<SequencedBatch>,
}

/// The verdict on an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already in the log: answer with these offsets, do not append.
    Duplicate(SequencedBatch),
    /// OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder { expected: i32 },
    /// INVALID_PRODUCER_EPOCH.
    StaleEpoch { current: i16 },
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl ProducerEntry {
    /// Check a batch against this producer's state.
    pub fn check(&self, epoch: i16, first_sequence: i32, last_sequence: i32) -> SequenceCheck {
        if epoch < self.epoch {
            return SequenceCheck::StaleEpoch {
                current: self.epoch,
            };
        }
        if epoch > self.epoch || self.batches.is_empty() {
            // A new epoch (or a producer we know nothing of) starts at sequence 0.
            return if first_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder { expected: 0 }
            };
        }
        if let Some(dup) = self
            .batches
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return SequenceCheck::Duplicate(*dup);
        }
        let expected = self
            .batches
            .back()
            .map(|b| next_sequence(b.last_sequence))
            .unwrap_or(0);
        if first_sequence == expected {
            SequenceCheck::Append
        } else {
            SequenceCheck::OutOfOrder { expected }
        }
    }

    /// Record an appended batch.
    pub fn record(&mut self, epoch: i16, batch: SequencedBatch) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        self.batches.push_back(batch);
        while self.batches.len() > BATCHES_REMEMBERED {
            self.batches.pop_front();
        }
    }

    /// Binary form: epoch i16, then per batch first i32, last i32, base i64, last i64.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.batches.len() * 24);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        for b in &self.batches {
            out.extend_from_slice(&b.first_sequence.to_be_bytes());
            out.extend_from_slice(&b.last_sequence.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset.to_be_bytes());
        }
        out
    }

    /// Inverse of `encode`; `None` when the bytes are not of that form.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 2 || !(b.len() - 2).is_multiple_of(24) {
            return None;
        }
        let epoch = i16::from_be_bytes([b[0], b[1]]);
        let mut batches = VecDeque::new();
        for c in b[2..].chunks_exact(24) {
            let i32_at = |at: usize| i32::from_be_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]);
            let i64_at = |at: usize| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&c[at..at + 8]);
                i64::from_be_bytes(a)
            };
            batches.push_back(SequencedBatch {
                first_sequence: i32_at(0),
                last_sequence: i32_at(4),
                base_offset: i64_at(8),
                last_offset: i64_at(16),
            });
        }
        Some(ProducerEntry { epoch, batches })
    }
}

/// All producers of one partition.
pub type ProducerTable = HashMap<i64, ProducerEntry>;

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i32, last: i32, base: i64) -> SequencedBatch {
        SequencedBatch {
            first_sequence: first,
            last_sequence: last,
            base_offset: base,
            last_offset: base + (last - first) as i64,
        }
    }

    #[test]
    fn retried_batch_is_a_duplicate_with_its_original_offset() {
        let mut p = ProducerEntry::default();
        assert_eq!(p.check(0, 0, 4), SequenceCheck::Append);
        p.record(0, batch(0, 4, 100));
        assert_eq!(p.check(0, 0, 4), SequenceCheck::Duplicate(batch(0, 4, 100)));
        assert_eq!(p.check(0, 5, 9), SequenceCheck::Append);
    }

    #[test]
    fn gap_is_out_of_order_and_old_epoch_is_stale() {
        let mut p = ProducerEntry::default();
        p.record(1, batch(0, 0, 0));
        assert_eq!(p.check(1, 5, 5), SequenceCheck::OutOfOrder { expected: 1 });
        assert_eq!(p.check(0, 1, 1), SequenceCheck::StaleEpoch { current: 1 });
        assert_eq!(p.check(2, 3, 3), SequenceCheck::OutOfOrder { expected: 0 });
        assert_eq!(p.check(2, 0, 0), SequenceCheck::Append);
    }

    #[test]
    fn state_round_trips_through_bytes() {
        let mut p = ProducerEntry::default();
        p.record(3, batch(0, 9, 10));
        p.record(3, batch(10, 19, 20));
        assert_eq!(ProducerEntry::decode(&p.encode()), Some(p));
    }
}
