//! Metadata: brokers, the controller, and every requested topic's partitions
//! with leader, replicas and ISR. Unknown topics are auto-created when the
//! request and the broker allow it, within the partition layer's limits
//! (per request and per client address).

use std::net::IpAddr;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{code, str_bytes, topic_error_code};
use crate::broker::{Broker, Topic, TopicError};
use crate::cluster::image::{host_port, MetadataImage, TopicImage, NO_LEADER};
use crate::partition::Partitions;
use crate::replication::ReplicaManager;

const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// The metadata of one topic as this broker sees it.
pub fn topic_metadata(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let me = BrokerId(broker.node_id());
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(str_bytes(topic.name.clone())));
    t.topic_id = topic.id;
    t.is_internal = topic.internal;
    t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    t.partitions = topic
        .partitions()
        .iter()
        .map(|log| {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = log.partition;
            p.leader_id = me;
            p.leader_epoch = log.leader_epoch();
            p.replica_nodes = vec![me];
            p.isr_nodes = vec![me];
            p
        })
        .collect();
    t
}

/// The entry of a topic that could not be described.
fn error_topic(name: String, error: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(str_bytes(name)));
    t.error_code = error;
    t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    t
}

/// The topics a request names; `None` means all (v0: an empty list, v1+: null).
fn requested(
    topics: Option<Vec<MetadataRequestTopic>>,
    version: i16,
) -> Option<Vec<MetadataRequestTopic>> {
    match topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    }
}

/// The metadata of one topic as the cluster's image has it.
fn image_topic_metadata(
    image: &MetadataImage,
    name: &str,
    t: &TopicImage,
) -> MetadataResponseTopic {
    let mut out = MetadataResponseTopic::default();
    out.name = Some(TopicName(str_bytes(name.to_string())));
    out.topic_id = t.topic_id;
    out.is_internal = name.starts_with("__");
    out.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    out.partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = i as i32;
            mp.leader_id = BrokerId(p.leader);
            mp.leader_epoch = p.leader_epoch;
            mp.replica_nodes = p.replicas.iter().map(|b| BrokerId(*b)).collect();
            mp.isr_nodes = p.isr.iter().map(|b| BrokerId(*b)).collect();
            mp.offline_replicas = p
                .replicas
                .iter()
                .filter(|b| !image.is_live(**b))
                .map(|b| BrokerId(*b))
                .collect();
            if p.leader == NO_LEADER {
                mp.error_code = code::LEADER_NOT_AVAILABLE;
            }
            mp
        })
        .collect();
    out
}

/// Metadata of a cluster node: every live broker and every partition's
/// leader, replicas and ISR, from the applied image.
async fn cluster_metadata(
    partitions: &Partitions,
    rm: &ReplicaManager,
    req: MetadataRequest,
    version: i16,
    client: IpAddr,
) -> MetadataResponse {
    let mut resp = MetadataResponse::default();
    let requested = requested(req.topics, version);
    let mut errors = Vec::new();
    if let Some(list) = &requested {
        let auto = version < 4 || req.allow_auto_topic_creation;
        let mut allowance = partitions.auto_create_allowance(client);
        for name in list.iter().filter_map(|t| t.name.as_ref()) {
            let name = name.0.to_string();
            if rm.has_topic(&name) {
                continue;
            }
            let found = if auto {
                partitions
                    .topic_or_auto_create(&name, &mut allowance)
                    .await
                    .map(|_| ())
            } else {
                Err(TopicError::Unknown(name.clone()))
            };
            if let Err(e) = found {
                errors.push((name, topic_error_code(&e)));
            }
        }
    }
    let image = rm.image();
    resp.brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            let (host, port) = host_port(&b.kafka_addr);
            let mut mb = MetadataResponseBroker::default();
            mb.node_id = BrokerId(b.broker_id);
            mb.host = str_bytes(host);
            mb.port = port;
            mb
        })
        .collect();
    resp.cluster_id = Some(str_bytes(if image.cluster_id.is_empty() {
        partitions.broker().cluster_id.clone()
    } else {
        image.cluster_id.clone()
    }));
    resp.controller_id = BrokerId(rm.cluster().controller().map_or(-1, |c| c as i32));
    resp.cluster_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    resp.topics = match requested {
        None => image
            .topics
            .iter()
            .filter(|(name, _)| !name.starts_with("__"))
            .map(|(name, t)| image_topic_metadata(&image, name, t))
            .collect(),
        Some(list) => list
            .into_iter()
            .filter_map(|t| t.name)
            .map(|name| {
                let name = name.0.to_string();
                match image.topics.get(&name) {
                    Some(t) => image_topic_metadata(&image, &name, t),
                    None => {
                        let error = errors
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map_or(code::UNKNOWN_TOPIC_OR_PARTITION, |(_, e)| *e);
                        error_topic(name, error)
                    }
                }
            })
            .collect(),
    };
    resp
}

/// Answer a Metadata request from `client` (its address keys the
/// auto-creation limit).
pub async fn handle(
    partitions: &Partitions,
    req: MetadataRequest,
    version: i16,
    client: IpAddr,
) -> MetadataResponse {
    if let Some(rm) = partitions.replica_manager() {
        return cluster_metadata(partitions, rm, req, version, client).await;
    }
    let broker = partitions.broker();
    let (host, port) = broker.advertised();
    let mut resp = MetadataResponse::default();
    let mut me = MetadataResponseBroker::default();
    me.node_id = BrokerId(broker.node_id());
    me.host = str_bytes(host);
    me.port = port;
    resp.brokers = vec![me];
    resp.cluster_id = Some(str_bytes(broker.cluster_id.clone()));
    resp.controller_id = BrokerId(broker.node_id());
    resp.cluster_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;

    let requested = requested(req.topics, version);
    resp.topics = match requested {
        None => broker
            .topics()
            .iter()
            .filter(|t| !t.internal)
            .map(|t| topic_metadata(broker, t))
            .collect(),
        Some(list) => {
            let auto = version < 4 || req.allow_auto_topic_creation;
            let mut allowance = partitions.auto_create_allowance(client);
            let mut topics = Vec::with_capacity(list.len());
            for name in list.into_iter().filter_map(|t| t.name) {
                let name = name.0.to_string();
                let found = if auto {
                    partitions.topic_or_auto_create(&name, &mut allowance).await
                } else {
                    broker
                        .topic(&name)
                        .ok_or_else(|| TopicError::Unknown(name.clone()))
                };
                topics.push(match found {
                    Ok(topic) => topic_metadata(broker, &topic),
                    Err(e) => error_topic(name, topic_error_code(&e)),
                });
            }
            topics
        }
    };
    resp.error_code = code::NONE;
    resp
}
