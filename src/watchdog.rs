//! A stall detector for the async runtime. A plain thread wakes every
//! [`PERIOD`], spawns an empty task onto the runtime and waits for it to run:
//! the wait is how long a ready task waits for a worker thread. A wait over
//! [`STALL`] means some task held its worker without yielding (or the
//! machine gave the process no CPU) and is logged with its length, so a
//! freeze shows in the log with the time it happened. The longest wait seen
//! is kept for the node's views.
//!
//! Must never: take a lock the runtime's tasks take, or block the runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the runtime is probed.
pub const PERIOD: Duration = Duration::from_millis(100);
/// A probe that waited longer than this is logged.
pub const STALL: Duration = Duration::from_millis(100);

/// What the detector has seen; shared with its thread.
#[derive(Debug, Default)]
pub struct Stalls {
    /// Probes that waited longer than [`STALL`].
    pub count: AtomicU64,
    /// The longest wait of any probe, in microseconds.
    pub longest_us: AtomicU64,
}

/// Start the detector for the runtime of `handle`. The thread ends when the
/// runtime is gone (a probe can no longer be spawned).
pub fn start(handle: tokio::runtime::Handle) -> std::io::Result<Arc<Stalls>> {
    let stalls = Arc::new(Stalls::default());
    let seen = Arc::clone(&stalls);
    std::thread::Builder::new()
        .name("sluice-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(PERIOD);
            let (tx, rx) = mpsc::channel::<()>();
            let sent = Instant::now();
            let Ok(task) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handle.spawn(async move {
                    let _ = tx.send(());
                })
            })) else {
                return;
            };
            let outcome = rx.recv_timeout(Duration::from_secs(30));
            let waited = sent.elapsed();
            seen.longest_us
                .fetch_max(waited.as_micros() as u64, Ordering::Relaxed);
            match outcome {
                Ok(()) if waited <= STALL => {}
                Ok(()) => {
                    seen.count.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        waited_ms = waited.as_millis() as u64,
                        "runtime stalled: a ready task waited for a worker thread"
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    seen.count.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("runtime stalled for 30 s: no worker thread ran a ready task");
                    task.abort();
                }
                // The runtime shut down and dropped the task.
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        })?;
    Ok(stalls)
}
