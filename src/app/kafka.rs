//! The shop's link to Kafka: the client configuration, connecting with
//! retries, creating the shop's topics, the shared producer, and whether the
//! shop is ready for commands.
//!
//! Kafka is reached only through `crate::client`, so the shop runs against
//! any Kafka-compatible cluster given by `--bootstrap`. Must never: import
//! the broker, the read model, the workers or HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;

use super::config::ShopConfig;
use super::domain::events::{PAYMENT_REQUESTS_TOPIC, SHOP_TOPICS};
use crate::client::{Client, ClientConfig, ClientError, Producer, ProducerConfig};

/// The client and producer, once connected.
struct Connected {
    client: Client,
    producer: Producer,
}

/// The shop's link to its Kafka cluster.
pub(crate) struct KafkaLink {
    /// The shop's configuration (bootstrap servers, topic layout).
    config: ShopConfig,
    /// Set once connected with the topics in place.
    connected: OnceLock<Connected>,
    /// True while the shop accepts commands.
    ready: AtomicBool,
}

impl KafkaLink {
    /// Not connected yet.
    pub(crate) fn new(config: ShopConfig) -> Self {
        KafkaLink {
            config,
            connected: OnceLock::new(),
            ready: AtomicBool::new(false),
        }
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &ShopConfig {
        &self.config
    }

    /// True once the shop accepts commands.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Open or close the shop for commands.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Keep the connected client and producer (the first call wins).
    pub(crate) fn set_connected(&self, client: Client, producer: Producer) {
        let _ = self.connected.set(Connected { client, producer });
    }

    /// The Kafka client, once connected.
    pub(crate) fn client(&self) -> Option<&Client> {
        self.connected.get().map(|k| &k.client)
    }

    /// The producer, once connected and ready.
    pub(crate) fn producer(&self) -> Option<&Producer> {
        self.connected
            .get()
            .filter(|_| self.is_ready())
            .map(|k| &k.producer)
    }

    /// The configuration of every client of the shop.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(&self.config.bootstrap);
        config.connection.client_id = "sluice-shop".to_owned();
        config
    }

    /// A new client (with connections of its own) to the shop's cluster,
    /// retried until it connects or shutdown is asked for.
    pub(crate) async fn connect_client(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Client> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = tokio::select! {
                r = Client::connect(self.client_config()) => r,
                _ = shutdown.wait_for(|s| *s) => return None,
            };
            match outcome {
                Ok(client) => return Some(client),
                Err(e) => {
                    tracing::warn!(bootstrap = %self.config.bootstrap, error = %e, "shop cannot reach Kafka");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => return None,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Connect, create the topics and start a producer, retrying until it
    /// works or shutdown is asked for.
    pub(crate) async fn connect(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(Client, Producer)> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                let client = Client::connect(self.client_config()).await?;
                for topic in SHOP_TOPICS.into_iter().chain([PAYMENT_REQUESTS_TOPIC]) {
                    client
                        .ensure_topic(
                            topic,
                            self.config.partitions,
                            self.config.replication_factor,
                        )
                        .await?;
                }
                let config = ProducerConfig {
                    acks: -1,
                    linger: Duration::from_millis(1),
                    idempotent: true,
                    ..ProducerConfig::default()
                };
                let producer = match Producer::new(client.clone(), config.clone()).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "idempotent producer unavailable; producing without idempotence");
                        Producer::new(
                            client.clone(),
                            ProducerConfig {
                                idempotent: false,
                                ..config
                            },
                        )
                        .await?
                    }
                };
                Ok::<_, ClientError>((client, producer))
            };
            let outcome = tokio::select! {
                r = attempt => r,
                _ = shutdown.wait_for(|s| *s) => return None,
            };
            match outcome {
                Ok(done) => return Some(done),
                Err(e) => {
                    tracing::warn!(bootstrap = %self.config.bootstrap, error = %e, "shop cannot reach Kafka yet");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => return None,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}
