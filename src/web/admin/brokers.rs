//! `GET /api/admin/brokers`: each broker of the administered cluster from
//! Metadata (address, rack, controller, leaders), and for this node's own
//! cluster what the Kafka protocol cannot tell: liveness of registered
//! brokers that Metadata leaves out, the Raft role and term (only where Raft
//! runs), and each node's version, uptime and disk use (from its `/readyz`,
//! whose `node` object `this_node` writes).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request};
use axum::Json;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::{Admin, AdminError};
use crate::web::cluster_api::ClusterView;

/// How long one peer's `/readyz` may take.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// When this process first served HTTP (its uptime's origin).
fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// Start the uptime clock (called when the router is built).
pub(crate) fn start_clock() {
    started();
}

/// What `/readyz` says of this node beside readiness: its id, version,
/// uptime and the bytes its partition logs take on disk.
pub(crate) fn this_node(view: &ClusterView) -> Value {
    let broker = view.partitions.broker();
    let disk: u64 = broker
        .topics()
        .iter()
        .flat_map(|t| {
            t.partitions()
                .iter()
                .map(|l| l.size_bytes())
                .collect::<Vec<_>>()
        })
        .sum();
    json!({
        "id": broker.node_id(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": started().elapsed().as_secs(),
        "disk_used_bytes": disk,
    })
}

/// The `node` object of a peer's `/readyz`, or None if it cannot be read.
async fn peer_node(http_addr: &str) -> Option<Value> {
    let stream = tokio::time::timeout(PEER_TIMEOUT, tokio::net::TcpStream::connect(http_addr))
        .await
        .ok()?
        .ok()?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream))
            .await
            .ok()?;
    let driver = tokio::spawn(connection);
    let request = Request::get("/readyz")
        .header(header::HOST, http_addr)
        .body(Body::empty())
        .ok()?;
    let answer = async {
        let response = sender.send_request(request).await.ok()?;
        let body = axum::body::to_bytes(Body::new(response.into_body()), 64 << 10)
            .await
            .ok()?;
        serde_json::from_slice::<Value>(&body)
            .ok()?
            .get("node")
            .cloned()
    };
    let node = tokio::time::timeout(PEER_TIMEOUT, answer)
        .await
        .ok()
        .flatten();
    driver.abort();
    node
}

/// `GET /api/admin/brokers`
pub(super) async fn list(State(admin): State<Admin>) -> Result<Json<Value>, AdminError> {
    let client = admin.client().await?;
    let cluster = client.describe_cluster().await?;
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    let mut replicas: BTreeMap<i32, usize> = BTreeMap::new();
    for t in &cluster.topics {
        for p in &t.partitions {
            *leaders.entry(p.leader).or_default() += 1;
            for r in &p.replicas {
                *replicas.entry(*r).or_default() += 1;
            }
        }
    }
    let local = admin
        .local()
        .map(|view| (super::super::cluster_api::describe(view), view));
    let mut rows: BTreeMap<i32, Value> = BTreeMap::new();
    for b in &cluster.brokers {
        rows.insert(
            b.node_id,
            json!({
                "id": b.node_id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "alive": true,
                "controller": b.node_id == cluster.controller_id,
                "leaders": leaders.get(&b.node_id).copied().unwrap_or(0),
                "replicas": replicas.get(&b.node_id).copied().unwrap_or(0),
                "raft_role": Value::Null,
                "raft_term": Value::Null,
                "version": Value::Null,
                "uptime_s": Value::Null,
                "disk_used_bytes": Value::Null,
                "http_addr": Value::Null,
            }),
        );
    }
    let mut mode = "external";
    if let Some((info, view)) = local {
        mode = info.mode;
        for b in &info.brokers {
            let row = rows.entry(b.id).or_insert_with(|| {
                let (host, port) = b
                    .kafka_addr
                    .rsplit_once(':')
                    .unwrap_or((&b.kafka_addr, "0"));
                json!({
                    "id": b.id, "host": host, "port": port.parse::<i32>().unwrap_or(0),
                    "rack": null, "controller": false, "leaders": 0, "replicas": 0,
                })
            });
            row["alive"] = Value::from(b.alive);
            row["http_addr"] = Value::from(b.http_addr.clone());
            // A single node runs no Raft: no role and no term to show.
            if info.mode == "cluster" {
                row["raft_role"] = Value::from(b.raft_role.clone());
                row["raft_term"] = Value::from(b.raft_term);
                row["controller"] = Value::from(b.controller);
            }
            let node = if b.this_node {
                Some(this_node(view))
            } else if b.alive {
                peer_node(&b.http_addr).await
            } else {
                None
            };
            if let Some(node) = node {
                for key in ["version", "uptime_s", "disk_used_bytes"] {
                    row[key] = node[key].clone();
                }
            }
            row["this_node"] = Value::from(b.this_node);
        }
    }
    Ok(Json(json!({
        "cluster_id": cluster.cluster_id,
        "controller_id": cluster.controller_id,
        "mode": mode,
        "brokers": rows.into_values().collect::<Vec<_>>(),
    })))
}
