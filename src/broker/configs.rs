//! Topic configuration: Kafka's names, defaults and types, validation of
//! overrides, and the effective value of each.

use std::collections::BTreeMap;

use crate::log::{LogPolicy, RollPolicy};

/// Kafka's DescribeConfigs config types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// One topic config Kafka clients know.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigType,
    /// Allowed values for enumerations (empty = any value of the type).
    pub allowed: &'static [&'static str],
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

/// The topic configs, with Kafka's defaults.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        default: "delete",
        kind: ConfigType::List,
        allowed: &["delete", "compact", "compact,delete", "delete,compact"],
        doc: "Retention policy for old log segments.",
    },
    ConfigDef {
        name: "compression.type",
        default: "producer",
        kind: ConfigType::String,
        allowed: &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
        doc: "Batches are stored as the producer compressed them.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        default: "86400000",
        kind: ConfigType::Long,
        allowed: &[],
        doc: "How long delete tombstones are kept.",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        default: "60000",
        kind: ConfigType::Long,
        allowed: &[],
        doc: "Delay before deleting data from disk.",
    },
    ConfigDef {
        name: "flush.messages",
        default: LONG_MAX,
        kind: ConfigType::Long,
        allowed: &[],
        doc: "fsync before acknowledging once this many records are unflushed.",
    },
    ConfigDef {
        name: "flush.ms",
        default: LONG_MAX,
        kind: ConfigType::Long,
        allowed: &[],
        doc:
            "fsync appended records at most this old (the node's --flush-interval-ms applies too).",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        default: LONG_MAX,
        kind: ConfigType::Long,
        allowed: &[],
        doc: "Maximum time a message stays uncompacted.",
    },
    ConfigDef {
        name: "max.message.bytes",
        default: "1048588",
        kind: ConfigType::Int,
        allowed: &[],
        doc: "Largest record batch size allowed.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        default: "CreateTime",
        kind: ConfigType::String,
        allowed: &["CreateTime", "LogAppendTime"],
        doc: "Whether the timestamp is the producer's or the broker's.",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        default: LONG_MAX,
        kind: ConfigType::Long,
        allowed: &[],
        doc: "Allowed age of a record timestamp.",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        default: LONG_MAX,
        kind: ConfigType::Long,
        allowed: &[],
        doc: "Allowed lead of a record timestamp.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        default: "0.5",
        kind: ConfigType::Double,
        allowed: &[],
        doc: "Dirty ratio that makes a log eligible for compaction.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        default: "0",
        kind: ConfigType::Long,
        allowed: &[],
        doc: "Minimum time a message stays uncompacted.",
    },
    ConfigDef {
        name: "min.insync.replicas",
        default: "1",
        kind: ConfigType::Int,
        allowed: &[],
        doc: "Replicas that must acknowledge an acks=all write.",
    },
    ConfigDef {
        name: "preallocate",
        default: "false",
        kind: ConfigType::Boolean,
        allowed: &[],
        doc: "Accepted for compatibility.",
    },
    ConfigDef {
        name: "retention.bytes",
        default: "-1",
        kind: ConfigType::Long,
        allowed: &[],
        doc: "Maximum size of a partition before old batches are deleted (-1: no limit).",
    },
    ConfigDef {
        name: "retention.ms",
        default: "604800000",
        kind: ConfigType::Long,
        allowed: &[],
        doc: "How long batches are kept (-1: forever).",
    },
    ConfigDef {
        name: "segment.bytes",
        default: "1073741824",
        kind: ConfigType::Int,
        allowed: &[],
        doc: "Size at which the active segment file is closed and a new one started.",
    },
    ConfigDef {
        name: "segment.ms",
        default: "604800000",
        kind: ConfigType::Long,
        allowed: &[],
        doc: "Age at which the active segment file is closed and a new one started.",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        default: "false",
        kind: ConfigType::Boolean,
        allowed: &[],
        doc: "Whether an out-of-sync replica may become leader.",
    },
];

/// Find a config definition by name.
pub fn definition(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Check that `value` is valid for config `name`; the error says why not.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = definition(name).ok_or_else(|| format!("unknown topic config {name}"))?;
    let ok = match def.kind {
        ConfigType::Boolean => value == "true" || value == "false",
        ConfigType::Int => value.parse::<i32>().is_ok(),
        ConfigType::Long => value.parse::<i64>().is_ok(),
        ConfigType::Double => value.parse::<f64>().is_ok(),
        ConfigType::String | ConfigType::List => true,
    };
    if !ok {
        return Err(format!("invalid value {value:?} for {name}"));
    }
    if !def.allowed.is_empty() && !def.allowed.contains(&value) {
        return Err(format!(
            "invalid value {value:?} for {name}; expected one of {:?}",
            def.allowed
        ));
    }
    if name == "max.message.bytes" && value.parse::<i32>().map(|v| v < 0).unwrap_or(true) {
        return Err("max.message.bytes must be at least 0".into());
    }
    Ok(())
}

/// A topic's overrides; everything not overridden takes the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicConfigs {
    pub overrides: BTreeMap<String, String>,
}

impl TopicConfigs {
    /// The effective value of a config.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.overrides
            .get(name)
            .map(String::as_str)
            .or_else(|| definition(name).map(|d| d.default))
    }

    fn get_i64(&self, name: &str) -> i64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(-1)
    }

    pub fn retention_ms(&self) -> i64 {
        self.get_i64("retention.ms")
    }
    pub fn delete_retention_ms(&self) -> i64 {
        self.get_i64("delete.retention.ms")
    }
    pub fn retention_bytes(&self) -> i64 {
        self.get_i64("retention.bytes")
    }
    pub fn max_message_bytes(&self) -> usize {
        self.get_i64("max.message.bytes").max(0) as usize
    }
    pub fn log_append_time(&self) -> bool {
        self.get("message.timestamp.type") == Some("LogAppendTime")
    }
    /// What the partition logs apply themselves: segment rolling and fsync.
    pub fn log_policy(&self) -> LogPolicy {
        let positive = |name: &str, default: i64| match self.get_i64(name) {
            v if v > 0 => v,
            _ => default,
        };
        LogPolicy {
            roll: RollPolicy {
                segment_bytes: positive("segment.bytes", 1 << 30) as u64,
                segment_ms: positive("segment.ms", 604_800_000),
            },
            flush_messages: positive("flush.messages", i64::MAX),
            flush_ms: positive("flush.ms", i64::MAX),
        }
    }
    /// How many in-sync replicas an acks=all write needs (at least 1).
    pub fn min_insync_replicas(&self) -> usize {
        self.get_i64("min.insync.replicas").max(1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas() {
        let c = TopicConfigs::default();
        assert_eq!(c.retention_ms(), 604_800_000);
        assert_eq!(c.max_message_bytes(), 1_048_588);
        assert_eq!(c.get("cleanup.policy"), Some("delete"));
    }

    #[test]
    fn bad_values_and_unknown_names_are_refused() {
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("message.timestamp.type", "Now").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("retention.ms", "1000").is_ok());
    }
}
