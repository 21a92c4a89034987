//! The node's request budget (Kafka's `queued.max.request.bytes`): how many
//! bytes of requests may be in memory at once, read or decoded but not yet
//! handled. A connection charges a request's frame before reading it and,
//! before decoding it, what decoding and handling it will take (the
//! pre-scan's estimate of its decoded size, three times over); when the
//! budget is spent, further reads wait instead of allocating. The charge is
//! returned when the handler has produced the response (the request's memory
//! is freed then). A single request larger than the budget is refused.
//!
//! Frames and decoded requests draw from two pools of the same size, so
//! what requests are charged stays below twice the budget. Two pools keep it free of
//! deadlock: a connection holds its frame's charge while it waits for the
//! decoded one, but only requests fully charged hold the decoded pool, and
//! they return it when handled, never waiting for another charge.
//!
//! Must never: let one connection wait for a charge that cannot be met.
//! Locks: none (tokio semaphores, acquired in FIFO order).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{self, RequestPool};

/// A decoded request is charged this many times its estimated size: its
/// handler builds structures of like shape (for Produce, the partition
/// layer's records per topic and the response), measured at up to 2.4 times
/// the decoded size in all (docs/BENCHMARKS.md, "Request memory").
const HANDLING_FACTOR: usize = 3;

/// A request larger than the whole budget.
#[derive(Debug, thiserror::Error)]
#[error("{what} of {bytes} bytes is larger than the request budget of {capacity} bytes (--queued-max-request-bytes)")]
pub struct TooLarge {
    pub what: &'static str,
    pub bytes: usize,
    pub capacity: usize,
}

/// The budget of one node, shared by its connections.
#[derive(Debug)]
pub struct RequestBudget {
    /// Bytes of request frames being read or waiting to be handled.
    frames: Arc<Semaphore>,
    /// Estimated bytes of decoded requests not yet handled.
    decoded: Arc<Semaphore>,
    /// The size of each pool, and so the largest single charge.
    capacity: usize,
}

/// What one request holds of the budget; dropping it gives it back.
#[derive(Debug)]
pub struct Charge {
    frame: OwnedSemaphorePermit,
    decoded: Option<OwnedSemaphorePermit>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let m = metrics::global();
        m.request_memory(RequestPool::Frames, -(self.frame.num_permits() as i64));
        if let Some(decoded) = &self.decoded {
            m.request_memory(RequestPool::Decoded, -(decoded.num_permits() as i64));
        }
    }
}

impl RequestBudget {
    pub fn new(bytes: usize) -> Self {
        // Each charge is one semaphore acquisition, counted in u32.
        let capacity = bytes.clamp(1, u32::MAX as usize);
        RequestBudget {
            frames: Arc::new(Semaphore::new(capacity)),
            decoded: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// The largest decoded size one request may have.
    pub fn largest_decoded(&self) -> usize {
        self.capacity / HANDLING_FACTOR
    }

    /// Wait until a frame of `bytes` may be read.
    pub async fn charge_frame(&self, bytes: usize) -> Result<Charge, TooLarge> {
        let frame = acquire(&self.frames, bytes, self.capacity, "a request frame").await?;
        metrics::global().request_memory(RequestPool::Frames, bytes as i64);
        Ok(Charge {
            frame,
            decoded: None,
        })
    }

    /// Wait until a request whose frame is charged may be decoded into
    /// `bytes` and handled.
    pub async fn charge_decoded(&self, charge: &mut Charge, bytes: usize) -> Result<(), TooLarge> {
        let handled = bytes.saturating_mul(HANDLING_FACTOR);
        let decoded = acquire(&self.decoded, handled, self.capacity, "handling a request").await?;
        let m = metrics::global();
        m.request_memory(RequestPool::Decoded, handled as i64);
        if let Some(earlier) = charge.decoded.replace(decoded) {
            m.request_memory(RequestPool::Decoded, -(earlier.num_permits() as i64));
        }
        Ok(())
    }

    /// Bytes of frames and of decoded requests charged now.
    #[cfg(test)]
    pub fn in_use(&self) -> (usize, usize) {
        (
            self.capacity - self.frames.available_permits(),
            self.capacity - self.decoded.available_permits(),
        )
    }
}

async fn acquire(
    pool: &Arc<Semaphore>,
    bytes: usize,
    capacity: usize,
    what: &'static str,
) -> Result<OwnedSemaphorePermit, TooLarge> {
    let too_large = TooLarge {
        what,
        bytes,
        capacity,
    };
    if bytes > capacity {
        return Err(too_large);
    }
    // The pools are never closed; `bytes` fits in u32 since capacity does.
    pool.clone()
        .acquire_many_owned(bytes as u32)
        .await
        .map_err(|_| too_large)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn a_request_larger_than_the_budget_is_refused_at_once() {
        let budget = RequestBudget::new(1000);
        assert!(budget.charge_frame(1001).await.is_err());
        let mut charge = budget.charge_frame(1000).await.expect("fits");
        assert_eq!(budget.largest_decoded(), 333);
        assert!(budget.charge_decoded(&mut charge, 334).await.is_err());
        budget.charge_decoded(&mut charge, 333).await.expect("fits");
        assert_eq!(budget.in_use(), (1000, 999));
    }

    #[tokio::test]
    async fn a_spent_budget_makes_the_next_read_wait_until_a_request_is_handled() {
        let budget = RequestBudget::new(1000);
        let first = budget.charge_frame(600).await.expect("fits");
        let second = budget.charge_frame(600);
        tokio::pin!(second);
        assert!(
            (&mut second).now_or_never().is_none(),
            "the second frame did not wait"
        );
        drop(first);
        let second = second.now_or_never().expect("released").expect("fits");
        assert_eq!(budget.in_use(), (600, 0));
        drop(second);
        assert_eq!(budget.in_use(), (0, 0));
    }

    #[tokio::test]
    async fn frames_waiting_for_their_decoded_charge_cannot_deadlock() {
        // Both frames are in memory and their decoded charges together exceed
        // a pool: with one shared pool neither could proceed; with two, each
        // decoded charge is met in turn.
        let budget = RequestBudget::new(1000);
        let mut a = budget.charge_frame(500).await.expect("fits");
        let mut b = budget.charge_frame(500).await.expect("fits");
        budget.charge_decoded(&mut a, 300).await.expect("fits");
        {
            let waiting = budget.charge_decoded(&mut b, 300);
            tokio::pin!(waiting);
            assert!((&mut waiting).now_or_never().is_none());
            drop(a);
            waiting.now_or_never().expect("released").expect("fits");
        }
        assert_eq!(budget.in_use(), (500, 900));
        drop(b);
        assert_eq!(budget.in_use(), (0, 0));
    }
}
