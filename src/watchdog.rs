//! A stall detector for the async runtime. A plain thread wakes every
//! [`PERIOD`], spawns an empty task onto the runtime and waits for it to run:
//! the wait is how long a ready task waits for a worker thread. A wait over
//! [`STALL`] means some task held its worker without yielding (or the
//! machine gave the process no CPU) and is logged with its length, so a
//! freeze shows in the log with the time it happened.
//!
//! Must never: take a lock the runtime's tasks take, or block the runtime.

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often the runtime is probed.
pub const PERIOD: Duration = Duration::from_millis(100);
/// A probe that waited longer than this is logged.
pub const STALL: Duration = Duration::from_millis(100);

/// Start the detector for the runtime of `handle`. The thread ends when the
/// runtime is gone (a probe is dropped without running).
pub fn start(handle: tokio::runtime::Handle) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sluice-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(PERIOD);
            let (tx, rx) = mpsc::channel::<()>();
            let sent = Instant::now();
            // On a runtime that has shut down the task is dropped at once,
            // and with it the sender: the loop below ends.
            let task = handle.spawn(async move {
                let _ = tx.send(());
            });
            let outcome = rx.recv_timeout(Duration::from_secs(30));
            let waited = sent.elapsed();
            match outcome {
                Ok(()) if waited <= STALL => {}
                Ok(()) => {
                    tracing::warn!(
                        waited_ms = waited.as_millis() as u64,
                        "runtime stalled: a ready task waited for a worker thread"
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::error!("runtime stalled for 30 s: no worker thread ran a ready task");
                    task.abort();
                }
                // The runtime shut down and dropped the task.
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        })?;
    Ok(())
}
