//! The event-driven shop: orders, payments and deliveries as events in Kafka
//! topics (event sourcing), a read model kept by consumers (CQRS), and every
//! change pushed to browsers over WebSocket.
//!
//! Write path: a REST handler (`http::api`) parses the request
//! (`domain::validation`) and calls the command side (`commands`), which
//! checks it against the read model, builds an event (`domain::events`) and
//! produces it with acks=all through the internal Kafka client (`kafka`); the
//! 202 answer carries the event's topic, partition and offset. Read path: the
//! projector (`workers::projector`, a consumer group per node) applies events
//! to sled trees (`read_model`), then tells its listener, the WebSocket hub
//! (`http::hub`), which pushes what changed. The notifier (one group shared
//! by the cluster) turns notable events into `notifications`; the simulator
//! drives traffic through the same command side as the REST API; the replay
//! rebuilds the model from offset 0.
//!
//! Layers, top down (each file imports only the ones below it):
//! `http` -> `workers` -> `commands` -> `kafka`, `read_model` -> `domain`,
//! `config`. This file only builds the role handles and starts the tasks,
//! and reports the shop's readiness (`connecting`, then `ready` once it
//! accepts commands, `stopping`) to the node's `/readyz`.
//!
//! Must never: touch the broker's log or sled trees other than `app:*`
//! (Kafka is reached only through `crate::client`, so the shop runs against
//! any Kafka-compatible cluster given by `--bootstrap`), or import anything
//! of the broker.

mod commands;
mod config;
mod domain;
pub(crate) mod fuzzing;
mod http;
mod kafka;
mod read_model;
mod standalone;
mod workers;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use http::hub::Hub;
use kafka::KafkaLink;
use read_model::{ModelError, ReadModel};
use workers::projector::{ModelListener, Projector};
use workers::replay::Replay;
use workers::{dispatcher, notifier, payment_processor, projector, simulator};

pub use config::ShopConfig;
pub use http::AppState;
pub(crate) use http::{openapi_document, routes};
pub use standalone::{run_command, ShopCommand};

use crate::readiness::Component;
use crate::storage::Storage;

/// Opens the shop (see [`Shop::open`]).
pub struct Shop;

impl Shop {
    /// Open the shop's read model (its trees in `storage`, dropping any
    /// half-built replay, or the PostgreSQL database `config.read_model`)
    /// and build one handle per role over it.
    pub async fn open(storage: Storage, config: ShopConfig) -> Result<AppState, ModelError> {
        let (read_model, instance_id) =
            ReadModel::open(storage, config.read_model.as_deref()).await?;
        let read_model = Arc::new(read_model);
        let hub = Arc::new(Hub::new(config.ws_buffer, config.max_websocket_clients));
        let link = Arc::new(KafkaLink::new(config));
        let commands = Arc::new(commands::Commands::new(
            Arc::clone(&link),
            Arc::clone(&read_model),
        ));
        let replay = Arc::new(Replay::new(Arc::clone(&read_model), Arc::clone(&link)));
        Ok(AppState {
            commands,
            read_model,
            link,
            hub,
            simulator: Arc::new(simulator::Control::default()),
            replay,
            instance_id: instance_id.into(),
        })
    }
}

/// Connect to Kafka, create the topics, then run the consumers, the stats
/// push and the simulator until `shutdown` turns true. `readiness` is told
/// when the shop accepts commands (no more 503 "still connecting").
pub async fn run(state: AppState, readiness: Component, mut shutdown: watch::Receiver<bool>) {
    let link = Arc::clone(&state.link);
    let Some((client, producer)) = link.connect(&mut shutdown).await else {
        return;
    };
    link.set_connected(client, producer.clone());
    link.set_ready(true);
    readiness.set_ready();
    tracing::info!(bootstrap = %link.config().bootstrap, instance = %state.instance_id, "shop ready");

    // Consumers get connections of their own: a broker answers the requests
    // of one connection in order, so a long-polling Fetch would otherwise
    // hold back the Produce requests of the REST path behind it.
    let (Some(projector_client), Some(notifier_client), Some(dispatcher_client)) = (
        link.connect_client(&mut shutdown).await,
        link.connect_client(&mut shutdown).await,
        link.connect_client(&mut shutdown).await,
    ) else {
        return;
    };
    let listener: Arc<dyn ModelListener> = Arc::clone(&state.hub) as Arc<dyn ModelListener>;
    let projector = Projector {
        read_model: Arc::clone(&state.read_model),
        instance_id: state.instance_id.to_string(),
        listener,
        swaps: state.replay.take_receiver(),
    };
    let mut tasks = vec![
        tokio::spawn(projector::run(
            projector,
            projector_client,
            shutdown.clone(),
        )),
        tokio::spawn(notifier::run(
            notifier_client,
            producer.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(dispatcher::run(dispatcher_client, shutdown.clone())),
        tokio::spawn({
            let read_model = Arc::clone(&state.read_model);
            let shutdown = shutdown.clone();
            async move { read_model.follow(shutdown).await }
        }),
        tokio::spawn(http::ws::push_stats(
            Arc::clone(&state.read_model),
            Arc::clone(&state.hub),
            shutdown.clone(),
        )),
        tokio::spawn(simulator::run(
            Arc::clone(&state.commands),
            Arc::clone(&state.simulator),
            shutdown.clone(),
        )),
    ];
    if let Some(id) = link.config().payment_processor_id.clone() {
        let config = payment_processor::ProcessorConfig {
            client: link.client_config(),
            transactional_id: id,
        };
        tasks.push(tokio::spawn(payment_processor::run(
            config,
            shutdown.clone(),
        )));
    }
    let _ = shutdown.wait_for(|s| *s).await;
    readiness.set("stopping");
    link.set_ready(false);
    for task in tasks {
        let _ = task.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), producer.close()).await;
    if let Err(e) = state.read_model.flush().await {
        tracing::error!(error = %e, "cannot flush the read model");
    }
    tracing::info!("shop stopped");
}
