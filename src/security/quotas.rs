//! Client quotas (byte rates) by user and client id, in Kafka's model: a
//! quota is set on an entity (a user, a client id, or both; each part a
//! name or the default), the most specific entity that has a quota for a
//! key decides it (Kafka's precedence), and usage is measured per node over
//! a window per (user, client id) of that entity. Over the quota, a request
//! gets a throttle time (Kafka's formula: (rate - quota) / quota * window).
//!
//! Must never: do I/O or sleep (the wire layer delays the response).
//! Locks: `QuotaMeters::meters`, held only to update one meter.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Kafka's quota key for produced bytes per second.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Kafka's quota key for fetched bytes per second.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// The keys this broker stores and enforces.
pub const KEYS: [&str; 2] = [PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE];

/// Kafka's entity types.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";

/// One part of an entity: a name, or the default of its type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    /// Kafka's wire form: `None` is the default.
    pub fn from_wire(name: Option<&str>) -> Self {
        match name {
            None => EntityName::Default,
            Some(n) => EntityName::Named(n.to_owned()),
        }
    }

    pub fn to_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }
}

/// What a quota applies to: a user, a client id, or a user's client id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

/// Every stored quota: entity -> key -> value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quotas {
    /// serde_json keys must be strings, so the map is kept as pairs.
    #[serde(default)]
    pub entries: Vec<(QuotaEntity, BTreeMap<String, f64>)>,
}

/// Keys of one entity to set (`Some`) or remove (`None`).
pub type QuotaOps = Vec<(String, Option<f64>)>;

/// A change to the quotas: per entity, keys to set or remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QuotaChange {
    Alter(Vec<(QuotaEntity, QuotaOps)>),
}

/// Why an alteration of one entity is refused.
pub fn invalid(entity: &QuotaEntity, ops: &[(String, Option<f64>)]) -> Option<String> {
    if entity.user.is_none() && entity.client_id.is_none() {
        return Some("the entity names neither a user nor a client id".into());
    }
    for (key, value) in ops {
        if !KEYS.contains(&key.as_str()) {
            return Some(format!("unsupported quota key {key} (supported: {KEYS:?})"));
        }
        if value.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            return Some(format!("quota {key} must be a positive number"));
        }
    }
    None
}

impl Quotas {
    pub(super) fn apply(&mut self, change: &QuotaChange) -> Result<(), String> {
        let QuotaChange::Alter(alterations) = change;
        if let Some(why) = alterations.iter().find_map(|(e, ops)| invalid(e, ops)) {
            return Err(why);
        }
        for (entity, ops) in alterations {
            let pos = match self.entries.iter().position(|(e, _)| e == entity) {
                Some(p) => p,
                None => {
                    self.entries.push((entity.clone(), BTreeMap::new()));
                    self.entries.len() - 1
                }
            };
            let values = &mut self.entries[pos].1;
            for (key, value) in ops {
                match value {
                    Some(v) => values.insert(key.clone(), *v),
                    None => values.remove(key),
                };
            }
            if values.is_empty() {
                self.entries.remove(pos);
            }
        }
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(())
    }

    fn get(&self, entity: &QuotaEntity, key: &str) -> Option<f64> {
        self.entries
            .iter()
            .find(|(e, _)| e == entity)
            .and_then(|(_, v)| v.get(key).copied())
    }

    /// The quota on `key` for a client, and the entity whose usage it is
    /// measured by (names filled in), by Kafka's precedence: user and
    /// client id, user and default client, user, default user and client
    /// id, default user and default client, default user, client id,
    /// default client.
    pub fn resolve(&self, user: &str, client_id: &str, key: &str) -> Option<(f64, QuotaEntity)> {
        use EntityName::{Default as D, Named};
        let u = || Named(user.to_owned());
        let c = || Named(client_id.to_owned());
        let candidates = [
            (Some(u()), Some(c())),
            (Some(u()), Some(D)),
            (Some(u()), None),
            (Some(D), Some(c())),
            (Some(D), Some(D)),
            (Some(D), None),
            (None, Some(c())),
            (None, Some(D)),
        ];
        candidates.into_iter().find_map(|(user_part, client_part)| {
            let entity = QuotaEntity {
                user: user_part,
                client_id: client_part,
            };
            let quota = self.get(&entity, key)?;
            // Usage is shared by everyone the entity names.
            let measured = QuotaEntity {
                user: entity.user.as_ref().map(|_| u()),
                client_id: entity.client_id.as_ref().map(|_| c()),
            };
            Some((quota, measured))
        })
    }
}

/// How long Kafka measures a rate over (quota.window.num * quota.window.size.seconds).
const SAMPLE: Duration = Duration::from_secs(1);
const SAMPLES: usize = 11;

/// Bytes per one-second sample, over the last `SAMPLES` seconds.
#[derive(Debug, Default)]
struct Meter {
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    /// Record `bytes` at `now`; the rate over the window in bytes/s and the
    /// length of the window it was measured over.
    fn record(&mut self, now: Instant, bytes: u64) -> (f64, Duration) {
        match self.samples.back_mut() {
            Some((start, total)) if now.duration_since(*start) < SAMPLE => *total += bytes,
            _ => self.samples.push_back((now, bytes)),
        }
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
        let first = self.samples.front().map_or(now, |(s, _)| *s);
        // Kafka counts the window as at least (samples - 1) whole samples
        // plus the current one's elapsed part; a fresh meter is one sample.
        let window = now.duration_since(first).max(SAMPLE);
        let total: u64 = self.samples.iter().map(|(_, b)| b).sum();
        (total as f64 / window.as_secs_f64(), window)
    }
}

/// This node's byte meters per (key, measured entity).
#[derive(Debug, Default)]
pub struct QuotaMeters {
    meters: Mutex<HashMap<(&'static str, QuotaEntity), Meter>>,
}

impl QuotaMeters {
    /// Record `bytes` for a client against the quota on `key` (if any) and
    /// return how long to throttle it (zero under the quota).
    pub fn record(
        &self,
        quotas: &Quotas,
        key: &'static str,
        user: &str,
        client_id: &str,
        bytes: u64,
    ) -> Duration {
        let Some((quota, entity)) = quotas.resolve(user, client_id, key) else {
            return Duration::ZERO;
        };
        let mut meters = self.meters.lock().unwrap_or_else(|e| e.into_inner());
        if meters.len() > 100_000 {
            // Bounded memory: forget every meter (a burst may pass once).
            meters.clear();
        }
        let (rate, window) = meters
            .entry((key, entity))
            .or_default()
            .record(Instant::now(), bytes);
        throttle_time(rate, quota, window)
    }
}

/// Kafka's throttle time: how long the client must wait for its rate over
/// `window` to fall to `quota`.
pub fn throttle_time(rate: f64, quota: f64, window: Duration) -> Duration {
    if rate <= quota || quota <= 0.0 {
        return Duration::ZERO;
    }
    let secs = (rate - quota) / quota * window.as_secs_f64();
    Duration::from_secs_f64(secs.min(30.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(user: Option<Option<&str>>, client: Option<Option<&str>>) -> QuotaEntity {
        QuotaEntity {
            user: user.map(EntityName::from_wire),
            client_id: client.map(EntityName::from_wire),
        }
    }

    fn set(q: &mut Quotas, e: QuotaEntity, v: f64) {
        q.apply(&QuotaChange::Alter(vec![(
            e,
            vec![(PRODUCER_BYTE_RATE.into(), Some(v))],
        )]))
        .unwrap();
    }

    #[test]
    fn the_most_specific_entity_decides() {
        let mut q = Quotas::default();
        set(&mut q, entity(None, Some(None)), 1.0);
        assert_eq!(q.resolve("a", "c", PRODUCER_BYTE_RATE).unwrap().0, 1.0);
        set(&mut q, entity(None, Some(Some("c"))), 2.0);
        assert_eq!(q.resolve("a", "c", PRODUCER_BYTE_RATE).unwrap().0, 2.0);
        set(&mut q, entity(Some(None), None), 3.0);
        assert_eq!(q.resolve("a", "c", PRODUCER_BYTE_RATE).unwrap().0, 3.0);
        set(&mut q, entity(Some(Some("a")), None), 4.0);
        let (v, measured) = q.resolve("a", "c", PRODUCER_BYTE_RATE).unwrap();
        assert_eq!(v, 4.0);
        assert_eq!(measured, entity(Some(Some("a")), None));
        set(&mut q, entity(Some(Some("a")), Some(Some("c"))), 5.0);
        assert_eq!(q.resolve("a", "c", PRODUCER_BYTE_RATE).unwrap().0, 5.0);
        assert_eq!(q.resolve("b", "x", PRODUCER_BYTE_RATE).unwrap().0, 3.0);
        assert!(q.resolve("a", "c", CONSUMER_BYTE_RATE).is_none());
    }

    #[test]
    fn removing_the_last_key_removes_the_entity_and_bad_values_are_refused() {
        let mut q = Quotas::default();
        let e = entity(None, Some(Some("c")));
        set(&mut q, e.clone(), 10.0);
        q.apply(&QuotaChange::Alter(vec![(
            e.clone(),
            vec![(PRODUCER_BYTE_RATE.into(), None)],
        )]))
        .unwrap();
        assert!(q.entries.is_empty());
        let bad = QuotaChange::Alter(vec![(e.clone(), vec![("request_rate".into(), Some(1.0))])]);
        assert!(q.apply(&bad).is_err());
        let bad = QuotaChange::Alter(vec![(e, vec![(PRODUCER_BYTE_RATE.into(), Some(-1.0))])]);
        assert!(q.apply(&bad).is_err());
    }

    #[test]
    fn over_the_quota_the_throttle_brings_the_rate_back() {
        assert_eq!(throttle_time(50.0, 100.0, SAMPLE), Duration::ZERO);
        // Twice the quota over one second: wait one more second.
        assert_eq!(throttle_time(200.0, 100.0, SAMPLE), Duration::from_secs(1));
        let mut q = Quotas::default();
        set(&mut q, entity(None, Some(None)), 1000.0);
        let meters = QuotaMeters::default();
        assert!(meters
            .record(&q, PRODUCER_BYTE_RATE, "u", "c", 500)
            .is_zero());
        assert!(!meters
            .record(&q, PRODUCER_BYTE_RATE, "u", "c", 5000)
            .is_zero());
        // Another client id has its own meter.
        assert!(meters
            .record(&q, PRODUCER_BYTE_RATE, "u", "d", 500)
            .is_zero());
    }
}
