//! Metadata: brokers, the controller, and every requested topic's partitions
//! with leader, replicas and ISR. Unknown topics are auto-created when the
//! request and the broker allow it.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{code, str_bytes, topic_error_code};
use crate::broker::{Broker, Topic};

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

pub fn handle(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> MetadataResponse {
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

    // v0: an empty list means all topics; v1+: null means all topics.
    let requested = match req.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    };
    resp.topics = match requested {
        None => broker
            .topics()
            .iter()
            .filter(|t| !t.internal)
            .map(|t| topic_metadata(broker, t))
            .collect(),
        Some(list) => list
            .into_iter()
            .filter_map(|t| t.name)
            .map(|name| {
                let name = name.0.to_string();
                let auto = version < 4 || req.allow_auto_topic_creation;
                let found = if auto {
                    broker.topic_or_auto_create(&name)
                } else {
                    broker
                        .topic(&name)
                        .ok_or_else(|| crate::broker::TopicError::Unknown(name.clone()))
                };
                match found {
                    Ok(topic) => topic_metadata(broker, &topic),
                    Err(e) => {
                        let mut t = MetadataResponseTopic::default();
                        t.name = Some(TopicName(str_bytes(name)));
                        t.error_code = topic_error_code(&e);
                        t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
                        t
                    }
                }
            })
            .collect(),
    };
    resp.error_code = code::NONE;
    resp
}
