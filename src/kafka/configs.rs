//! The dynamic config resources of DescribeConfigs, AlterConfigs and
//! IncrementalAlterConfigs: GROUP (type 32: a group's configs, described
//! with Kafka's defaults even before the group exists) and the dynamic
//! side of BROKER (one broker by id, or the cluster-wide default with an
//! empty name). A change is one `SecurityChange::Config` through
//! `Partitions::change_security`, so a cluster commits it through the
//! controller and every node answers alike; the names, bounds and checks
//! are `security::configs`'.
//!
//! Must never: hold the security snapshot across an await.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;

use super::{code, errors, str_bytes};
use crate::partition::Partitions;
use crate::security::configs::{
    self, BrokerValueSource, ConfigChange, ConfigTarget, DynamicConfigDef, ValueKind,
    DYNAMIC_BROKER_CONFIGS, GROUP_CONFIGS, GROUP_CONFIG_BOUNDS,
};
use crate::security::SecurityChange;

/// Kafka's GROUP config resource type.
pub const RESOURCE_GROUP: i8 = 32;
/// Kafka's config sources.
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const SOURCE_GROUP: i8 = 8;
/// Kafka's config types.
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;

/// The answer to one resource of an alter request.
pub type AlterOutcome = Result<(), (i16, String)>;

fn kind_code(kind: ValueKind) -> i8 {
    match kind {
        ValueKind::Int => TYPE_INT,
        ValueKind::String => TYPE_STRING,
    }
}

fn entry(
    def: &DynamicConfigDef,
    value: String,
    source: i8,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(def.name.to_string());
    e.value = Some(str_bytes(value));
    e.read_only = false;
    e.config_source = source;
    e.config_type = kind_code(def.kind);
    e.documentation = documentation.then(|| str_bytes(def.doc.to_string()));
    e
}

/// A group's configs: each of Kafka's group configs, set (GROUP_CONFIG) or
/// at its default (DEFAULT_CONFIG); a group need not exist.
pub fn describe_group(
    layer: &Partitions,
    group_id: &str,
    wanted: impl Fn(&str) -> bool,
    documentation: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let state = layer.broker().security.current();
    let set = state
        .configs
        .set_for(&ConfigTarget::Group(group_id.to_string()));
    GROUP_CONFIGS
        .iter()
        .filter(|d| wanted(d.name))
        .map(|d| match set.get(d.name) {
            Some(v) => entry(d, v.clone(), SOURCE_GROUP, documentation),
            None => entry(d, d.default.to_string(), SOURCE_DEFAULT, documentation),
        })
        .collect()
}

/// The dynamic broker configs of this node (`flag`: the value its flags
/// give a config): its own value (DYNAMIC_BROKER_CONFIG), else the
/// cluster-wide default (DYNAMIC_DEFAULT_BROKER_CONFIG), else the flag;
/// and the group config bounds, read-only at Kafka's defaults.
pub fn describe_this_broker(
    layer: &Partitions,
    wanted: impl Fn(&str) -> bool,
    flag: impl Fn(&str) -> String,
) -> Vec<DescribeConfigsResourceResult> {
    let broker = layer.broker();
    let state = broker.security.current();
    let mut out: Vec<_> = DYNAMIC_BROKER_CONFIGS
        .iter()
        .filter(|d| wanted(d.name))
        .map(
            |d| match state.configs.broker_value(broker.node_id(), d.name) {
                Some((v, BrokerValueSource::PerBroker)) => {
                    entry(d, v.to_string(), SOURCE_DYNAMIC_BROKER, false)
                }
                Some((v, BrokerValueSource::ClusterDefault)) => {
                    entry(d, v.to_string(), SOURCE_DYNAMIC_DEFAULT_BROKER, false)
                }
                None => entry(d, flag(d.name), SOURCE_STATIC_BROKER, false),
            },
        )
        .collect();
    out.extend(
        GROUP_CONFIG_BOUNDS
            .iter()
            .filter(|(n, _)| wanted(n))
            .map(|(n, v)| {
                let mut e = DescribeConfigsResourceResult::default();
                e.name = str_bytes(n.to_string());
                e.value = Some(str_bytes(v.to_string()));
                e.read_only = true;
                e.config_source = SOURCE_DEFAULT;
                e.config_type = TYPE_INT;
                e
            }),
    );
    out
}

/// The cluster-wide default broker configs that are set (Kafka describes
/// only those for the empty broker name).
pub fn describe_broker_default(
    layer: &Partitions,
    wanted: impl Fn(&str) -> bool,
) -> Vec<DescribeConfigsResourceResult> {
    let state = layer.broker().security.current();
    let set = state.configs.set_for(&ConfigTarget::Broker(None));
    set.iter()
        .filter(|(n, _)| wanted(n))
        .filter_map(|(n, v)| {
            configs::dynamic_broker_config(n)
                .map(|d| entry(d, v.clone(), SOURCE_DYNAMIC_DEFAULT_BROKER, false))
        })
        .collect()
}

/// The target of an alter on a broker resource: "" is the cluster-wide
/// default, else a broker id this cluster knows.
pub fn broker_target(layer: &Partitions, name: &str) -> Result<ConfigTarget, (i16, String)> {
    if name.is_empty() {
        return Ok(ConfigTarget::Broker(None));
    }
    let unknown = || (code::RESOURCE_NOT_FOUND, format!("unknown broker {name}"));
    let id: i32 = name.parse().map_err(|_| unknown())?;
    let known = id == layer.broker().node_id()
        || layer
            .replica_manager()
            .is_some_and(|rm| rm.image().brokers.contains_key(&id));
    if known {
        Ok(ConfigTarget::Broker(Some(id)))
    } else {
        Err(unknown())
    }
}

/// Refuse broker configs that cannot change at run time: a config this
/// node reports (set by its flags) with INVALID_REQUEST, as Kafka does, and
/// an unknown name with INVALID_CONFIG.
fn check_broker_names<'a>(
    names: impl Iterator<Item = &'a str>,
    read_only: &[&str],
) -> Result<(), (i16, String)> {
    for name in names {
        if configs::dynamic_broker_config(name).is_some() {
            continue;
        }
        let bound = GROUP_CONFIG_BOUNDS.iter().any(|(n, _)| *n == name);
        if bound || read_only.contains(&name) {
            return Err((
                code::INVALID_REQUEST,
                format!("Cannot update these configs dynamically: {name}"),
            ));
        }
        return Err((
            code::INVALID_CONFIG,
            format!("unknown broker config {name}"),
        ));
    }
    Ok(())
}

/// AlterConfigs: check and commit `configs` as the whole new set of
/// `target` (nothing committed with `validate_only`).
pub async fn alter(
    layer: &Partitions,
    target: ConfigTarget,
    configs: BTreeMap<String, String>,
    validate_only: bool,
    read_only: &[&str],
) -> AlterOutcome {
    if let ConfigTarget::Broker(_) = target {
        check_broker_names(configs.keys().map(String::as_str), read_only)?;
    }
    configs::validate(&target, &configs).map_err(|e| (code::INVALID_CONFIG, e))?;
    if validate_only {
        return Ok(());
    }
    layer
        .change_security(SecurityChange::Config(ConfigChange { target, configs }))
        .await
        .map(|_| ())
        .map_err(|e| match e {
            crate::broker::SecurityError::Rejected(r) => (code::INVALID_CONFIG, r.to_string()),
            other => errors::security_error(&other),
        })
}

/// IncrementalAlterConfigs: SET and DELETE on the target's current set
/// (none of these configs is a list, so APPEND and SUBTRACT are refused).
pub async fn alter_incremental(
    layer: &Partitions,
    target: ConfigTarget,
    ops: &[AlterableConfig],
    validate_only: bool,
    read_only: &[&str],
) -> AlterOutcome {
    let mut set = layer.broker().security.current().configs.set_for(&target);
    for op in ops {
        let name = op.name.to_string();
        match op.config_operation {
            0 => {
                let value = op.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                set.insert(name, value);
            }
            1 => {
                set.remove(&name);
            }
            2 | 3 => {
                return Err((code::INVALID_CONFIG, format!("{name} is not a list")));
            }
            other => {
                return Err((
                    code::INVALID_CONFIG,
                    format!("unknown config operation {other}"),
                ))
            }
        }
    }
    alter(layer, target, set, validate_only, read_only).await
}

/// This node's `max.connections.per.ip`: its dynamic value (its own, else
/// the cluster-wide default), else its flag.
pub fn max_connections_per_ip(broker: &crate::broker::Broker) -> usize {
    broker
        .security
        .current()
        .configs
        .broker_value(broker.node_id(), "max.connections.per.ip")
        .and_then(|(v, _)| v.parse::<usize>().ok())
        .unwrap_or(broker.config.max_connections_per_ip)
}
