//! The client's view of the cluster: brokers, topics, and for every partition
//! its leader. Filled from Metadata responses and refreshed when a broker says
//! our view is stale (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
//! LEADER_NOT_AVAILABLE, ...). Also creates topics with CreateTopics.
//!
//! The cache never guesses: a partition without a known leader has
//! `leader_id == -1`, and callers refresh and retry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::error::{is_stale_metadata_error, ClientError};
use super::Client;

/// One broker as advertised in Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker id.
    pub node_id: i32,
    /// Advertised host name.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

impl BrokerInfo {
    /// `host:port`, ready for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: i32,
    /// The leader's broker id, or -1 while there is none.
    pub leader_id: i32,
    /// The leader epoch, or -1 if the broker does not say.
    pub leader_epoch: i32,
    /// The partition-level error code of the Metadata response (0 if none).
    pub error_code: i16,
}

/// One topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// The topic id (nil when the broker does not send ids).
    pub topic_id: Uuid,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// How many partitions the topic has.
    pub fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// The leader of `partition`, if one is known.
    pub fn leader(&self, partition: i32) -> Option<i32> {
        self.partition(partition)
            .map(|p| p.leader_id)
            .filter(|&id| id >= 0)
    }

    /// The metadata of `partition`.
    pub fn partition(&self, partition: i32) -> Option<&PartitionInfo> {
        usize::try_from(partition)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .filter(|p| p.partition == partition)
            .or_else(|| self.partitions.iter().find(|p| p.partition == partition))
    }

    /// True when every partition has a leader.
    pub fn all_leaders_known(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.iter().all(|p| p.leader_id >= 0)
    }
}

/// Last known cluster metadata. Reads are lock-cheap (`RwLock` + `Arc`).
#[derive(Debug)]
pub(crate) struct MetadataCache {
    /// Brokers by id.
    brokers: RwLock<HashMap<i32, BrokerInfo>>,
    /// Topics by name; absent means "not known to exist".
    topics: RwLock<HashMap<String, Arc<TopicInfo>>>,
    /// The controller's broker id, or -1 if unknown.
    controller_id: AtomicI32,
}

impl Default for MetadataCache {
    fn default() -> Self {
        Self {
            brokers: RwLock::default(),
            topics: RwLock::default(),
            controller_id: AtomicI32::new(-1),
        }
    }
}

impl MetadataCache {
    pub(crate) fn broker(&self, id: i32) -> Option<BrokerInfo> {
        read(&self.brokers).get(&id).cloned()
    }

    pub(crate) fn broker_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = read(&self.brokers).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn topic(&self, name: &str) -> Option<Arc<TopicInfo>> {
        read(&self.topics).get(name).cloned()
    }

    /// Merge a Metadata response: brokers are replaced, topics updated or removed.
    pub(crate) fn apply(&self, response: &MetadataResponse) {
        let brokers: HashMap<i32, BrokerInfo> = response
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerInfo {
                        node_id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                    },
                )
            })
            .collect();
        if !brokers.is_empty() {
            *self.brokers.write().unwrap_or_else(|p| p.into_inner()) = brokers;
        }
        self.controller_id
            .store(response.controller_id.0, Ordering::Relaxed);
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            match ResponseError::try_from_code(topic.error_code) {
                None | Some(ResponseError::LeaderNotAvailable) if !topic.partitions.is_empty() => {
                    let mut partitions: Vec<PartitionInfo> = topic
                        .partitions
                        .iter()
                        .map(|p| PartitionInfo {
                            partition: p.partition_index,
                            leader_id: if is_stale_metadata_error_code(p.error_code)
                                && p.error_code != ResponseError::ReplicaNotAvailable.code()
                            {
                                -1
                            } else {
                                p.leader_id.0
                            },
                            leader_epoch: p.leader_epoch,
                            error_code: p.error_code,
                        })
                        .collect();
                    partitions.sort_by_key(|p| p.partition);
                    topics.insert(
                        name.clone(),
                        Arc::new(TopicInfo {
                            name,
                            topic_id: topic.topic_id,
                            partitions,
                        }),
                    );
                }
                _ => {
                    topics.remove(&name);
                }
            }
        }
    }
}

fn is_stale_metadata_error_code(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(is_stale_metadata_error)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Fetch metadata for `topics` (none: brokers only) and update the cache.
    /// Topics the cluster does not know are dropped from the cache.
    pub async fn refresh_metadata(&self, topics: &[&str]) -> Result<(), ClientError> {
        let conn = self.any_broker().await?;
        let version = conn.version_for::<MetadataRequest>()?;
        let request_topics = if version == 0 && topics.is_empty() {
            // Version 0 reads an empty list as "all topics", which is also fine.
            Some(Vec::new())
        } else {
            Some(
                topics
                    .iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string((*t).to_owned()))))
                    })
                    .collect(),
            )
        };
        let request = MetadataRequest::default()
            .with_topics(request_topics)
            .with_allow_auto_topic_creation(false);
        let response = conn.request_with_version(&request, version).await?;
        if response.error_code != 0 {
            return Err(ClientError::broker(
                ApiKey::Metadata,
                ResponseError::try_from_code(response.error_code)
                    .unwrap_or(ResponseError::UnknownServerError),
                None,
            ));
        }
        self.metadata_cache().apply(&response);
        Ok(())
    }

    /// The cached metadata of `topic`, without any network round trip.
    pub fn cached_topic(&self, topic: &str) -> Option<Arc<TopicInfo>> {
        self.metadata_cache().topic(topic)
    }

    /// The metadata of `topic`, fetched if not cached. Fails with
    /// UNKNOWN_TOPIC_OR_PARTITION if the cluster does not have it.
    pub async fn topic(&self, topic: &str) -> Result<Arc<TopicInfo>, ClientError> {
        if let Some(info) = self.cached_topic(topic) {
            return Ok(info);
        }
        self.refresh_metadata(&[topic]).await?;
        self.cached_topic(topic).ok_or_else(|| ClientError::Broker {
            api: ApiKey::Metadata,
            error: ResponseError::UnknownTopicOrPartition,
            topic: Some(topic.to_owned()),
            partition: None,
            message: None,
        })
    }

    /// Known brokers, sorted by id.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        let cache = self.metadata_cache();
        cache
            .broker_ids()
            .into_iter()
            .filter_map(|id| cache.broker(id))
            .collect()
    }

    /// Create a topic. Returns `Ok(false)` if it already existed.
    /// `replication_factor` -1 means the broker's default.
    pub async fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<bool, ClientError> {
        let controller = self.metadata_cache().controller_id.load(Ordering::Relaxed);
        let conn = match self.broker(controller).await {
            Ok(conn) if controller >= 0 => conn,
            _ => self.any_broker().await?,
        };
        let version = conn.version_for::<CreateTopicsRequest>()?;
        // Versions below 4 cannot ask for the broker default replication factor.
        let replication_factor = if replication_factor < 0 && version < 4 {
            1
        } else {
            replication_factor
        };
        let topic = CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
            .with_num_partitions(num_partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string((*k).to_owned()))
                            .with_value(Some(StrBytes::from_string((*v).to_owned())))
                    })
                    .collect(),
            );
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(30_000)
            .with_validate_only(false);
        let response = conn.request_with_version(&request, version).await?;
        let result = response
            .topics
            .iter()
            .find(|t| t.name.0.as_str() == name)
            .ok_or_else(|| {
                ClientError::Metadata(format!("CreateTopics response does not mention {name}"))
            })?;
        match ResponseError::try_from_code(result.error_code) {
            None => Ok(true),
            Some(ResponseError::TopicAlreadyExists) => Ok(false),
            Some(error) => Err(ClientError::Broker {
                api: ApiKey::CreateTopics,
                error,
                topic: Some(name.to_owned()),
                partition: None,
                message: result.error_message.as_ref().map(|m| m.to_string()),
            }),
        }
    }

    /// Make sure `name` exists (creating it with `num_partitions` partitions if
    /// not) and wait until every partition has a leader.
    pub async fn ensure_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
    ) -> Result<Arc<TopicInfo>, ClientError> {
        self.refresh_metadata(&[name]).await?;
        if self.cached_topic(name).is_none() {
            self.create_topic(name, num_partitions, replication_factor, &[])
                .await?;
        }
        self.wait_for_leaders(name, Duration::from_secs(30)).await
    }

    /// Poll metadata until every partition of `name` has a leader.
    pub async fn wait_for_leaders(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Arc<TopicInfo>, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.cached_topic(name) {
                Some(info) if info.all_leaders_known() => return Ok(info),
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Metadata(format!(
                    "topic {name} has no leader for every partition after {} ms",
                    timeout.as_millis()
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
            self.refresh_metadata(&[name]).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };

    fn partition(index: i32, leader: i32, error: i16) -> MetadataResponsePartition {
        MetadataResponsePartition::default()
            .with_partition_index(index)
            .with_leader_id(leader.into())
            .with_error_code(error)
    }

    #[test]
    fn apply_maps_leaders_and_drops_unknown_topics() {
        let cache = MetadataCache::default();
        let response = MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(1.into())
                .with_host(StrBytes::from_static_str("localhost"))
                .with_port(9092)])
            .with_topics(vec![
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
                    .with_partitions(vec![
                        partition(1, 1, 0),
                        partition(0, 1, 0),
                        partition(2, 1, ResponseError::LeaderNotAvailable.code()),
                    ]),
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("ghost"))))
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
            ]);
        cache.apply(&response);
        assert_eq!(
            cache.broker(1).map(|b| b.addr()),
            Some("localhost:9092".to_owned())
        );
        let orders = cache.topic("orders").unwrap();
        assert_eq!(orders.partition_count(), 3);
        assert_eq!(orders.leader(0), Some(1));
        assert_eq!(orders.leader(1), Some(1));
        assert_eq!(orders.leader(2), None);
        assert!(!orders.all_leaders_known());
        assert!(cache.topic("ghost").is_none());
    }
}
