//! Auto-creation of unknown topics named by Metadata and Produce requests
//! (Kafka's `auto.create.topics.enable`), within limits: at most
//! `--auto-create-topics-per-request` topics per request, and per client
//! address a token bucket of `--auto-create-topics-burst` topics refilled at
//! `--auto-create-topics-per-second`. A topic past either limit is not
//! created and the request gets UNKNOWN_TOPIC_OR_PARTITION for it.
//!
//! The key is the client's IP address, not its client id: the client id is
//! whatever the client writes in each request header, so a flooding client
//! could take a fresh budget with every request; the address is the one
//! identity the broker sees for itself (as Kafka's `max.connections.per.ip`).
//! Clients behind one address share its budget. CreateTopics, the group
//! coordinator's `__consumer_offsets` and the shop's topics (created with
//! CreateTopics) never go through here.
//!
//! Must never: know the wire format. Locks: the limiter's own sharded map,
//! held only inside one check.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::{Partitions, Replication};
use crate::broker::{Topic, TopicError};
use crate::config::NodeConfig;

/// Clients tracked before idle ones (whose bucket is full again) are dropped.
const PRUNE_ABOVE: usize = 4096;

type ClientLimiter<C> =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The per-client limit of this node: one token bucket per client address.
pub struct AutoCreateLimits<C: Clock = DefaultClock> {
    /// None when `--auto-create-topics-per-second` is 0 (no limit per client).
    per_client: Option<ClientLimiter<C>>,
    /// Prune idle clients once the table grows past this (doubles with a
    /// table of busy clients, so pruning stays rare).
    prune_at: AtomicUsize,
}

impl AutoCreateLimits {
    /// The limits `config` asks for.
    pub fn from_config(config: &NodeConfig) -> Self {
        Self::with_clock(
            config.auto_create_topics_per_second,
            config.auto_create_topics_burst,
            DefaultClock::default(),
        )
    }
}

impl<C: Clock> AutoCreateLimits<C> {
    /// `per_second` topics per second per client (0: no limit), up to
    /// `burst` at once, timed by `clock`.
    fn with_clock(per_second: u32, burst: u32, clock: C) -> Self {
        let per_client = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::new(
                Quota::per_second(rate).allow_burst(burst),
                DefaultKeyedStateStore::default(),
                clock,
            )
        });
        AutoCreateLimits {
            per_client,
            prune_at: AtomicUsize::new(PRUNE_ABOVE),
        }
    }

    /// Take one topic from `client`'s bucket; false when it is empty.
    pub fn admit(&self, client: IpAddr) -> bool {
        let Some(limiter) = &self.per_client else {
            return true;
        };
        let admitted = limiter.check_key(&client).is_ok();
        if limiter.len() > self.prune_at.load(Ordering::Relaxed) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            self.prune_at
                .store(PRUNE_ABOVE.max(2 * limiter.len()), Ordering::Relaxed);
        }
        admitted
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.per_client.as_ref().map_or(0, |l| l.len())
    }
}

/// One request's allowance: who sent it, and how many topics it may still
/// auto-create.
pub struct AutoCreate {
    client: IpAddr,
    left: usize,
}

impl Partitions {
    /// The auto-creation allowance of a request from `client`.
    pub fn auto_create_allowance(&self, client: IpAddr) -> AutoCreate {
        AutoCreate {
            client,
            left: self.broker.config.auto_create_topics_per_request,
        }
    }

    /// The topic; an unknown one is created with the defaults when
    /// auto-creation is on and both the request's allowance and its
    /// client's bucket have room (else `TopicError::Unknown`).
    pub async fn topic_or_auto_create(
        &self,
        name: &str,
        allowance: &mut AutoCreate,
    ) -> Result<Arc<Topic>, TopicError> {
        if let Some(t) = self.broker.topic(name) {
            return Ok(t);
        }
        let unknown = || TopicError::Unknown(name.into());
        if !self.broker.config.auto_create_topics {
            return Err(unknown());
        }
        if let Replication::Cluster(rm) = &self.replication {
            if rm.has_topic(name) {
                // Created, not yet applied on this node: not a creation.
                return Err(unknown());
            }
        }
        if allowance.left == 0 || !self.auto_create.admit(allowance.client) {
            tracing::debug!(topic = name, client = %allowance.client, "auto-creation limit reached");
            return Err(unknown());
        }
        allowance.left -= 1;
        match self
            .create_topic(name, -1, -1, Default::default(), false)
            .await
        {
            Ok(()) | Err(TopicError::AlreadyExists(_)) => {
                self.broker.topic(name).ok_or_else(unknown)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_client_gets_its_burst_then_the_rate() {
        let clock = FakeRelativeClock::default();
        let limits = AutoCreateLimits::with_clock(2, 5, clock.clone());
        let admitted = (0..20).filter(|_| limits.admit(ip(1))).count();
        assert_eq!(admitted, 5, "the burst, nothing more at once");
        // Another address has a bucket of its own.
        assert!(limits.admit(ip(2)));
        clock.advance(Duration::from_millis(500));
        assert!(limits.admit(ip(1)), "one more after 1/rate");
        assert!(!limits.admit(ip(1)));
        clock.advance(Duration::from_secs(10));
        assert_eq!((0..20).filter(|_| limits.admit(ip(1))).count(), 5);
    }

    #[test]
    fn zero_per_second_means_no_limit() {
        let limits = AutoCreateLimits::with_clock(0, 5, FakeRelativeClock::default());
        assert!((0..1000).all(|_| limits.admit(ip(1))));
    }

    #[test]
    fn idle_clients_are_pruned() {
        let clock = FakeRelativeClock::default();
        let limits = AutoCreateLimits::with_clock(10, 10, clock.clone());
        for i in 0..PRUNE_ABOVE as u32 {
            limits.admit(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(limits.tracked(), PRUNE_ABOVE);
        clock.advance(Duration::from_secs(60));
        // The next new client makes the table too large: the full buckets go.
        assert!(limits.admit(IpAddr::from(u32::MAX.to_be_bytes())));
        assert!(
            limits.tracked() < 10,
            "{} clients still tracked",
            limits.tracked()
        );
    }
}
