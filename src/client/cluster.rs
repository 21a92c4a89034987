//! A handle on one Kafka cluster: the bootstrap, one connection per broker
//! (opened on demand, replaced once poisoned), and the cluster metadata
//! requests (Metadata, CreateTopics) that fill the `metadata` cache.
//!
//! Must never: batch or fetch records (the producer and the consumer build
//! on this), or reach into the broker's internals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::sync::atomic::Ordering;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::connection::{BrokerConnection, ConnectionConfig};
use super::error::ClientError;
use super::metadata::{BrokerInfo, MetadataCache, TopicInfo};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses to learn the cluster from; any one that answers is enough.
    pub bootstrap: Vec<String>,
    /// Settings for every broker connection.
    pub connection: ConnectionConfig,
}

impl ClientConfig {
    /// A configuration from a comma-separated bootstrap list such as
    /// `"127.0.0.1:9092,127.0.0.1:9093"`.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            connection: ConnectionConfig::default(),
        }
    }
}

/// A handle on one Kafka cluster: broker connections and metadata. Cheap to
/// clone; clones share connections and the metadata cache.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    /// How we were asked to connect.
    config: ClientConfig,
    /// Brokers, topics and leaders as last seen in a Metadata response.
    metadata: MetadataCache,
    /// One connection per broker id; poisoned ones are replaced on next use.
    connections: Mutex<HashMap<i32, Arc<BrokerConnection>>>,
    /// The connection used before broker ids are known, and as a fallback.
    bootstrap: Mutex<Option<Arc<BrokerConnection>>>,
    /// Serialises connection attempts so concurrent callers share one
    /// connection per broker instead of racing to open several.
    connecting: tokio::sync::Mutex<()>,
}

impl Client {
    /// Connect to the cluster: reach one bootstrap server and load the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        if config.bootstrap.is_empty() {
            return Err(ClientError::Config(
                "the bootstrap server list is empty".to_owned(),
            ));
        }
        let client = Client::offline(config);
        client.refresh_metadata(&[]).await?;
        Ok(client)
    }

    /// A client that has not contacted any broker yet (`connect` loads the
    /// broker list; tests fill its metadata).
    pub(crate) fn offline(config: ClientConfig) -> Self {
        Client {
            inner: Arc::new(ClientInner {
                config,
                metadata: MetadataCache::default(),
                connections: Mutex::new(HashMap::new()),
                bootstrap: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn metadata_cache(&self) -> &MetadataCache {
        &self.inner.metadata
    }

    /// The connection to broker `broker_id`, opened (or reopened after a
    /// failure) on demand.
    pub async fn broker(&self, broker_id: i32) -> Result<Arc<BrokerConnection>, ClientError> {
        if let Some(conn) = self.healthy_connection(broker_id) {
            return Ok(conn);
        }
        let _connecting = self.inner.connecting.lock().await;
        if let Some(conn) = self.healthy_connection(broker_id) {
            return Ok(conn);
        }
        let addr = self
            .inner
            .metadata
            .broker(broker_id)
            .map(|b| b.addr())
            .ok_or_else(|| {
                ClientError::Metadata(format!("broker {broker_id} is not in the cluster metadata"))
            })?;
        let conn = Arc::new(BrokerConnection::connect(&addr, &self.inner.config.connection).await?);
        lock(&self.inner.connections).insert(broker_id, Arc::clone(&conn));
        Ok(conn)
    }

    fn healthy_connection(&self, broker_id: i32) -> Option<Arc<BrokerConnection>> {
        lock(&self.inner.connections)
            .get(&broker_id)
            .filter(|c| !c.is_poisoned())
            .cloned()
    }

    /// Any usable connection: an open broker connection, else a new one to a
    /// known broker, else a bootstrap server.
    pub async fn any_broker(&self) -> Result<Arc<BrokerConnection>, ClientError> {
        let open = lock(&self.inner.connections)
            .values()
            .find(|c| !c.is_poisoned())
            .cloned();
        if let Some(conn) = open {
            return Ok(conn);
        }
        for broker_id in self.inner.metadata.broker_ids() {
            if let Ok(conn) = self.broker(broker_id).await {
                return Ok(conn);
            }
        }
        self.bootstrap_connection().await
    }

    async fn bootstrap_connection(&self) -> Result<Arc<BrokerConnection>, ClientError> {
        if let Some(conn) = lock(&self.inner.bootstrap)
            .as_ref()
            .filter(|c| !c.is_poisoned())
        {
            return Ok(Arc::clone(conn));
        }
        let _connecting = self.inner.connecting.lock().await;
        let mut last_error = String::new();
        for addr in &self.inner.config.bootstrap {
            match BrokerConnection::connect(addr, &self.inner.config.connection).await {
                Ok(conn) => {
                    let conn = Arc::new(conn);
                    *lock(&self.inner.bootstrap) = Some(Arc::clone(&conn));
                    return Ok(conn);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "bootstrap server unreachable");
                    last_error = e.to_string();
                }
            }
        }
        Err(ClientError::Bootstrap {
            tried: self.inner.config.bootstrap.join(","),
            last_error,
        })
    }
}

/// Lock a std mutex whose critical sections cannot leave it inconsistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            // The broker answers CreateTopics once the topic is in its
            // metadata: look now rather than after the first backoff.
            self.refresh_metadata(&[name]).await?;
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
