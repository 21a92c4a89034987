//! The event-driven shop: orders, payments and deliveries as events in Kafka
//! topics (event sourcing), a read model kept by consumers (CQRS), and every
//! change pushed to browsers over WebSocket.
//!
//! Write path: a REST handler validates the request against the read model
//! (`validation`), builds an event (`events`) and produces it with acks=all
//! through the internal Kafka client; the 202 answer carries the event's
//! topic, partition and offset. Read path: the projector (a consumer group
//! per node) applies events to sled trees (`model`, `analytics`), then the
//! WebSocket hub (`ws`) pushes what changed. The notifier (one group shared
//! by the cluster) turns notable events into `notifications`; the simulator
//! drives traffic through the same command path as the REST API; `replay`
//! rebuilds the model from offset 0.
//!
//! Consistency of commands: commands on one order are serialised by a
//! per-order lock, and each first waits until the projector has applied every
//! event this node produced for that order's partitions (read-your-writes),
//! so the state it is validated against includes the previous command.
//! Commands for one order sent concurrently to *different* nodes of a
//! cluster are not serialised; the model stays deterministic regardless.
//!
//! Must never: touch the broker's log or sled trees other than `app:*`
//! (Kafka is reached only through `crate::client`, so the shop runs against
//! any Kafka-compatible cluster given by `--bootstrap`).

pub mod analytics;
pub mod api;
pub mod error;
pub mod events;
pub mod model;
pub mod notifier;
pub mod openapi;
pub mod projector;
pub mod replay;
pub mod simulator;
pub mod time;
pub mod validation;
pub mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::client::partitioner::partition_for_key;
use crate::client::{Client, ClientConfig, Producer, ProducerConfig};
use crate::storage::Storage;
use error::ApiError;
use events::{
    DeliveryData, Event, EventBody, OrderCancelled, OrderCreated, PaymentData, DELIVERIES_TOPIC,
    ORDERS_TOPIC, PAYMENTS_TOPIC, SHOP_TOPICS,
};
use model::{Model, ModelError, OrderRecord};
use validation::{NewDelivery, NewOrder, NewPayment};

pub use api::routes;

/// Tree holding the shop's own bookkeeping: the instance id and the current
/// read-model generation.
pub const META_TREE: &str = "app:meta";
/// Number of per-order command locks (orders hash onto them).
const ORDER_LOCKS: usize = 256;
/// How long a command waits for the projector to catch up with this node's
/// previous writes before answering 503.
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(10);

/// How the shop is configured (from the node's flags).
#[derive(Debug, Clone)]
pub struct ShopConfig {
    /// Kafka bootstrap servers, comma separated.
    pub bootstrap: String,
    /// Partitions of each shop topic when the shop creates it.
    pub partitions: i32,
    /// Replication factor of each shop topic when the shop creates it (-1: cluster default).
    pub replication_factor: i16,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Capacity of the WebSocket broadcast channel, in messages.
    pub ws_buffer: usize,
}

impl ShopConfig {
    /// Defaults for `bootstrap`.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ShopConfig {
            bootstrap: bootstrap.into(),
            partitions: 3,
            replication_factor: -1,
            max_body_bytes: 64 * 1024,
            ws_buffer: 4096,
        }
    }
}

/// The Kafka side, once connected.
struct Kafka {
    client: Client,
    producer: Producer,
}

/// Offsets the projector has applied and this node has produced, for the
/// read-your-writes wait of commands.
#[derive(Default)]
pub struct Progress {
    /// Next offset to apply, per topic-partition, in the live model.
    applied: Mutex<HashMap<(String, i32), i64>>,
    /// Highest offset this node produced, per topic-partition.
    produced: Mutex<HashMap<(String, i32), i64>>,
    /// Signalled whenever `applied` moves.
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Progress {
    /// Record that the model now holds everything before `next` of a partition.
    pub fn set_applied(&self, topic: &str, partition: i32, next: i64) {
        lock(&self.applied).insert((topic.to_owned(), partition), next);
    }

    /// Replace every applied offset (after a swap of models).
    pub fn reset_applied(&self, offsets: HashMap<(String, i32), i64>) {
        *lock(&self.applied) = offsets;
        self.changed.notify_waiters();
    }

    /// Wake commands waiting for the projector.
    pub fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Every applied offset.
    pub fn applied(&self) -> HashMap<(String, i32), i64> {
        lock(&self.applied).clone()
    }

    fn note_produced(&self, topic: &str, partition: i32, offset: i64) {
        let mut produced = lock(&self.produced);
        let entry = produced.entry((topic.to_owned(), partition)).or_insert(-1);
        *entry = (*entry).max(offset);
    }

    /// Produced offsets of these partitions not yet applied.
    fn pending(&self, partitions: &[(&str, i32)]) -> bool {
        let produced = lock(&self.produced);
        let applied = lock(&self.applied);
        partitions.iter().any(|(t, p)| {
            let key = ((*t).to_owned(), *p);
            produced
                .get(&key)
                .is_some_and(|&o| applied.get(&key).copied().unwrap_or(0) <= o)
        })
    }
}

/// What the shop's handlers and tasks share.
pub struct Shop {
    config: ShopConfig,
    storage: Storage,
    /// Stable id of this node's shop, stored in `app:meta`; names its
    /// projector group so each node reads every partition.
    instance_id: String,
    /// The live read model (replaced whole by a replay).
    model: RwLock<Model>,
    kafka: OnceLock<Kafka>,
    /// Pushes changes to WebSocket clients.
    pub hub: ws::Hub,
    /// Applied and produced offsets.
    pub progress: Progress,
    /// Per-order command locks.
    order_locks: Vec<tokio::sync::Mutex<()>>,
    /// Bumped whenever the model changes (the stats push watches it).
    pub model_version: AtomicU64,
    /// The traffic generator's settings and counters.
    pub simulator: simulator::Control,
    /// The replay's status and its hand-over channel to the projector.
    pub replay: replay::Control,
    /// True once connected to Kafka with the topics in place.
    ready: AtomicBool,
}

/// The handle given to HTTP handlers.
#[derive(Clone)]
pub struct AppState(pub Arc<Shop>);

impl std::ops::Deref for AppState {
    type Target = Shop;
    fn deref(&self) -> &Shop {
        &self.0
    }
}

/// What a command answers with (202 Accepted).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub event: Event,
    pub topic: &'static str,
    pub partition: i32,
    pub offset: i64,
}

impl Accepted {
    /// The 202 body.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "event_id": self.event.event_id,
            "type": self.event.body.type_name(),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "order_id": self.event.order_id,
            "timestamp": self.event.timestamp,
        });
        if let Some((_, p)) = self.event.body.payment() {
            v["payment_id"] = json!(p.payment_id);
        }
        v
    }
}

fn short_id(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..16])
}

impl Shop {
    /// Open the shop's trees in `storage` (dropping any half-built replay).
    pub fn open(storage: Storage, config: ShopConfig) -> Result<AppState, ModelError> {
        let meta = storage.db.open_tree(META_TREE)?;
        let instance_id = match meta.get("instance_id")? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
                meta.insert("instance_id", id.as_bytes())?;
                id
            }
        };
        let generation = match meta.get("generation")? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref()).map_or(1, u64::from_be_bytes),
            None => {
                meta.insert("generation", &1u64.to_be_bytes())?;
                1
            }
        };
        let current = model::tree_name(generation);
        for name in storage.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if name.starts_with("app:model:") && name != current {
                tracing::info!(tree = %name, "dropping an unfinished read model");
                storage.db.drop_tree(name.as_bytes())?;
            }
        }
        let model = Model::new(storage.db.open_tree(&current)?, generation);
        let applied: HashMap<(String, i32), i64> = model.stored_offsets()?;
        let shop = Shop {
            hub: ws::Hub::new(config.ws_buffer),
            config,
            storage,
            instance_id,
            model: RwLock::new(model),
            kafka: OnceLock::new(),
            progress: Progress::default(),
            order_locks: (0..ORDER_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            model_version: AtomicU64::new(0),
            simulator: simulator::Control::default(),
            replay: replay::Control::default(),
            ready: AtomicBool::new(false),
        };
        shop.progress.reset_applied(applied);
        Ok(AppState(Arc::new(shop)))
    }

    /// The live read model.
    pub fn model(&self) -> Model {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_model(&self, model: Model) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = model;
    }

    /// This node's shop instance id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The configuration.
    pub fn config(&self) -> &ShopConfig {
        &self.config
    }

    /// True once the shop accepts commands.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn kafka(&self) -> Result<&Kafka, ApiError> {
        self.kafka
            .get()
            .filter(|_| self.is_ready())
            .ok_or_else(|| ApiError::unavailable("the shop is still connecting to Kafka"))
    }

    /// The Kafka client, once connected.
    pub fn client(&self) -> Option<&Client> {
        self.kafka.get().map(|k| &k.client)
    }

    fn order_lock(&self, order_id: &str) -> &tokio::sync::Mutex<()> {
        let i = crate::client::partitioner::murmur2(order_id.as_bytes()) as u32 as usize;
        &self.order_locks[i % ORDER_LOCKS]
    }

    /// Produce `event` with acks=all and say where it went.
    async fn produce(&self, event: Event) -> Result<Accepted, ApiError> {
        let kafka = self.kafka()?;
        let topic = event.body.topic();
        let key = Bytes::from(event.order_id.clone().into_bytes());
        let value = Bytes::from(event.to_bytes());
        let written = async {
            kafka
                .producer
                .send(topic, Some(key), Some(value))
                .await?
                .await
        }
        .await
        .map_err(|e| ApiError::unavailable(format!("the log did not accept the event: {e}")))?;
        self.progress
            .note_produced(topic, written.partition, written.offset);
        Ok(Accepted {
            event,
            topic,
            partition: written.partition,
            offset: written.offset,
        })
    }

    /// Wait until the model holds every event this node produced for `order_id`.
    async fn wait_for_own_writes(&self, order_id: &str) -> Result<(), ApiError> {
        let Some(client) = self.client() else {
            return Ok(());
        };
        let partitions: Vec<(&str, i32)> = [ORDERS_TOPIC, PAYMENTS_TOPIC, DELIVERIES_TOPIC]
            .into_iter()
            .filter_map(|t| {
                let count = client.cached_topic(t)?.partition_count();
                (count > 0).then(|| (t, partition_for_key(order_id.as_bytes(), count)))
            })
            .collect();
        let deadline = tokio::time::Instant::now() + READ_YOUR_WRITES_TIMEOUT;
        loop {
            let changed = self.progress.changed.notified();
            if !self.progress.pending(&partitions) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(ApiError::unavailable(
                    "the read model is behind the log; try again",
                ));
            }
        }
    }

    /// Run a command on an existing order: lock it, wait for this node's
    /// earlier writes to be applied, check, then produce.
    async fn on_order(
        &self,
        order_id: &str,
        decide: impl FnOnce(&OrderRecord) -> Result<EventBody, ApiError>,
    ) -> Result<Accepted, ApiError> {
        self.kafka()?;
        let _serialised = self.order_lock(order_id).lock().await;
        self.wait_for_own_writes(order_id).await?;
        let order = self
            .model()
            .order(order_id)?
            .filter(|o| o.created.is_some())
            .ok_or_else(|| ApiError::order_not_found(order_id))?;
        let body = decide(&order)?;
        self.produce(Event::new(order_id, body)).await
    }

    /// `OrderCreated` for a validated order.
    pub async fn create_order(&self, order: NewOrder) -> Result<Accepted, ApiError> {
        let order_id = short_id("ord");
        self.produce(Event::new(
            order_id,
            EventBody::OrderCreated(OrderCreated {
                customer: order.customer,
                items: order.items,
                currency: order.currency,
                total_cents: order.total_cents,
            }),
        ))
        .await
    }

    /// `OrderCancelled`, if the order is not paid yet.
    pub async fn cancel_order(
        &self,
        order_id: &str,
        reason: Option<String>,
    ) -> Result<Accepted, ApiError> {
        self.on_order(order_id, |order| {
            validation::check_cancel(order)?;
            Ok(EventBody::OrderCancelled(OrderCancelled { reason }))
        })
        .await
    }

    /// `PaymentAuthorized`/`Failed`/`Refunded`, if the order's state allows it.
    pub async fn add_payment(&self, payment: NewPayment) -> Result<Accepted, ApiError> {
        let order_id = payment.order_id.clone();
        self.on_order(&order_id, |order| {
            validation::check_payment(order, payment.status, payment.amount_cents)?;
            let currency = order
                .created
                .as_ref()
                .map(|c| c.currency.clone())
                .unwrap_or_default();
            Ok(EventBody::from_payment(
                payment.status,
                PaymentData {
                    payment_id: short_id("pay"),
                    amount_cents: payment.amount_cents,
                    currency,
                    method: payment.method,
                    reason: payment.reason,
                },
            ))
        })
        .await
    }

    /// A `Delivery*` step, if the delivery may move there.
    pub async fn add_delivery(&self, delivery: NewDelivery) -> Result<Accepted, ApiError> {
        let order_id = delivery.order_id.clone();
        self.on_order(&order_id, |order| {
            validation::check_delivery(order, delivery.status)?;
            Ok(EventBody::from_delivery(
                delivery.status,
                DeliveryData {
                    carrier: delivery
                        .carrier
                        .or_else(|| order.carrier().map(str::to_owned)),
                    location: delivery.location,
                },
            ))
        })
        .await
    }

    /// The `/api/status` document.
    pub fn status_json(&self) -> Value {
        let applied: Vec<Value> = {
            let mut v: Vec<_> = self.progress.applied().into_iter().collect();
            v.sort();
            v.into_iter()
                .map(|((t, p), o)| json!({"topic": t, "partition": p, "next_offset": o}))
                .collect()
        };
        json!({
            "ready": self.is_ready(),
            "bootstrap": self.config.bootstrap,
            "instance_id": self.instance_id,
            "generation": self.model().generation,
            "topics": SHOP_TOPICS,
            "groups": {
                "projector": projector::group_id(&self.instance_id),
                "notifier": notifier::GROUP_ID,
            },
            "applied": applied,
            "websocket_clients": self.hub.client_count(),
        })
    }
}

/// Connect to Kafka, create the topics, then run the consumers, the stats
/// push and the simulator until `shutdown` turns true.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let shop = Arc::clone(&state.0);
    let Some((client, producer)) = connect(&shop, &mut shutdown).await else {
        return;
    };
    let _ = shop.kafka.set(Kafka {
        client: client.clone(),
        producer: producer.clone(),
    });
    shop.ready.store(true, Ordering::Release);
    tracing::info!(bootstrap = %shop.config.bootstrap, instance = %shop.instance_id, "shop ready");

    // Consumers get connections of their own: a broker answers the requests
    // of one connection in order, so a long-polling Fetch would otherwise
    // hold back the Produce requests of the REST path behind it.
    let (Some(projector_client), Some(notifier_client)) = (
        shop.connect_client(&mut shutdown).await,
        shop.connect_client(&mut shutdown).await,
    ) else {
        return;
    };
    let tasks = vec![
        tokio::spawn(projector::run(
            Arc::clone(&shop),
            projector_client,
            shutdown.clone(),
        )),
        tokio::spawn(notifier::run(
            Arc::clone(&shop),
            notifier_client,
            producer.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(ws::push_stats(Arc::clone(&shop), shutdown.clone())),
        tokio::spawn(simulator::run(Arc::clone(&shop), shutdown.clone())),
    ];
    let _ = shutdown.wait_for(|s| *s).await;
    shop.ready.store(false, Ordering::Release);
    for task in tasks {
        let _ = task.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), producer.close()).await;
    if let Err(e) = shop.storage.flush().await {
        tracing::error!(error = %e, "cannot flush the read model");
    }
    tracing::info!("shop stopped");
}

impl Shop {
    /// A new client (with connections of its own) to the shop's cluster,
    /// retried until it connects or shutdown is asked for.
    pub async fn connect_client(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Client> {
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

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(&self.config.bootstrap);
        config.connection.client_id = "sluice-shop".to_owned();
        config
    }
}

/// Connect, create the topics and start a producer, retrying until it works
/// or shutdown is asked for.
async fn connect(shop: &Shop, shutdown: &mut watch::Receiver<bool>) -> Option<(Client, Producer)> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let client = Client::connect(shop.client_config()).await?;
            for topic in SHOP_TOPICS {
                client
                    .ensure_topic(
                        topic,
                        shop.config.partitions,
                        shop.config.replication_factor,
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
            Ok::<_, crate::client::ClientError>((client, producer))
        };
        let outcome = tokio::select! {
            r = attempt => r,
            _ = shutdown.wait_for(|s| *s) => return None,
        };
        match outcome {
            Ok(done) => return Some(done),
            Err(e) => {
                tracing::warn!(bootstrap = %shop.config.bootstrap, error = %e, "shop cannot reach Kafka yet");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|s| *s) => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
