//! One transactional id's state and its transitions, as Kafka's
//! `TransactionMetadata` and `TransactionCoordinator` define them. Pure: each
//! transition takes the current metadata and a request and returns the
//! metadata to store (or why not); the coordinator writes it to
//! `__transaction_state` and then makes it current.
//!
//! ```text
//!   Empty ──AddPartitions──▶ Ongoing ──EndTxn──▶ PrepareCommit ──markers──▶ CompleteCommit
//!     ▲                        │    └─EndTxn/timeout─▶ PrepareAbort ──markers──▶ CompleteAbort
//!     └──────── InitProducerId (epoch + 1) from any Complete* or Empty state
//! ```

use std::collections::BTreeSet;

/// Kafka's transaction states, with their codes in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        (0..=7)
            .filter_map(TxnState::from_code)
            .find(|s| s.name() == name)
    }

    /// Markers are being written: the transaction cannot change meanwhile.
    pub fn is_preparing(self) -> bool {
        matches!(
            self,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        )
    }
}

/// Why a transition is refused (`kafka::errors` maps each to its code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("this node does not coordinate the transactional id")]
    NotCoordinator,
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("markers of the previous transaction are being written")]
    ConcurrentTransactions,
    #[error("a newer producer with the same transactional id fenced this one")]
    ProducerFenced,
    #[error("the producer epoch is not the transactional id's")]
    InvalidProducerEpoch,
    #[error("the producer id is not the transactional id's")]
    InvalidProducerIdMapping,
    #[error("the request does not fit the transaction's state")]
    InvalidTxnState,
    #[error("the transaction timeout is larger than transaction.max.timeout.ms")]
    InvalidTransactionTimeout,
    #[error("the transactional id is invalid")]
    InvalidRequest,
    #[error("the transaction state was not replicated in time")]
    RequestTimedOut,
    #[error("the producer id could not be allocated")]
    Storage,
    #[error("no such transactional id")]
    TransactionalIdNotFound,
}

/// One transactional id's current transaction (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (KIP-360: a producer retrying the
    /// InitProducerId that bumped it gets the current epoch back; KIP-890:
    /// one retrying the EndTxn that bumped it, too); -1 after a reload.
    pub last_producer_epoch: i16,
    /// The producer id before the last bump when that bump ran out of
    /// epochs and took a new id, else -1 (in memory only, as above).
    pub previous_producer_id: i64,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions the transaction wrote to (or will write markers to).
    pub partitions: BTreeSet<(String, i32)>,
    /// When the ongoing transaction began (ms since the epoch), or -1.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Store this metadata, then answer with its producer id and epoch.
    Ready(TxnMetadata),
    /// A retry of the bump that already happened: answer with the current
    /// id and epoch, store nothing.
    Unchanged,
    /// The previous instance's transaction is open: store this (PrepareAbort
    /// with the epoch bumped, which fences that instance), write its ABORT
    /// markers, and answer CONCURRENT_TRANSACTIONS so the client retries.
    AbortFirst(TxnMetadata),
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Store this (PrepareCommit or PrepareAbort), then write the markers.
    Prepare(TxnMetadata),
    /// A retry of an EndTxn that completed: nothing to do.
    AlreadyDone,
}

impl TxnMetadata {
    /// A new transactional id with its first producer id (epoch 0), Empty.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_owned(),
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            previous_producer_id: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
        }
    }

    /// The same id with the epoch bumped (a new producer id, from
    /// `new_producer_id`, when the epoch is exhausted).
    fn bumped(
        &self,
        new_producer_id: impl FnOnce() -> Result<i64, TxnError>,
    ) -> Result<Self, TxnError> {
        let mut next = self.clone();
        next.last_producer_epoch = self.producer_epoch;
        if self.producer_epoch >= i16::MAX - 1 {
            next.producer_id = new_producer_id()?;
            next.producer_epoch = 0;
            next.previous_producer_id = self.producer_id;
        } else {
            next.producer_epoch = self.producer_epoch + 1;
            next.previous_producer_id = -1;
        }
        Ok(next)
    }

    /// InitProducerId: bump the epoch (fencing older instances), or abort
    /// what a previous instance left open first. `expected` is the KIP-360
    /// producer id and epoch the request carries (`None` for a new instance).
    pub fn init(
        &self,
        expected: Option<(i64, i16)>,
        timeout_ms: i32,
        now_ms: i64,
        new_producer_id: impl FnOnce() -> Result<i64, TxnError>,
    ) -> Result<InitStep, TxnError> {
        if self.state.is_preparing() {
            return Err(TxnError::ConcurrentTransactions);
        }
        if let Some((producer_id, epoch)) = expected {
            if producer_id != self.producer_id {
                return Err(TxnError::ProducerFenced);
            }
            if epoch != self.producer_epoch {
                if epoch == self.last_producer_epoch
                    && self.previous_producer_id < 0
                    && self.state == TxnState::Empty
                {
                    return Ok(InitStep::Unchanged);
                }
                return Err(TxnError::ProducerFenced);
            }
        }
        if self.state == TxnState::Ongoing {
            let mut abort = self.bumped(new_producer_id)?;
            abort.state = TxnState::PrepareAbort;
            abort.last_update_ms = now_ms;
            return Ok(InitStep::AbortFirst(abort));
        }
        let mut next = self.bumped(new_producer_id)?;
        next.state = TxnState::Empty;
        next.partitions.clear();
        next.timeout_ms = timeout_ms;
        next.start_ms = -1;
        next.last_update_ms = now_ms;
        Ok(InitStep::Ready(next))
    }

    /// The request's producer id and epoch must be the current ones.
    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets
    /// partition): the transaction becomes Ongoing with these partitions.
    /// `None` when they are all in the ongoing transaction already.
    pub fn add_partitions(
        &self,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now_ms: i64,
    ) -> Result<Option<TxnMetadata>, TxnError> {
        self.check_producer(producer_id, epoch)?;
        if self.state.is_preparing() {
            return Err(TxnError::ConcurrentTransactions);
        }
        if self.state == TxnState::Dead {
            return Err(TxnError::InvalidTxnState);
        }
        if self.state == TxnState::Ongoing && partitions.iter().all(|p| self.partitions.contains(p))
        {
            return Ok(None);
        }
        let mut next = self.clone();
        if self.state != TxnState::Ongoing {
            next.partitions.clear();
            next.start_ms = now_ms;
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions.iter().cloned());
        next.last_update_ms = now_ms;
        Ok(Some(next))
    }

    /// KIP-890: may this producer write transactional records to `partition`
    /// now (it is in the ongoing transaction of the current epoch)?
    pub fn verify(
        &self,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
    ) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch < self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if epoch > self.producer_epoch {
            return Err(TxnError::InvalidProducerEpoch);
        }
        if self.state != TxnState::Ongoing || !self.partitions.contains(partition) {
            return Err(TxnError::InvalidTxnState);
        }
        Ok(())
    }

    /// Was the epoch bumped by the last EndTxn from (`producer_id`,
    /// `epoch`)? Then a request with them is that EndTxn retried.
    fn bumped_from(&self, producer_id: i64, epoch: i16) -> bool {
        let previous_id = if self.previous_producer_id >= 0 {
            self.previous_producer_id
        } else {
            self.producer_id
        };
        self.last_producer_epoch >= 0
            && producer_id == previous_id
            && epoch == self.last_producer_epoch
    }

    /// EndTxn: commit or abort the ongoing transaction. With `bump`
    /// (EndTxn v5+, KIP-890 part 2) the epoch goes up by one with the
    /// markers (a new producer id from `new_producer_id` when exhausted),
    /// so nothing the producer sent in this transaction can land in the
    /// next; the answer carries the new id and epoch, and a retry with the
    /// old ones gets them again.
    pub fn end(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        bump: bool,
        now_ms: i64,
        new_producer_id: impl FnOnce() -> Result<i64, TxnError>,
    ) -> Result<EndStep, TxnError> {
        if bump
            && (producer_id, epoch) != (self.producer_id, self.producer_epoch)
            && self.bumped_from(producer_id, epoch)
        {
            return match (self.state, commit) {
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    Ok(EndStep::AlreadyDone)
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    Err(TxnError::ConcurrentTransactions)
                }
                _ => Err(TxnError::ProducerFenced),
            };
        }
        self.check_producer(producer_id, epoch)?;
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = if bump {
                    self.bumped(new_producer_id)?
                } else {
                    self.clone()
                };
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                next.last_update_ms = now_ms;
                Ok(EndStep::Prepare(next))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Ok(EndStep::AlreadyDone)
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            // Aborting a transaction that wrote nothing is nothing to do.
            (TxnState::Empty, false) => Ok(EndStep::AlreadyDone),
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// The markers are written: PrepareCommit becomes CompleteCommit,
    /// PrepareAbort CompleteAbort, and the partitions are forgotten.
    pub fn complete(&self, now_ms: i64) -> Option<TxnMetadata> {
        let state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        let mut next = self.clone();
        next.state = state;
        next.partitions.clear();
        next.start_ms = -1;
        next.last_update_ms = now_ms;
        Some(next)
    }

    /// An ongoing transaction older than its timeout is aborted by the
    /// coordinator, with the epoch bumped so the producer is fenced.
    pub fn abort_if_expired(
        &self,
        now_ms: i64,
        new_producer_id: impl FnOnce() -> Result<i64, TxnError>,
    ) -> Option<TxnMetadata> {
        if self.state != TxnState::Ongoing
            || self.start_ms < 0
            || now_ms < self.start_ms.saturating_add(i64::from(self.timeout_ms))
        {
            return None;
        }
        let mut next = self.bumped(new_producer_id).ok()?;
        next.state = TxnState::PrepareAbort;
        next.last_update_ms = now_ms;
        Some(next)
    }

    /// Whether the marker is a COMMIT (true) or ABORT marker.
    pub fn commits(&self) -> bool {
        self.state == TxnState::PrepareCommit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_new_id() -> Result<i64, TxnError> {
        Err(TxnError::Storage)
    }

    fn ongoing() -> TxnMetadata {
        let m = TxnMetadata::new("t", 7, 1_000, 0);
        m.add_partitions(7, 0, &[("a".into(), 0), ("a".into(), 1)], 5)
            .expect("add")
            .expect("changes")
    }

    #[test]
    fn init_bumps_the_epoch_and_a_retry_of_the_bump_gets_it_back() {
        let m = TxnMetadata::new("t", 7, 1_000, 0);
        let InitStep::Ready(next) = m.init(None, 2_000, 1, no_new_id).expect("init") else {
            panic!("not ready")
        };
        assert_eq!((next.producer_id, next.producer_epoch), (7, 1));
        assert_eq!(next.timeout_ms, 2_000);
        // KIP-360: the producer presents the epoch it has.
        let InitStep::Ready(again) = next.init(Some((7, 1)), 2_000, 2, no_new_id).expect("bump")
        else {
            panic!("not ready")
        };
        assert_eq!(again.producer_epoch, 2);
        assert_eq!(
            again.init(Some((7, 1)), 2_000, 3, no_new_id),
            Ok(InitStep::Unchanged)
        );
        assert_eq!(
            again.init(Some((7, 0)), 2_000, 3, no_new_id),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            again.init(Some((8, 2)), 2_000, 3, no_new_id),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn exhausted_epoch_takes_a_new_producer_id() {
        let mut m = TxnMetadata::new("t", 7, 1_000, 0);
        m.producer_epoch = i16::MAX - 1;
        let InitStep::Ready(next) = m.init(None, 1_000, 1, || Ok(99)).expect("init") else {
            panic!("not ready")
        };
        assert_eq!((next.producer_id, next.producer_epoch), (99, 0));
    }

    #[test]
    fn init_over_an_open_transaction_aborts_it_with_a_fencing_epoch() {
        let m = ongoing();
        let InitStep::AbortFirst(abort) = m.init(None, 1_000, 9, no_new_id).expect("init") else {
            panic!("no abort")
        };
        assert_eq!(abort.state, TxnState::PrepareAbort);
        assert_eq!(abort.producer_epoch, 1);
        assert_eq!(abort.partitions.len(), 2);
        assert!(!abort.commits());
        // While the markers are written, everything waits.
        assert_eq!(
            abort.init(None, 1_000, 9, no_new_id),
            Err(TxnError::ConcurrentTransactions)
        );
        // The old instance is fenced.
        assert_eq!(
            abort.add_partitions(7, 0, &[("b".into(), 0)], 9),
            Err(TxnError::ProducerFenced)
        );
        let done = abort.complete(10).expect("completes");
        assert_eq!(done.state, TxnState::CompleteAbort);
        assert!(done.partitions.is_empty());
        assert!(matches!(
            done.init(None, 1_000, 11, no_new_id),
            Ok(InitStep::Ready(m)) if m.producer_epoch == 2
        ));
    }

    #[test]
    fn add_partitions_starts_and_extends_the_transaction() {
        let m = ongoing();
        assert_eq!(m.state, TxnState::Ongoing);
        assert_eq!(m.start_ms, 5);
        assert_eq!(m.add_partitions(7, 0, &[("a".into(), 1)], 6), Ok(None));
        let more = m
            .add_partitions(7, 0, &[("b".into(), 0)], 6)
            .expect("add")
            .expect("changes");
        assert_eq!(more.partitions.len(), 3);
        assert_eq!(more.start_ms, 5);
        assert_eq!(
            m.add_partitions(8, 0, &[("b".into(), 0)], 6),
            Err(TxnError::InvalidProducerIdMapping)
        );
    }

    #[test]
    fn end_prepares_then_completes_and_retries_are_answered() {
        let m = ongoing();
        let EndStep::Prepare(prepared) = m.end(7, 0, true, false, 8, no_new_id).expect("end")
        else {
            panic!("no prepare")
        };
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        assert!(prepared.commits());
        assert_eq!(
            prepared.end(7, 0, true, false, 8, no_new_id),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            prepared.add_partitions(7, 0, &[("a".into(), 0)], 8),
            Err(TxnError::ConcurrentTransactions)
        );
        let done = prepared.complete(9).expect("complete");
        assert_eq!(done.state, TxnState::CompleteCommit);
        assert_eq!(
            done.end(7, 0, true, false, 10, no_new_id),
            Ok(EndStep::AlreadyDone)
        );
        assert_eq!(
            done.end(7, 0, false, false, 10, no_new_id),
            Err(TxnError::InvalidTxnState)
        );
        // The next transaction starts from CompleteCommit.
        let next = done
            .add_partitions(7, 0, &[("c".into(), 0)], 11)
            .expect("add")
            .expect("changes");
        assert_eq!(next.partitions.len(), 1);
        assert_eq!(next.start_ms, 11);
    }

    #[test]
    fn verify_accepts_only_partitions_of_the_ongoing_transaction() {
        let m = ongoing();
        assert_eq!(m.verify(7, 0, &("a".into(), 0)), Ok(()));
        assert_eq!(
            m.verify(7, 0, &("b".into(), 0)),
            Err(TxnError::InvalidTxnState)
        );
        assert_eq!(
            m.verify(7, 1, &("a".into(), 0)),
            Err(TxnError::InvalidProducerEpoch)
        );
        let EndStep::Prepare(p) = m.end(7, 0, false, false, 6, no_new_id).expect("end") else {
            panic!()
        };
        assert_eq!(
            p.verify(7, 0, &("a".into(), 0)),
            Err(TxnError::InvalidTxnState)
        );
    }

    #[test]
    fn expired_transaction_is_aborted_with_the_epoch_bumped() {
        let m = ongoing();
        assert_eq!(m.abort_if_expired(1_004, no_new_id), None);
        let abort = m.abort_if_expired(1_005, no_new_id).expect("expired");
        assert_eq!(abort.state, TxnState::PrepareAbort);
        assert_eq!(abort.producer_epoch, 1);
        assert_eq!(
            m.end(7, 0, true, false, 1_006, no_new_id).map(|_| ()),
            Ok(())
        );
        assert_eq!(
            abort.end(7, 0, true, false, 1_006, no_new_id),
            Err(TxnError::ProducerFenced)
        );
        let idle = TxnMetadata::new("t", 7, 1, 0);
        assert_eq!(idle.abort_if_expired(i64::MAX, no_new_id), None);
    }

    #[test]
    fn end_with_bump_raises_the_epoch_and_a_retry_gets_the_new_one() {
        let m = ongoing();
        let EndStep::Prepare(prepared) = m.end(7, 0, true, true, 8, no_new_id).expect("end") else {
            panic!("no prepare")
        };
        assert_eq!((prepared.producer_id, prepared.producer_epoch), (7, 1));
        assert_eq!(prepared.state, TxnState::PrepareCommit);
        // The client did not hear the answer and sends it again, old epoch.
        assert_eq!(
            prepared.end(7, 0, true, true, 9, no_new_id),
            Err(TxnError::ConcurrentTransactions)
        );
        let done = prepared.complete(10).expect("complete");
        assert_eq!(
            done.end(7, 0, true, true, 11, no_new_id),
            Ok(EndStep::AlreadyDone)
        );
        // A retry that asks the other outcome, or an older epoch, is fenced.
        assert_eq!(
            done.end(7, 0, false, true, 11, no_new_id),
            Err(TxnError::ProducerFenced)
        );
        // Nothing of the old epoch joins the next transaction.
        assert_eq!(
            done.add_partitions(7, 0, &[("a".into(), 0)], 12),
            Err(TxnError::ProducerFenced)
        );
        let next = done
            .add_partitions(7, 1, &[("a".into(), 0)], 12)
            .expect("add")
            .expect("changes");
        assert_eq!(
            next.verify(7, 0, &("a".into(), 0)),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(next.verify(7, 1, &("a".into(), 0)), Ok(()));
    }

    #[test]
    fn end_with_bump_takes_a_new_producer_id_when_the_epoch_is_exhausted() {
        let mut m = ongoing();
        m.producer_epoch = i16::MAX - 1;
        let EndStep::Prepare(prepared) = m
            .end(7, i16::MAX - 1, false, true, 8, || Ok(99))
            .expect("end")
        else {
            panic!("no prepare")
        };
        assert_eq!((prepared.producer_id, prepared.producer_epoch), (99, 0));
        let done = prepared.complete(9).expect("complete");
        assert_eq!(
            done.end(7, i16::MAX - 1, false, true, 10, no_new_id),
            Ok(EndStep::AlreadyDone)
        );
        assert_eq!(
            done.init(Some((7, i16::MAX - 1)), 1_000, 11, no_new_id),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn state_names_and_codes_round_trip() {
        for code in 0..=7 {
            let s = TxnState::from_code(code).expect("known");
            assert_eq!(s.code(), code);
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::from_code(8), None);
    }
}
