//! Dynamic configs, replicated with the rest of the node's metadata: the
//! configs of consumer and share groups (Kafka's GROUP config resource),
//! which exist before the group does, and the dynamic broker configs, per
//! broker id and as the cluster-wide default (Kafka's BROKER resource with
//! an id or an empty name).
//!
//! Owns the names, defaults and bounds of the group configs (Kafka 4's
//! `GroupConfig`, with the bounds of its `group.consumer.*` and
//! `group.share.*` broker defaults), which broker configs may change at
//! run time, and the validation of a resource's new set.
//!
//! Must never: do I/O, know the wire format. Locks: none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The kind of a config's value (the wire layer names Kafka's type code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Int,
    String,
}

/// One dynamic config a client may set.
#[derive(Debug, Clone, Copy)]
pub struct DynamicConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ValueKind,
    /// Inclusive bounds of an integer value (Kafka's broker-side min/max).
    pub bounds: Option<(i64, i64)>,
    /// Allowed values of a string (empty: any).
    pub allowed: &'static [&'static str],
    pub doc: &'static str,
}

/// Kafka 4's group configs with its defaults; an integer must lie within
/// the broker's bounds (`group.consumer.min.session.timeout.ms` ..
/// `group.consumer.max.session.timeout.ms` and the like, at Kafka's
/// defaults: Sluice has no flags for them).
pub const GROUP_CONFIGS: &[DynamicConfigDef] = &[
    DynamicConfigDef {
        name: "consumer.session.timeout.ms",
        default: "45000",
        kind: ValueKind::Int,
        bounds: Some((45_000, 60_000)),
        allowed: &[],
        doc: "The timeout to detect client failures when using the consumer group protocol.",
    },
    DynamicConfigDef {
        name: "consumer.heartbeat.interval.ms",
        default: "5000",
        kind: ValueKind::Int,
        bounds: Some((5_000, 15_000)),
        allowed: &[],
        doc: "The heartbeat interval given to the members of a consumer group.",
    },
    DynamicConfigDef {
        name: "share.session.timeout.ms",
        default: "45000",
        kind: ValueKind::Int,
        bounds: Some((45_000, 60_000)),
        allowed: &[],
        doc: "The timeout to detect client failures when using the share group protocol.",
    },
    DynamicConfigDef {
        name: "share.heartbeat.interval.ms",
        default: "5000",
        kind: ValueKind::Int,
        bounds: Some((5_000, 15_000)),
        allowed: &[],
        doc: "The heartbeat interval given to the members of a share group.",
    },
    DynamicConfigDef {
        name: "share.record.lock.duration.ms",
        default: "30000",
        kind: ValueKind::Int,
        bounds: Some((15_000, 60_000)),
        allowed: &[],
        doc: "The record acquisition lock duration of a share group.",
    },
    DynamicConfigDef {
        name: "share.auto.offset.reset",
        default: "latest",
        kind: ValueKind::String,
        bounds: None,
        allowed: &["latest", "earliest"],
        doc: "The strategy to initialize the share-partition start offset.",
    },
];

/// The broker bounds of the group configs, reported as read-only broker
/// configs: (name, value).
pub const GROUP_CONFIG_BOUNDS: &[(&str, &str)] = &[
    ("group.consumer.min.session.timeout.ms", "45000"),
    ("group.consumer.max.session.timeout.ms", "60000"),
    ("group.consumer.min.heartbeat.interval.ms", "5000"),
    ("group.consumer.max.heartbeat.interval.ms", "15000"),
    ("group.share.min.session.timeout.ms", "45000"),
    ("group.share.max.session.timeout.ms", "60000"),
    ("group.share.min.heartbeat.interval.ms", "5000"),
    ("group.share.max.heartbeat.interval.ms", "15000"),
    ("group.share.min.record.lock.duration.ms", "15000"),
    ("group.share.max.record.lock.duration.ms", "60000"),
];

/// The broker configs a client may change at run time (per broker and as
/// the cluster-wide default), as Kafka allows; each is applied live. The
/// default is the node's flag, so it is not given here.
pub const DYNAMIC_BROKER_CONFIGS: &[DynamicConfigDef] = &[DynamicConfigDef {
    name: "max.connections.per.ip",
    default: "",
    kind: ValueKind::Int,
    bounds: Some((0, i32::MAX as i64)),
    allowed: &[],
    doc: "The most connections from one address on each Kafka listener (new connections).",
}];

/// A group config by name.
pub fn group_config(name: &str) -> Option<&'static DynamicConfigDef> {
    GROUP_CONFIGS.iter().find(|d| d.name == name)
}

/// A dynamic broker config by name.
pub fn dynamic_broker_config(name: &str) -> Option<&'static DynamicConfigDef> {
    DYNAMIC_BROKER_CONFIGS.iter().find(|d| d.name == name)
}

/// Whose configs a change replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigTarget {
    /// A group, by id (it need not exist).
    Group(String),
    /// One broker (`Some(id)`) or the cluster-wide default (`None`).
    Broker(Option<i32>),
}

/// Replace the set of configs of one target (an empty set removes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    pub target: ConfigTarget,
    pub configs: BTreeMap<String, String>,
}

/// The dynamic configs that are set (unset ones take their default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamicConfigs {
    /// Group configs by group id.
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeMap<String, String>>,
    /// Broker configs by broker id; the key `default` is the cluster-wide
    /// default.
    #[serde(default)]
    pub brokers: BTreeMap<String, BTreeMap<String, String>>,
}

/// The key of the cluster-wide default among the broker entries.
const DEFAULT_BROKER_KEY: &str = "default";

fn broker_key(id: Option<i32>) -> String {
    id.map_or_else(|| DEFAULT_BROKER_KEY.to_string(), |id| id.to_string())
}

/// Where a broker config's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerValueSource {
    /// Set for this broker.
    PerBroker,
    /// Set as the cluster-wide default.
    ClusterDefault,
}

impl DynamicConfigs {
    /// Apply a change after checking it (see `validate`).
    pub fn apply(&mut self, change: &ConfigChange) -> Result<(), String> {
        validate(&change.target, &change.configs)?;
        let entries = match &change.target {
            ConfigTarget::Group(id) => (&mut self.groups, id.clone()),
            ConfigTarget::Broker(id) => (&mut self.brokers, broker_key(*id)),
        };
        let (map, key) = entries;
        if change.configs.is_empty() {
            map.remove(&key);
        } else {
            map.insert(key, change.configs.clone());
        }
        Ok(())
    }

    /// The configs set for `target`.
    pub fn set_for(&self, target: &ConfigTarget) -> BTreeMap<String, String> {
        match target {
            ConfigTarget::Group(id) => self.groups.get(id),
            ConfigTarget::Broker(id) => self.brokers.get(&broker_key(*id)),
        }
        .cloned()
        .unwrap_or_default()
    }

    /// The dynamic value of broker config `name` for broker `id`: its own,
    /// else the cluster-wide default.
    pub fn broker_value(&self, id: i32, name: &str) -> Option<(&str, BrokerValueSource)> {
        let own = self
            .brokers
            .get(&id.to_string())
            .and_then(|c| c.get(name))
            .map(|v| (v.as_str(), BrokerValueSource::PerBroker));
        own.or_else(|| {
            self.brokers
                .get(DEFAULT_BROKER_KEY)
                .and_then(|c| c.get(name))
                .map(|v| (v.as_str(), BrokerValueSource::ClusterDefault))
        })
    }
}

/// Check one value against its definition.
fn check_value(def: &DynamicConfigDef, value: &str) -> Result<(), String> {
    match def.kind {
        ValueKind::Int => {
            let n: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("invalid value {value} for {}: not an integer", def.name))?;
            if let Some((min, max)) = def.bounds {
                if n < min {
                    return Err(format!("{} must be at least {min}", def.name));
                }
                if n > max {
                    return Err(format!("{} must be at most {max}", def.name));
                }
            }
        }
        ValueKind::String => {
            if !def.allowed.is_empty() && !def.allowed.contains(&value) {
                return Err(format!(
                    "invalid value {value} for {}: one of {}",
                    def.name,
                    def.allowed.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Check a target's whole new set: known names, values within bounds, and
/// for groups a session timeout above the heartbeat interval (Kafka's
/// `GroupConfig.validate`).
pub fn validate(target: &ConfigTarget, configs: &BTreeMap<String, String>) -> Result<(), String> {
    let lookup = match target {
        ConfigTarget::Group(_) => group_config,
        ConfigTarget::Broker(_) => dynamic_broker_config,
    };
    for (name, value) in configs {
        let def = lookup(name).ok_or_else(|| match target {
            ConfigTarget::Group(_) => format!("unknown group config name: {name}"),
            ConfigTarget::Broker(_) => format!("{name} cannot be updated dynamically"),
        })?;
        check_value(def, value)?;
    }
    if let ConfigTarget::Group(_) = target {
        let effective = |name: &str| -> i64 {
            configs
                .get(name)
                .map(String::as_str)
                .or_else(|| group_config(name).map(|d| d.default))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        for kind in ["consumer", "share"] {
            let session = format!("{kind}.session.timeout.ms");
            let heartbeat = format!("{kind}.heartbeat.interval.ms");
            if effective(&session) <= effective(&heartbeat) {
                return Err(format!("{session} must be greater than {heartbeat}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn group_configs_are_checked_against_the_broker_bounds() {
        let g = ConfigTarget::Group("g".into());
        assert!(validate(&g, &set(&[("consumer.session.timeout.ms", "50000")])).is_ok());
        assert!(validate(&g, &set(&[("consumer.session.timeout.ms", "1000")])).is_err());
        assert!(validate(&g, &set(&[("consumer.session.timeout.ms", "60001")])).is_err());
        assert!(validate(&g, &set(&[("consumer.heartbeat.interval.ms", "x")])).is_err());
        assert!(validate(&g, &set(&[("share.auto.offset.reset", "earliest")])).is_ok());
        assert!(validate(&g, &set(&[("share.auto.offset.reset", "never")])).is_err());
        assert!(validate(&g, &set(&[("no.such.config", "1")])).is_err());
    }

    #[test]
    fn broker_values_prefer_the_broker_over_the_cluster_default() {
        let mut c = DynamicConfigs::default();
        let name = "max.connections.per.ip";
        c.apply(&ConfigChange {
            target: ConfigTarget::Broker(None),
            configs: set(&[(name, "10")]),
        })
        .unwrap();
        assert_eq!(
            c.broker_value(1, name),
            Some(("10", BrokerValueSource::ClusterDefault))
        );
        c.apply(&ConfigChange {
            target: ConfigTarget::Broker(Some(1)),
            configs: set(&[(name, "5")]),
        })
        .unwrap();
        assert_eq!(
            c.broker_value(1, name),
            Some(("5", BrokerValueSource::PerBroker))
        );
        assert_eq!(
            c.broker_value(2, name),
            Some(("10", BrokerValueSource::ClusterDefault))
        );
        assert!(c
            .apply(&ConfigChange {
                target: ConfigTarget::Broker(Some(1)),
                configs: set(&[("broker.id", "7")]),
            })
            .is_err());
        c.apply(&ConfigChange {
            target: ConfigTarget::Broker(Some(1)),
            configs: BTreeMap::new(),
        })
        .unwrap();
        assert_eq!(
            c.broker_value(1, name),
            Some(("10", BrokerValueSource::ClusterDefault))
        );
    }
}
