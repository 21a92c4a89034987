//! The process' own figures, as Prometheus' client libraries name them:
//! resident memory, CPU seconds, open and maximum descriptors, start time,
//! read from `/proc/self` at scrape time (Linux; elsewhere nothing is
//! written).
//!
//! Must never: fail a scrape because a `/proc` file is missing or odd (that
//! figure is left out). Locks: none.

use prometheus_client::encoding::DescriptorEncoder;

use super::{counters, gauge, Fmt, Labels};

/// The fields of `/proc/self/stat` this file reads.
struct Stat {
    /// User and system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// When the process started, in clock ticks after boot.
    start_ticks: u64,
    /// Virtual memory size, in bytes.
    vsize: u64,
    /// Resident set size, in pages.
    rss_pages: u64,
}

/// Parse `/proc/self/stat` (the fields after the command's closing paren).
fn stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &text[text.rfind(')')? + 1..];
    // Fields from 3 (state) on; utime is field 14, stime 15, starttime 22,
    // vsize 23, rss 24 (proc(5)).
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// Seconds since the epoch at which the machine booted (`btime`).
fn boot_time() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit on open descriptors (`Max open files` in `/proc/self/limits`).
fn max_fds() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Write the process' figures.
pub(super) fn encode(encoder: &mut DescriptorEncoder) -> Fmt {
    // SAFETY: sysconf only reads configuration values.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (ticks, page) = (ticks.max(1) as f64, page.max(1) as u64);
    if let Some(s) = stat() {
        counters(
            encoder,
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds.",
            [(Labels::new(), s.cpu_ticks as f64 / ticks)],
        )?;
        gauge(
            encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            s.rss_pages * page,
        )?;
        gauge(
            encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            s.vsize,
        )?;
        if let Some(boot) = boot_time() {
            gauge(
                encoder,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                boot as f64 + s.start_ticks as f64 / ticks,
            )?;
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            encoder,
            "process_open_fds",
            "Open file descriptors.",
            dir.count() as u64,
        )?;
    }
    if let Some(max) = max_fds() {
        gauge(
            encoder,
            "process_max_fds",
            "The limit on open file descriptors.",
            max,
        )?;
    }
    Ok(())
}
