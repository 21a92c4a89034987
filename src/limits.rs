//! Process and connection limits: the descriptor limit (raised to its hard
//! limit at start, and the listeners' caps fitted under it) and the
//! connection quotas of a listener (Kafka's `ConnectionQuotas`: a cap on
//! connections in all, a cap per client address with overrides).
//!
//! Both listeners (the Kafka wire server and the HTTP server) hold one
//! `ConnectionQuotas` each; a connection's `ConnectionPermit` lives as long
//! as its socket. Must never: read or write a socket itself.
//!
//! Lock order: `ConnectionQuotas::per_ip`, then nothing; `RateLimitedLog`'s
//! lock is taken alone.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{NodeConfig, PerIpOverrides};

/// Descriptors kept out of the connection budget: standard streams, the
/// listeners, sled's files, the Raft and cluster sockets, the shop's own
/// Kafka connections, epoll and event descriptors.
const RESERVED_DESCRIPTORS: u64 = 128;
/// The smallest cap `fit_to_descriptors` lowers a limit to.
const MIN_FITTED: usize = 16;
/// How often a refused or waiting connection is logged at most.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The descriptor limit (`RLIMIT_NOFILE`) before and after raising it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DescriptorLimit {
    /// The soft limit the process was started with.
    pub started_with: u64,
    /// The soft limit now (the hard limit when raising worked).
    pub soft: u64,
    /// The hard limit (the most the soft limit may be raised to).
    pub hard: u64,
}

/// Raise the soft descriptor limit to the hard limit, so the caps of the
/// listeners, not a small inherited default, decide how many sockets the
/// process may hold.
pub(crate) fn raise_descriptor_limit() -> std::io::Result<DescriptorLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid, exclusive pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let started_with = limit.rlim_cur;
    // An unlimited hard limit still stops at the kernel's per-process
    // ceiling (`fs.nr_open`).
    let target = match limit.rlim_max {
        libc::RLIM_INFINITY => std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(1 << 20),
        max => max,
    };
    if limit.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = target;
        }
    }
    Ok(DescriptorLimit {
        started_with,
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// Raise the descriptor limit, log it, and lower the listeners' caps and the
/// log's open-file bound when together they would need more descriptors than
/// the limit allows: a flood of connections then waits for a slot instead of
/// taking the last descriptor from the other listener and the log.
pub(crate) fn apply_descriptor_limit(config: &mut NodeConfig) {
    let limit = match raise_descriptor_limit() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit (RLIMIT_NOFILE)");
            return;
        }
    };
    tracing::info!(
        started_with = limit.started_with,
        soft = limit.soft,
        hard = limit.hard,
        "descriptor limit (RLIMIT_NOFILE)"
    );
    let wanted = [
        config.max_connections,
        config.http_max_connections,
        config.log_open_files,
    ];
    let fitted = fit_to_descriptors(limit.soft, wanted);
    if fitted != wanted {
        tracing::warn!(
            descriptors = limit.soft,
            max_connections = %format!("{} -> {}", wanted[0], fitted[0]),
            http_max_connections = %format!("{} -> {}", wanted[1], fitted[1]),
            log_open_files = %format!("{} -> {}", wanted[2], fitted[2]),
            "the descriptor limit cannot hold every cap; lowered them in proportion"
        );
        [
            config.max_connections,
            config.http_max_connections,
            config.log_open_files,
        ] = fitted;
    }
}

/// Caps that fit under `descriptors` (less `RESERVED_DESCRIPTORS`): unchanged
/// when their sum fits, else each lowered in proportion (to at least
/// `MIN_FITTED`, or itself when smaller).
pub(crate) fn fit_to_descriptors<const N: usize>(descriptors: u64, caps: [usize; N]) -> [usize; N] {
    let budget = descriptors.saturating_sub(RESERVED_DESCRIPTORS);
    let sum: u64 = caps.iter().map(|&c| c as u64).sum();
    if sum <= budget {
        return caps;
    }
    caps.map(|cap| {
        let share = (cap as u128 * budget as u128 / sum as u128) as usize;
        share.max(MIN_FITTED.min(cap))
    })
}

/// Logs an event at most once per `REPORT_EVERY`, with how many happened
/// since the last line, so a flood of refused connections cannot flood the log.
struct RateLimitedLog {
    /// When the last line was written, and events since then.
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedLog {
    fn new() -> Self {
        RateLimitedLog {
            state: Mutex::new((None, 0)),
        }
    }

    /// Count one event; `Some(count)` when a line is due (count includes this one).
    fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        match state.0 {
            Some(at) if at.elapsed() < REPORT_EVERY => None,
            _ => {
                let count = state.1;
                *state = (Some(Instant::now()), 0);
                Some(count)
            }
        }
    }
}

/// The connection quotas of one listener: at most `max_total` connections,
/// at most `max_per_ip` (or the address's override) from one client address.
pub(crate) struct ConnectionQuotas {
    /// The listener's name in log lines (`kafka`, `http`).
    listener: &'static str,
    /// One permit per open connection.
    total: Arc<Semaphore>,
    /// The total cap (for log lines).
    max_total: usize,
    /// The cap per address without an override (a dynamic broker config
    /// may change it while the listener runs).
    max_per_ip: AtomicUsize,
    /// Per-address caps that replace `max_per_ip`.
    overrides: HashMap<IpAddr, usize>,
    /// Open connections per client address (addresses with none are removed).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Connections refused for their address's cap.
    refused_log: RateLimitedLog,
    /// Waits for a free slot under `max_total`.
    full_log: RateLimitedLog,
}

/// A slot under the listener's total cap, taken before accepting.
pub(crate) struct ConnectionSlot(OwnedSemaphorePermit);

/// An admitted connection: its slot and its count against its address,
/// both given back when it is dropped (with the socket it travels with).
pub(crate) struct ConnectionPermit {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
    _slot: OwnedSemaphorePermit,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut per_ip = self.quotas.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnectionQuotas {
    /// Quotas for `listener`. Override hosts are resolved now; one that does
    /// not resolve is logged and skipped.
    pub(crate) fn new(
        listener: &'static str,
        max_total: usize,
        max_per_ip: usize,
        overrides: &PerIpOverrides,
    ) -> Arc<Self> {
        let mut resolved = HashMap::new();
        for (host, max) in &overrides.0 {
            match resolve(host) {
                Ok(ips) => resolved.extend(ips.into_iter().map(|ip| (ip, *max))),
                Err(e) => tracing::warn!(
                    listener,
                    host,
                    error = %e,
                    "cannot resolve a host of --max-connections-per-ip-overrides; skipped"
                ),
            }
        }
        let max_total = max_total.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(ConnectionQuotas {
            listener,
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            max_per_ip: AtomicUsize::new(max_per_ip),
            overrides: resolved,
            per_ip: Mutex::new(HashMap::new()),
            refused_log: RateLimitedLog::new(),
            full_log: RateLimitedLog::new(),
        })
    }

    /// The cap on connections from `ip`.
    pub(crate) fn limit_for(&self, ip: IpAddr) -> usize {
        self.overrides
            .get(&ip.to_canonical())
            .copied()
            .unwrap_or_else(|| self.max_per_ip.load(Ordering::Relaxed))
    }

    /// Change the cap per address without an override; connections
    /// already open stay.
    pub(crate) fn set_max_per_ip(&self, max: usize) {
        self.max_per_ip.store(max, Ordering::Relaxed);
    }

    /// Wait for a slot under the total cap (None: the quotas are closed).
    /// While the listener is full, new connections wait in the kernel's
    /// accept queue, holding no descriptor of this process.
    pub(crate) async fn slot(&self) -> Option<ConnectionSlot> {
        if let Ok(permit) = self.total.clone().try_acquire_owned() {
            return Some(ConnectionSlot(permit));
        }
        if let Some(waits) = self.full_log.due() {
            tracing::warn!(
                listener = self.listener,
                max = self.max_total,
                waits,
                "listener at its connection cap; new connections wait (logged every 10 s at most)"
            );
        }
        self.total
            .clone()
            .acquire_owned()
            .await
            .ok()
            .map(ConnectionSlot)
    }

    /// Admit a connection accepted from `ip` in `slot`, or refuse it (None,
    /// logged at most every 10 s) when its address has its cap already.
    pub(crate) fn admit(
        self: &Arc<Self>,
        slot: ConnectionSlot,
        ip: IpAddr,
    ) -> Option<ConnectionPermit> {
        let ip = ip.to_canonical();
        let limit = self.limit_for(ip);
        {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let count = per_ip.entry(ip).or_insert(0);
            if *count < limit {
                *count += 1;
                return Some(ConnectionPermit {
                    quotas: self.clone(),
                    ip,
                    _slot: slot.0,
                });
            }
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
        if let Some(refused) = self.refused_log.due() {
            tracing::warn!(
                listener = self.listener,
                %ip,
                limit,
                refused,
                "connection refused: the address has its maximum number of connections \
                 (logged every 10 s at most)"
            );
        }
        None
    }

    /// Open connections from `ip`.
    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> usize {
        let per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

/// The addresses of `host` (an IP literal or a name).
fn resolve(host: &str) -> std::io::Result<Vec<IpAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip.to_canonical()]);
    }
    Ok((host, 0)
        .to_socket_addrs()?
        .map(|a| a.ip().to_canonical())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn localhost() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn caps_that_fit_are_kept() {
        assert_eq!(
            fit_to_descriptors(100_000, [4096, 1024, 1024]),
            [4096, 1024, 1024]
        );
    }

    #[test]
    fn caps_over_the_limit_are_lowered_in_proportion() {
        let fitted = fit_to_descriptors(1024, [4096, 1024, 1024]);
        assert!(fitted.iter().sum::<usize>() as u64 <= 1024 - RESERVED_DESCRIPTORS);
        assert_eq!(fitted, [597, 149, 149]);
        assert_eq!(fit_to_descriptors(130, [4096, 8]), [16, 8]);
    }

    #[tokio::test]
    async fn an_address_over_its_cap_is_refused_and_its_slot_freed() {
        let quotas = ConnectionQuotas::new("test", 10, 2, &PerIpOverrides::default());
        let a = quotas.admit(quotas.slot().await.unwrap(), localhost());
        let b = quotas.admit(quotas.slot().await.unwrap(), localhost());
        assert!(a.is_some() && b.is_some());
        assert!(quotas
            .admit(quotas.slot().await.unwrap(), localhost())
            .is_none());
        // The refused connection's slot went back: 8 free of 10.
        assert_eq!(quotas.total.available_permits(), 8);
        drop(a);
        assert_eq!(quotas.open_from(localhost()), 1);
        assert!(quotas
            .admit(quotas.slot().await.unwrap(), localhost())
            .is_some());
        let other = IpAddr::from([10, 0, 0, 1]);
        assert!(quotas.admit(quotas.slot().await.unwrap(), other).is_some());
    }

    #[tokio::test]
    async fn an_override_replaces_the_cap_of_its_address() {
        let overrides: PerIpOverrides = "127.0.0.1:3,10.0.0.9:0".parse().unwrap();
        let quotas = ConnectionQuotas::new("test", 10, 1, &overrides);
        assert_eq!(quotas.limit_for(localhost()), 3);
        assert_eq!(quotas.limit_for("::ffff:127.0.0.1".parse().unwrap()), 3);
        assert_eq!(quotas.limit_for(IpAddr::from([10, 0, 0, 9])), 0);
        assert_eq!(quotas.limit_for(IpAddr::from([10, 0, 0, 8])), 1);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(quotas.admit(quotas.slot().await.unwrap(), localhost()));
        }
        assert!(held.iter().all(Option::is_some));
        assert!(quotas
            .admit(quotas.slot().await.unwrap(), localhost())
            .is_none());
    }

    #[test]
    fn overrides_parse_host_count_pairs() {
        let parsed: PerIpOverrides = " 127.0.0.1:3, [::1]:4,localhost:0 ".parse().unwrap();
        let expected = [("127.0.0.1", 3), ("::1", 4), ("localhost", 0)];
        let expected: Vec<(String, usize)> =
            expected.iter().map(|(h, c)| (h.to_string(), *c)).collect();
        assert_eq!(parsed.0, expected);
        assert_eq!("".parse::<PerIpOverrides>().unwrap().0, vec![]);
        for bad in ["127.0.0.1", "127.0.0.1:x", ":3", "127.0.0.1:-1"] {
            assert!(bad.parse::<PerIpOverrides>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn a_refusal_is_logged_once_per_period() {
        let log = RateLimitedLog::new();
        assert_eq!(log.due(), Some(1));
        assert_eq!(log.due(), None);
        assert_eq!(log.due(), None);
        *log.state.lock().unwrap() = (Some(Instant::now() - REPORT_EVERY), 2);
        assert_eq!(log.due(), Some(3));
    }
}
