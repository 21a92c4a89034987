//! A small asynchronous Kafka client that speaks the wire protocol, so that
//! everything built on it (the shop, `sluice bench`) runs against Sluice and
//! against any other Kafka-compatible cluster alike.
//!
//! Layers, bottom up:
//! - [`connection`]: one TCP connection, framing, correlation ids, pipelining,
//!   version negotiation, the poisoned state.
//! - [`Client`] (this file) and [`metadata`]: bootstrap, one connection per
//!   broker, the topic -> partition -> leader map, topic creation.
//! - [`producer`]: per-partition batching, partitioning, acks, retries,
//!   idempotence. [`consumer`]: a partition fetcher and ListOffsets.
//!   [`group`]: a consumer-group member (classic protocol) over the fetcher.
//!
//! This module must never reach into the broker's internals: it only sees
//! bytes on a socket. Message bodies are kafka-protocol's types; record
//! batches are built and read with its `RecordBatchEncoder`/`Decoder`.

pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod metadata;
pub mod partitioner;
pub mod producer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use connection::{BrokerConnection, ConnectionConfig};
pub use consumer::{ConsumerConfig, FetchedBatch, PartitionFetcher, StartOffset};
pub use error::ClientError;
pub use metadata::{BrokerInfo, PartitionInfo, TopicInfo};
pub use producer::{Delivery, Producer, ProducerConfig, RecordMetadata};

use metadata::MetadataCache;

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
        let client = Client {
            inner: Arc::new(ClientInner {
                config,
                metadata: MetadataCache::default(),
                connections: Mutex::new(HashMap::new()),
                bootstrap: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        };
        client.refresh_metadata(&[]).await?;
        Ok(client)
    }

    /// A client that has not contacted any broker; tests fill its metadata.
    #[cfg(test)]
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
