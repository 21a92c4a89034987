//! How far the live read model has come: the next offset to apply of every
//! topic-partition, and the highest offset this node produced to each, so a
//! command can wait until the model holds this node's previous writes
//! (read-your-writes).
//!
//! Must never: import anything of the shop; it only counts offsets.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Offsets the projector has applied and this node has produced.
#[derive(Default)]
pub(crate) struct Progress {
    /// Next offset to apply, per topic-partition, in the live model.
    applied: Mutex<HashMap<(String, i32), i64>>,
    /// Highest offset this node produced, per topic-partition.
    produced: Mutex<HashMap<(String, i32), i64>>,
    /// Signalled whenever `applied` moves.
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Progress {
    /// The next offset of a partition the model needs, if it has seen it.
    pub(crate) fn applied_at(&self, topic: &str, partition: i32) -> Option<i64> {
        lock(&self.applied)
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    /// Record that the model now holds everything before `next` of a partition.
    pub(crate) fn set_applied(&self, topic: &str, partition: i32, next: i64) {
        lock(&self.applied).insert((topic.to_owned(), partition), next);
    }

    /// Replace every applied offset (after a swap of models).
    pub(crate) fn reset_applied(&self, offsets: HashMap<(String, i32), i64>) {
        *lock(&self.applied) = offsets;
        self.changed.notify_waiters();
    }

    /// Raise the applied offsets to `stored` where it is ahead (what other
    /// nodes applied to a shared model); true if any moved.
    pub(crate) fn merge_applied(&self, stored: &HashMap<(String, i32), i64>) -> bool {
        let mut moved = false;
        {
            let mut applied = lock(&self.applied);
            for (tp, next) in stored {
                let entry = applied.entry(tp.clone()).or_insert(0);
                if *next > *entry {
                    *entry = *next;
                    moved = true;
                }
            }
        }
        if moved {
            self.changed.notify_waiters();
        }
        moved
    }

    /// Resolves at the next move of the model. Take it before looking at
    /// the model, then wait on it: a move in between is not missed.
    pub(crate) fn next_move(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Wake commands waiting for the projector.
    pub(crate) fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Every applied offset.
    pub(crate) fn applied(&self) -> HashMap<(String, i32), i64> {
        lock(&self.applied).clone()
    }

    /// Record that this node produced `offset` to a partition.
    pub(crate) fn note_produced(&self, topic: &str, partition: i32, offset: i64) {
        let mut produced = lock(&self.produced);
        let entry = produced.entry((topic.to_owned(), partition)).or_insert(-1);
        *entry = (*entry).max(offset);
    }

    /// Produced offsets of these partitions not yet applied.
    fn pending(&self, partitions: &[(&str, i32)]) -> bool {
        let produced = lock(&self.produced);
        let applied = lock(&self.applied);
        partitions.iter().any(|(t, p)| {
            let key = ((*t).to_owned(), *p);
            produced
                .get(&key)
                .is_some_and(|&o| applied.get(&key).copied().unwrap_or(0) <= o)
        })
    }

    /// Wait until every offset this node produced to `partitions` is applied;
    /// false if `deadline` passes first.
    pub(crate) async fn wait_for_produced(
        &self,
        partitions: &[(&str, i32)],
        deadline: Instant,
    ) -> bool {
        loop {
            let changed = self.changed.notified();
            if !self.pending(partitions) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }
}
