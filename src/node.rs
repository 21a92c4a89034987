//! Wires one node: storage and broker, the Kafka listener, the HTTP listener,
//! the retention task, the readiness table its parts report into; and shuts
//! them down in order on SIGINT/SIGTERM (stop accepting, finish in-flight
//! requests, flush storage).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::config::NodeConfig;
use crate::group::{CoordinatorSettings, GroupCoordinator};
use crate::kafka::server::Services;
use crate::partition::Partitions;
use crate::readiness::Readiness;
use crate::txn::{TransactionCoordinator, TxnSettings};

/// Run a node until a shutdown signal arrives.
pub async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = shutdown_tx.send(true);
    });
    run_until(config, shutdown_rx).await
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Turn `stop_serving` true once a stop is `requested`: in a cluster after
/// the controlled shutdown (this node fenced, its leaderships moved to other
/// in-sync replicas while it still answers), bounded by `controlled`.
async fn stop_when_requested(
    mut requested: watch::Receiver<bool>,
    stop_serving: watch::Sender<bool>,
    cluster: Option<crate::cluster::ClusterHandle>,
    kafka_ready: crate::readiness::Component,
    controlled: Duration,
) {
    let _ = requested.wait_for(|s| *s).await;
    kafka_ready.set("stopping");
    if let Some(cluster) = cluster.filter(|_| !controlled.is_zero()) {
        crate::cluster::controller::controlled_shutdown(&cluster, controlled).await;
    }
    let _ = stop_serving.send(true);
}

/// Run a node until `shutdown` turns true.
pub async fn run_until(config: NodeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // `requested` turns true on SIGTERM; `shutdown` once the node may stop
    // serving: at once on a single node, after its controlled shutdown
    // (leaderships moved away) in a cluster.
    let requested = shutdown;
    let (stop_serving, mut shutdown) = watch::channel(false);
    // A task that holds a worker thread shows in the log with its length.
    if let Err(e) = crate::watchdog::start(tokio::runtime::Handle::current()) {
        tracing::warn!(error = %e, "cannot start the runtime stall detector");
    }
    let mut config = config;
    crate::limits::apply_descriptor_limit(&mut config);
    // Every part that must be up before clients are served reports here;
    // all are registered before the HTTP listener answers /readyz.
    let readiness = Readiness::new();
    let kafka_ready = readiness.component("kafka", "starting");
    let data_dir = config.data_dir.clone();
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .context("opening storage panicked")?
        .with_context(|| format!("cannot open data dir {}", data_dir.display()))?;
    let broker = Arc::new(broker);

    // The first listener is the inter-broker one: the cluster registers its
    // address, and the shop and follower fetchers connect to it.
    let kafka_listeners = crate::kafka::listener::bind_all(&broker.config).await?;
    let first = &kafka_listeners[0].1;
    let kafka_addr = first.bound;
    broker.set_advertised(first.advertised_host.clone(), first.advertised_port);
    for (_, l) in &kafka_listeners {
        tracing::info!(
            "kafka listener {} {} bound={} advertised={}:{}",
            l.name,
            l.protocol.name(),
            l.bound,
            l.advertised_host,
            l.advertised_port
        );
    }

    let http_listener = TcpListener::bind(broker.config.http_addr)
        .await
        .with_context(|| format!("cannot bind HTTP listener on {}", broker.config.http_addr))?;
    let http_addr = http_listener.local_addr()?;
    let http_tls = match (
        broker.config.http_tls,
        &broker.config.tls_cert,
        &broker.config.tls_key,
    ) {
        (false, _, _) => None,
        (true, Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key, None)?),
        (true, _, _) => anyhow::bail!("--http-tls needs --tls-cert and --tls-key"),
    };

    // With --peers the node is a member of the Raft metadata quorum: topics
    // follow the image, partitions are replicated, groups follow the
    // leadership of their __consumer_offsets partition.
    let settings = CoordinatorSettings::from_config(&broker.config);
    let txn_settings = TxnSettings::from_config(&broker.config);
    let (cluster, partitions, groups, txns) = match &broker.config.peers {
        Some(peers) => {
            let (host, port) = broker.advertised();
            let mut settings_cluster = crate::cluster::ClusterSettings::new(
                broker.config.node_id,
                peers,
                broker.config.cluster_addr,
                format!("{host}:{port}"),
                http_addr.to_string(),
            )?;
            settings_cluster.cluster_id = broker.cluster_id.clone();
            settings_cluster.auth =
                crate::cluster::auth::PeerAuth::from_flags(&broker.config.cluster_auth)?;
            settings_cluster.listeners = kafka_listeners
                .iter()
                .map(|(_, l)| {
                    let addr = format!("{}:{}", l.advertised_host, l.advertised_port);
                    (l.name.clone(), addr)
                })
                .collect();
            let raft_trees = broker
                .storage
                .raft_trees()
                .context("cannot open the Raft trees")?;
            let cluster =
                crate::cluster::start(settings_cluster, raft_trees, shutdown.clone()).await?;
            tokio::spawn(crate::cluster::readiness::report(
                cluster.clone(),
                readiness.component("cluster", "joining"),
                shutdown.clone(),
            ));
            let c = &broker.config;
            crate::cluster::controller::start(
                cluster.clone(),
                crate::cluster::controller::ControllerSettings {
                    heartbeat_interval: Duration::from_millis(
                        c.broker_heartbeat_interval_ms.max(10),
                    ),
                    session_timeout: Duration::from_millis(c.broker_session_timeout_ms.max(100)),
                    preferred_leader_interval: Duration::from_millis(
                        c.preferred_leader_interval_ms.max(100),
                    ),
                },
                shutdown.clone(),
            );
            let replica_settings = crate::replication::ReplicaSettings {
                replica_lag_time_max: Duration::from_millis(c.replica_lag_time_max_ms.max(100)),
                fetch_max_wait: Duration::from_millis(500),
                fetch_partition_max_bytes: 4 * 1024 * 1024,
                default_replication_factor: c.default_replication_factor,
                offsets_topic_partitions: c.offsets_topic_partitions,
            };
            let replicas = crate::replication::ReplicaManager::new(
                broker.clone(),
                cluster.clone(),
                replica_settings,
                shutdown.clone(),
            );
            let partitions = Partitions::replicated(broker.clone(), replicas.clone());
            // The coordinator registers for leadership changes before the
            // replica manager takes its first role.
            let groups = GroupCoordinator::start_unloaded(partitions.clone(), settings);
            let txns = TransactionCoordinator::start_unloaded(partitions.clone(), txn_settings);
            replicas.start();
            (Some(cluster), partitions, groups, txns)
        }
        None => {
            // The coordinator replays __consumer_offsets before the first client connects.
            let partitions = Partitions::local(broker.clone());
            let coordinator_partitions = partitions.clone();
            let groups = tokio::task::spawn_blocking(move || {
                GroupCoordinator::start_local(coordinator_partitions, settings)
            })
            .await
            .context("starting the group coordinator panicked")?
            .context("cannot start the group coordinator")?;
            let txn_partitions = partitions.clone();
            let txns = tokio::task::spawn_blocking(move || {
                TransactionCoordinator::start_local(txn_partitions, txn_settings)
            })
            .await
            .context("starting the transaction coordinator panicked")?
            .context("cannot start the transaction coordinator")?;
            (None, partitions, groups, txns)
        }
    };

    tokio::spawn(stop_when_requested(
        requested,
        stop_serving,
        cluster.clone(),
        kafka_ready.clone(),
        Duration::from_millis(broker.config.controlled_shutdown_timeout_ms),
    ));

    // The shop opens its read model now; it connects to Kafka once the listener runs.
    let shop = if broker.config.shop {
        let bootstrap = broker.config.bootstrap.clone().unwrap_or_else(|| {
            let (host, port) = broker.advertised();
            format!("{host}:{port}")
        });
        let mut shop_config = crate::app::ShopConfig::new(bootstrap);
        shop_config.partitions = broker.config.shop_partitions;
        shop_config.replication_factor = broker.config.shop_replication_factor;
        shop_config.max_websocket_clients = broker.config.max_websocket_clients;
        shop_config.payment_processor_id = broker
            .config
            .shop_payment_processor
            .then(|| format!("shop-payments-{}", broker.config.node_id));
        shop_config.read_model = broker.config.read_model.clone();
        let opened = crate::app::Shop::open(broker.storage.clone(), shop_config)
            .await
            .context("cannot open the shop's read model")?;
        Some(opened)
    } else {
        None
    };

    let shop_ready = shop
        .as_ref()
        .map(|_| readiness.component("shop", "connecting"));
    let router = crate::web::router(crate::web::WebState {
        readiness: readiness.clone(),
        cluster: crate::web::cluster_api::ClusterView {
            partitions: partitions.clone(),
            groups: groups.clone(),
            http_addr,
            peers: Default::default(),
        },
        app: shop.clone(),
    })
    .merge(crate::web::raft_api::router(cluster.clone()))
    .merge(crate::web::raft_api::replicas_router(partitions.clone()));
    let router = crate::web::guard::protect(router, &broker.config, broker.storage.clone());
    let http_broker = broker.clone();
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        crate::web::serve::serve(
            http_listener,
            router,
            &http_broker.config,
            http_tls,
            http_shutdown,
        )
        .await
    });

    let services = Arc::new(Services {
        partitions: partitions.clone(),
        groups: groups.clone(),
        transactions: txns.clone(),
    });
    let kafka_task = tokio::spawn(crate::kafka::server::serve_all(
        kafka_listeners,
        services,
        shutdown.clone(),
    ));
    let shop_task = shop
        .zip(shop_ready)
        .map(|(s, ready)| tokio::spawn(crate::app::run(s, ready, shutdown.clone())));

    let retention_broker = broker.clone();
    let mut retention_shutdown = shutdown.clone();
    let interval = Duration::from_millis(broker.config.retention_check_interval_ms.max(10));
    let retention_task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = retention_shutdown.wait_for(|s| *s) => return,
            }
            let b = retention_broker.clone();
            match tokio::task::spawn_blocking(move || b.apply_retention()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    segments = n,
                    "retention and compaction removed or rewrote segments"
                ),
                Err(e) => tracing::error!(error = %e, "retention task panicked"),
            }
        }
    });

    // fsync by time: every log whose appends waited `flush.ms` (or the
    // node's --flush-interval-ms). Acknowledged records are already in the
    // kernel; this bounds what a power loss could take.
    let flush_broker = broker.clone();
    let mut flush_shutdown = shutdown.clone();
    let flush_tick = Duration::from_millis(match broker.config.flush_interval_ms {
        0 => 100,
        ms => ms.clamp(10, 1000),
    });
    let flush_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(flush_tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = flush_shutdown.wait_for(|s| *s) => return,
            }
            let b = flush_broker.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || b.flush_due_logs()).await {
                tracing::error!(error = %e, "flush task panicked");
            }
        }
    });

    let trim_interval = broker.config.memory_trim_interval_ms;
    let mut trim_shutdown = shutdown.clone();
    let trim_task = tokio::spawn(async move {
        if trim_interval == 0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(trim_interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = trim_shutdown.wait_for(|s| *s) => return,
            }
            let _ = tokio::task::spawn_blocking(crate::alloc::release_free_memory).await;
        }
    });

    kafka_ready.set_ready();
    tracing::info!(
        "listening kafka_addr={kafka_addr} http_addr={http_addr} node_id={} data_dir={} startup_ms={}",
        broker.node_id(),
        broker.config.data_dir.display(),
        started.elapsed().as_millis()
    );

    let _ = shutdown.wait_for(|s| *s).await;
    kafka_ready.set("stopping");
    if let Some(task) = shop_task {
        // The shop flushes its read model and leaves its groups (bounded).
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    // Waiting JoinGroup/SyncGroup requests are answered before connections drain.
    groups.shutdown().await;
    txns.shutdown();
    let _ = kafka_task.await;
    let _ = http_task.await;
    let _ = retention_task.await;
    let _ = trim_task.await;
    let _ = flush_task.await;
    if let Some(rm) = partitions.replica_manager() {
        rm.checkpoint_all();
    }
    if let Some(cluster) = &cluster {
        cluster.shutdown().await;
    }
    let logs = broker.clone();
    tokio::task::spawn_blocking(move || logs.flush_all_logs())
        .await
        .context("final log flush panicked")?
        .context("final log flush failed")?;
    broker.storage.flush().await.context("final flush failed")?;
    tracing::info!("stopped; storage flushed");
    Ok(())
}
