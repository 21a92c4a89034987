//! The delivery side of the producer: the one-shot outcome of a batch
//! (`BatchCompletion`), shared by the [`Delivery`] future of each of its
//! records, which resolves to where the record was written
//! ([`RecordMetadata`]).
//!
//! Must never: import the accumulator or the sender; they complete batches
//! through `BatchCompletion::complete`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::time::Instant;

use crate::client::error::ClientError;

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition it went to.
    pub partition: i32,
    /// Its offset, or -1 when unknown (acks=0).
    pub offset: i64,
    /// The broker's log append time, or -1 when the topic uses create time.
    pub log_append_time_ms: i64,
    /// When the acknowledgement was received (for latency measurements).
    pub acknowledged_at: Instant,
}

/// What a completed batch resolved to.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchAck {
    pub(super) base_offset: i64,
    pub(super) log_append_time_ms: i64,
    pub(super) acknowledged_at: Instant,
}

/// The one-shot outcome of a batch, shared by the [`Delivery`] of each of its records.
#[derive(Debug, Default)]
pub(super) struct BatchCompletion {
    state: Mutex<CompletionState>,
}

#[derive(Debug, Default)]
struct CompletionState {
    result: Option<Result<BatchAck, ClientError>>,
    /// Deliveries waiting for the result.
    wakers: Vec<Waker>,
}

impl BatchCompletion {
    /// Resolve every delivery of the batch (the first outcome wins).
    pub(super) fn complete(&self, result: Result<BatchAck, ClientError>) {
        let wakers = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.result.is_some() {
                return;
            }
            state.result = Some(result);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// A future resolving to where one record was written, once its batch is
/// acknowledged. Dropping it does not cancel the record.
#[derive(Debug)]
pub struct Delivery {
    completion: Arc<BatchCompletion>,
    partition: i32,
    /// The record's position in its batch.
    pub(super) index: u32,
    /// Slot of our waker in the completion's list, once registered.
    waker_slot: Option<usize>,
}

impl Delivery {
    /// The delivery of record `index` of a batch bound for `partition`.
    pub(super) fn new(completion: Arc<BatchCompletion>, partition: i32, index: u32) -> Self {
        Delivery {
            completion,
            partition,
            index,
            waker_slot: None,
        }
    }

    /// The partition the record was assigned to (known before the acknowledgement).
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The outcome if the batch is already complete.
    pub fn try_result(&self) -> Option<Result<RecordMetadata, ClientError>> {
        let state = self
            .completion
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state.result.as_ref().map(|r| self.metadata(r))
    }

    fn metadata(
        &self,
        result: &Result<BatchAck, ClientError>,
    ) -> Result<RecordMetadata, ClientError> {
        result
            .as_ref()
            .map_err(Clone::clone)
            .map(|ack| RecordMetadata {
                partition: self.partition,
                offset: if ack.base_offset >= 0 {
                    ack.base_offset + i64::from(self.index)
                } else {
                    -1
                },
                log_append_time_ms: ack.log_append_time_ms,
                acknowledged_at: ack.acknowledged_at,
            })
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut state = this
            .completion
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(result) = state.result.as_ref() {
            return Poll::Ready(this.metadata(result));
        }
        match this.waker_slot {
            Some(slot) if slot < state.wakers.len() => {
                if !state.wakers[slot].will_wake(cx.waker()) {
                    state.wakers[slot] = cx.waker().clone();
                }
            }
            _ => {
                this.waker_slot = Some(state.wakers.len());
                state.wakers.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}
