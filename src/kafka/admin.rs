//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeCluster.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::configs::{self as dynamic, RESOURCE_GROUP};
use super::{code, str_bytes, topic_error_code};
use crate::broker::configs::{self, ConfigType, TopicConfigs, TOPIC_CONFIGS};
use crate::broker::{Broker, TopicError};
use crate::partition::Partitions;
use crate::security::configs::{dynamic_broker_config, ConfigTarget};

/// Kafka's resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's config sources.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub async fn create_topics(
    layer: &Partitions,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let broker = layer.broker();
    let mut resp = CreateTopicsResponse::default();
    for ct in req.topics {
        let name = ct.name.0.to_string();
        let mut r = CreatableTopicResult::default();
        r.name = ct.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let overrides = values(ct.configs.iter().map(|c| (&c.name, &c.value)));
        let (partitions, rf) = if !ct.assignments.is_empty() {
            let rf = ct
                .assignments
                .iter()
                .map(|a| a.broker_ids.len())
                .max()
                .unwrap_or(1) as i16;
            if ct.num_partitions != -1 || ct.replication_factor != -1 {
                r.error_code = code::INVALID_REQUEST;
                r.error_message = Some(str_bytes(
                    "give either assignments or partition count and replication factor",
                ));
                resp.topics.push(r);
                continue;
            }
            (ct.assignments.len() as i32, rf)
        } else {
            (ct.num_partitions, ct.replication_factor)
        };
        let result = layer
            .create_topic(&name, partitions, rf, overrides.clone(), req.validate_only)
            .await;
        match result {
            Ok(()) => {
                let created = broker.topic(&name).filter(|_| !req.validate_only);
                r.topic_id = created.as_ref().map(|t| t.id).unwrap_or_default();
                r.num_partitions = if partitions == -1 {
                    broker.config.num_partitions
                } else {
                    partitions
                };
                r.replication_factor = match layer.replica_manager() {
                    Some(rm) => rm
                        .image()
                        .topics
                        .get(&name)
                        .and_then(|t| t.partitions.first())
                        .map_or(rf, |p| p.replicas.len() as i16),
                    None => 1,
                };
                let c = created
                    .map(|t| t.configs())
                    .unwrap_or(TopicConfigs { overrides });
                r.configs = (version >= 5).then(|| {
                    TOPIC_CONFIGS
                        .iter()
                        .map(|d| {
                            let mut e = CreatableTopicConfigs::default();
                            e.name = StrBytes::from_static_str(d.name);
                            e.value = c.get(d.name).map(|v| str_bytes(v.to_string()));
                            e.config_source = if c.overrides.contains_key(d.name) {
                                SOURCE_DYNAMIC_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            };
                            e
                        })
                        .collect()
                });
            }
            Err(e) => {
                r.error_code = topic_error_code(&e);
                r.error_message = Some(str_bytes(e.to_string()));
            }
        }
        resp.topics.push(r);
    }
    resp
}

pub async fn delete_topics(layer: &Partitions, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = layer.broker();
    let mut resp = DeleteTopicsResponse::default();
    // v0-5 name the topics in topic_names, v6+ in topics (by name or id).
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    targets.extend(
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
    );
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        let name = name.or_else(|| {
            broker
                .topics()
                .iter()
                .find(|t| t.id == id)
                .map(|t| t.name.clone())
        });
        r.topic_id = id;
        match name {
            None => r.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
            Some(name) => {
                r.name = Some(TopicName(str_bytes(name.clone())));
                if is_internal(broker, &name) {
                    r.error_code = code::INVALID_TOPIC_EXCEPTION;
                    r.error_message = Some(str_bytes(format!(
                        "internal topic {name} cannot be deleted"
                    )));
                    resp.responses.push(r);
                    continue;
                }
                let id = broker.topic(&name).map(|t| t.id);
                match layer.delete_topic(&name).await {
                    Ok(()) => r.topic_id = id.unwrap_or_default(),
                    Err(e) => {
                        r.error_code = topic_error_code(&e);
                        r.error_message = Some(str_bytes(e.to_string()));
                    }
                }
            }
        }
        resp.responses.push(r);
    }
    resp
}

/// The configs of a request that carry a value, by name.
fn values<'a>(
    configs: impl Iterator<Item = (&'a StrBytes, &'a Option<StrBytes>)>,
) -> BTreeMap<String, String> {
    configs
        .filter_map(|(name, value)| value.as_ref().map(|v| (name.to_string(), v.to_string())))
        .collect()
}

/// Internal topics (`__consumer_offsets`) belong to the broker: clients may
/// read them but not delete them or change their partitioning.
fn is_internal(broker: &Broker, name: &str) -> bool {
    broker.topic(name).map(|t| t.internal).unwrap_or(false)
}

pub async fn create_partitions(
    layer: &Partitions,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let broker = layer.broker();
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        if is_internal(broker, &t.name.0) {
            r.error_code = code::INVALID_TOPIC_EXCEPTION;
            r.error_message = Some(str_bytes(format!(
                "the partitions of internal topic {} are fixed",
                &*t.name.0
            )));
        } else if let Err(e) = layer
            .create_partitions(&t.name.0, t.count, req.validate_only)
            .await
        {
            r.error_code = topic_error_code(&e);
            r.error_message = Some(str_bytes(e.to_string()));
        }
        resp.results.push(r);
    }
    resp
}

fn config_entry(
    name: &str,
    value: Option<String>,
    source: i8,
    kind: ConfigType,
    doc: Option<&str>,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    let mut e = DescribeConfigsResourceResult::default();
    e.name = str_bytes(name.to_string());
    e.value = value.map(str_bytes);
    e.read_only = read_only;
    e.config_source = source;
    e.config_type = kind as i8;
    e.documentation = doc.map(|d| str_bytes(d.to_string()));
    e
}

/// The broker-level configs this node's flags set (read-only, except the
/// dynamic ones of `security::configs`, which a client may override).
fn broker_configs(broker: &Broker) -> Vec<(&'static str, String, ConfigType)> {
    let c = &broker.config;
    // Kafka's advertised.listeners defaults to its listeners; a single
    // listener is advertised at the address the node gives clients.
    let advertised = c.advertised_listeners.clone().unwrap_or_else(|| {
        c.listeners.clone().unwrap_or_else(|| {
            let (host, port) = broker.advertised();
            format!("PLAINTEXT://{host}:{port}")
        })
    });
    vec![
        ("broker.id", c.node_id.to_string(), ConfigType::Int),
        ("advertised.listeners", advertised, ConfigType::List),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            ConfigType::Boolean,
        ),
        (
            "num.partitions",
            c.num_partitions.to_string(),
            ConfigType::Int,
        ),
        ("default.replication.factor", "1".into(), ConfigType::Int),
        ("message.max.bytes", "1048588".into(), ConfigType::Int),
        (
            "socket.request.max.bytes",
            c.max_frame_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "log.dirs",
            c.data_dir.display().to_string(),
            ConfigType::String,
        ),
        (
            "log.flush.interval.ms",
            c.flush_interval_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "log.retention.check.interval.ms",
            c.retention_check_interval_ms.to_string(),
            ConfigType::Long,
        ),
        (
            "max.connections.per.ip",
            c.max_connections_per_ip.to_string(),
            ConfigType::Int,
        ),
    ]
}

pub fn describe_configs(
    layer: &Partitions,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let broker = layer.broker();
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let wanted = |name: &str| {
            res.configuration_keys
                .as_ref()
                .filter(|keys| !keys.is_empty())
                .map(|keys| keys.iter().any(|k| &**k == name))
                .unwrap_or(true)
        };
        let doc = |d: &str| {
            if req.include_documentation {
                Some(d.to_string())
            } else {
                None
            }
        };
        match res.resource_type {
            RESOURCE_TOPIC => match broker.topic(&res.resource_name) {
                Some(topic) => {
                    let c = topic.configs();
                    r.configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.name))
                        .map(|d| {
                            let overridden = c.overrides.contains_key(d.name);
                            let source = if overridden {
                                SOURCE_DYNAMIC_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            };
                            let mut e = config_entry(
                                d.name,
                                c.get(d.name).map(str::to_string),
                                source,
                                d.kind,
                                doc(d.doc).as_deref(),
                                false,
                            );
                            e.is_sensitive = false;
                            e
                        })
                        .collect();
                }
                None => {
                    r.error_code = code::UNKNOWN_TOPIC_OR_PARTITION;
                    r.error_message =
                        Some(str_bytes(format!("unknown topic {}", res.resource_name)));
                }
            },
            RESOURCE_BROKER if res.resource_name.is_empty() => {
                r.configs = dynamic::describe_broker_default(layer, wanted);
            }
            RESOURCE_BROKER => {
                if res.resource_name.parse::<i32>().ok() == Some(broker.node_id()) {
                    let statics = broker_configs(broker);
                    let flag = |name: &str| {
                        statics
                            .iter()
                            .find(|(n, _, _)| *n == name)
                            .map(|(_, v, _)| v.clone())
                            .unwrap_or_default()
                    };
                    let mut configs: Vec<_> = statics
                        .iter()
                        .filter(|(n, _, _)| wanted(n) && dynamic_broker_config(n).is_none())
                        .map(|(n, v, k)| {
                            config_entry(n, Some(v.clone()), SOURCE_STATIC_BROKER, *k, None, true)
                        })
                        .collect();
                    configs.extend(dynamic::describe_this_broker(layer, wanted, flag));
                    r.configs = configs;
                } else {
                    r.error_code = code::RESOURCE_NOT_FOUND;
                    r.error_message =
                        Some(str_bytes(format!("unknown broker {}", res.resource_name)));
                }
            }
            RESOURCE_GROUP => {
                r.configs = dynamic::describe_group(
                    layer,
                    &res.resource_name,
                    wanted,
                    req.include_documentation,
                );
            }
            other => {
                r.error_code = code::INVALID_REQUEST;
                r.error_message =
                    Some(str_bytes(format!("resource type {other} is not supported")));
            }
        }
        resp.results.push(r);
    }
    resp
}

fn alter_result(
    resource_type: i8,
    resource_name: StrBytes,
    result: Result<(), TopicError>,
) -> (i16, Option<StrBytes>, i8, StrBytes) {
    match result {
        Ok(()) => (code::NONE, None, resource_type, resource_name),
        Err(e) => (
            topic_error_code(&e),
            Some(str_bytes(e.to_string())),
            resource_type,
            resource_name,
        ),
    }
}

/// The dynamic config target of a GROUP or BROKER resource (None: a
/// topic's, or a type these APIs do not alter).
fn dynamic_target(
    layer: &Partitions,
    resource_type: i8,
    name: &str,
) -> Option<Result<ConfigTarget, (i16, String)>> {
    match resource_type {
        RESOURCE_GROUP => Some(Ok(ConfigTarget::Group(name.to_string()))),
        RESOURCE_BROKER => Some(dynamic::broker_target(layer, name)),
        _ => None,
    }
}

/// The names of the broker configs set by flags only.
fn read_only_broker_configs(broker: &Broker) -> Vec<&'static str> {
    broker_configs(broker)
        .into_iter()
        .map(|(n, _, _)| n)
        .filter(|n| dynamic_broker_config(n).is_none())
        .collect()
}

fn outcome_fields(outcome: dynamic::AlterOutcome) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (code::NONE, None),
        Err((error, message)) => (error, Some(str_bytes(message))),
    }
}

fn check_topic_resource(resource_type: i8) -> Result<(), TopicError> {
    if resource_type == RESOURCE_TOPIC {
        Ok(())
    } else {
        Err(TopicError::InvalidConfig(format!(
            "altering resource type {resource_type} is not supported"
        )))
    }
}

pub async fn alter_configs(layer: &Partitions, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        // AlterConfigs replaces the whole set of a resource's configs.
        let configs = values(res.configs.iter().map(|c| (&c.name, &c.value)));
        if let Some(target) = dynamic_target(layer, res.resource_type, &res.resource_name) {
            let outcome = match target {
                Ok(target) => {
                    let read_only = read_only_broker_configs(layer.broker());
                    dynamic::alter(layer, target, configs, req.validate_only, &read_only).await
                }
                Err(e) => Err(e),
            };
            let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
            (r.error_code, r.error_message) = outcome_fields(outcome);
            r.resource_type = res.resource_type;
            r.resource_name = res.resource_name;
            resp.responses.push(r);
            continue;
        }
        let result = match check_topic_resource(res.resource_type) {
            Ok(()) => {
                layer
                    .set_topic_configs(&res.resource_name, configs, req.validate_only)
                    .await
            }
            Err(e) => Err(e),
        };
        let (error_code, error_message, resource_type, resource_name) =
            alter_result(res.resource_type, res.resource_name, result);
        let mut r = alter_configs_response::AlterConfigsResourceResponse::default();
        r.error_code = error_code;
        r.error_message = error_message;
        r.resource_type = resource_type;
        r.resource_name = resource_name;
        resp.responses.push(r);
    }
    resp
}

/// Apply IncrementalAlterConfigs operations to a set of overrides.
fn apply_incremental(
    current: &TopicConfigs,
    ops: &[incremental_alter_configs_request::AlterableConfig],
) -> Result<BTreeMap<String, String>, TopicError> {
    let mut overrides = current.overrides.clone();
    for op in ops {
        let name = op.name.to_string();
        let def = configs::definition(&name)
            .ok_or_else(|| TopicError::InvalidConfig(format!("unknown topic config {name}")))?;
        let value = op.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        match op.config_operation {
            0 => {
                overrides.insert(name, value);
            }
            1 => {
                overrides.remove(&name);
            }
            2 | 3 => {
                if def.kind != ConfigType::List {
                    return Err(TopicError::InvalidConfig(format!("{name} is not a list")));
                }
                let mut items: Vec<String> = current
                    .get(&name)
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                for v in value.split(',').filter(|s| !s.is_empty()) {
                    if op.config_operation == 2 {
                        if !items.iter().any(|i| i == v) {
                            items.push(v.to_string());
                        }
                    } else {
                        items.retain(|i| i != v);
                    }
                }
                overrides.insert(name, items.join(","));
            }
            other => {
                return Err(TopicError::InvalidConfig(format!(
                    "unknown config operation {other}"
                )))
            }
        }
    }
    Ok(overrides)
}

pub async fn incremental_alter_configs(
    layer: &Partitions,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let broker = layer.broker();
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        if let Some(target) = dynamic_target(layer, res.resource_type, &res.resource_name) {
            let outcome = match target {
                Ok(target) => {
                    let read_only = read_only_broker_configs(broker);
                    dynamic::alter_incremental(
                        layer,
                        target,
                        &res.configs,
                        req.validate_only,
                        &read_only,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
            (r.error_code, r.error_message) = outcome_fields(outcome);
            r.resource_type = res.resource_type;
            r.resource_name = res.resource_name;
            resp.responses.push(r);
            continue;
        }
        let overrides = check_topic_resource(res.resource_type).and_then(|_| {
            let topic = broker
                .topic(&res.resource_name)
                .ok_or_else(|| TopicError::Unknown(res.resource_name.to_string()))?;
            apply_incremental(&topic.configs(), &res.configs)
        });
        let result = match overrides {
            Ok(overrides) => {
                layer
                    .set_topic_configs(&res.resource_name, overrides, req.validate_only)
                    .await
            }
            Err(e) => Err(e),
        };
        let (error_code, error_message, resource_type, resource_name) =
            alter_result(res.resource_type, res.resource_name, result);
        let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        r.error_code = error_code;
        r.error_message = error_message;
        r.resource_type = resource_type;
        r.resource_name = resource_name;
        resp.responses.push(r);
    }
    resp
}

pub fn describe_cluster(
    layer: &Partitions,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let broker = layer.broker();
    let mut resp = DescribeClusterResponse::default();
    resp.endpoint_type = req.endpoint_type;
    resp.cluster_id = str_bytes(broker.cluster_id.clone());
    resp.controller_id = BrokerId(broker.node_id());
    resp.cluster_authorized_operations = i32::MIN;
    if let Some(rm) = layer.replica_manager() {
        let image = rm.image();
        if !image.cluster_id.is_empty() {
            resp.cluster_id = str_bytes(image.cluster_id.clone());
        }
        resp.controller_id = BrokerId(rm.cluster().controller().map_or(-1, |c| c as i32));
        resp.brokers = image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|reg| {
                let (host, port) = crate::cluster::image::host_port(&reg.kafka_addr);
                let mut b = DescribeClusterBroker::default();
                b.broker_id = BrokerId(reg.broker_id);
                b.host = str_bytes(host);
                b.port = port;
                b
            })
            .collect();
        return resp;
    }
    let (host, port) = broker.advertised();
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(broker.node_id());
    b.host = str_bytes(host);
    b.port = port;
    resp.brokers = vec![b];
    resp
}
