//! `sluice cluster status` and `sluice cluster remove-node`: a running
//! cluster seen and changed from outside, the way the other admin commands
//! do it. `status` reads the HTTP API (`/api/raft` of the node given, then
//! of every broker it lists, for each one's own Raft position; a single node
//! answers `/api/cluster`); `remove-node` speaks the Kafka protocol
//! (UnregisterBroker, then Metadata until the broker is gone).
//!
//! Must never: reach into a node's internals; it reads what the node's
//! listeners answer.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use kafka_protocol::messages::{BrokerId, MetadataRequest, UnregisterBrokerRequest};
use serde::Serialize;
use serde_json::Value;

use crate::client::{BrokerConnection, ConnectionConfig};
use crate::cluster::image::{MetadataImage, NO_LEADER};
use crate::cluster::RaftStatus;

/// The `cluster` subcommands on a running cluster.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Nodes (alive, fenced, controller, Raft role, term and indexes),
    /// partitions per node, under-replicated and offline partitions, and the
    /// ongoing reassignments.
    Status {
        /// A node's HTTP listener, `host:port`.
        #[arg(long, env = "SLUICE_HTTP", default_value = "127.0.0.1:8080")]
        http: String,
        /// An HTTP API token (for nodes run with `--http-auth`).
        #[arg(long, env = "SLUICE_HTTP_TOKEN")]
        token: Option<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Remove a node from the cluster: its replicas move to the other live
    /// nodes first (reassignments), then it leaves the Raft voters and the
    /// metadata, and can be stopped (Kafka's UnregisterBroker).
    RemoveNode {
        /// The node's id (its `--node-id`).
        #[arg(long)]
        id: i32,
        /// A broker of the cluster, `host:port`.
        #[arg(long, env = "SLUICE_BOOTSTRAP", default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Give up waiting after this many seconds (the removal goes on).
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// Return once the removal has begun.
        #[arg(long)]
        no_wait: bool,
    },
}

/// Run one `cluster` subcommand.
pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status { http, token, json } => {
            let status = status(&http, token.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.table());
            }
            Ok(())
        }
        ClusterCommand::RemoveNode {
            id,
            bootstrap,
            timeout_secs,
            no_wait,
        } => remove_node(id, &bootstrap, Duration::from_secs(timeout_secs), no_wait).await,
    }
}

/// How long one HTTP call of `status` may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);

/// GET `path` from the HTTP listener at `addr` and decode its JSON.
async fn get_json(addr: &str, path: &str, token: Option<&str>) -> anyhow::Result<Value> {
    let call = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        let mut request = hyper::Request::get(path).header(hyper::header::HOST, addr);
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new())?)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "GET {path} on {addr}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(serde_json::from_slice(&body)?)
    };
    tokio::time::timeout(HTTP_TIMEOUT, call)
        .await
        .map_err(|_| anyhow!("{addr} did not answer within {HTTP_TIMEOUT:?}"))?
}

/// What `sluice cluster status --json` prints.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    /// `cluster` or `single-node`.
    pub mode: String,
    /// The controller (Raft leader), as the node asked knows it.
    pub controller: Option<i32>,
    pub nodes: Vec<NodeStatus>,
    pub partitions: PartitionCounts,
    pub under_replicated: Vec<String>,
    pub offline: Vec<String>,
    pub reassignments: Vec<ReassignmentStatus>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub id: i32,
    pub kafka_addr: String,
    pub http_addr: String,
    /// Registered, not fenced, and its HTTP listener answered.
    pub alive: bool,
    pub fenced: bool,
    /// Being removed from the cluster (its replicas are moving away).
    pub decommissioning: bool,
    pub controller: bool,
    /// A Raft voter.
    pub voter: bool,
    /// Its own Raft status; None when it did not answer.
    pub raft: Option<RaftStatus>,
    /// Replicas it holds, and how many of them it leads.
    pub replicas: usize,
    pub leaders: usize,
}

#[derive(Debug, Serialize)]
pub struct PartitionCounts {
    pub total: usize,
    pub under_replicated: usize,
    pub offline: usize,
    pub reassigning: usize,
}

#[derive(Debug, Serialize)]
pub struct ReassignmentStatus {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// Ask the node at `http`, then each broker it lists.
async fn status(http: &str, token: Option<&str>) -> anyhow::Result<ClusterStatus> {
    let raft = get_json(http, "/api/raft", token).await?;
    if raft["enabled"] != Value::Bool(true) {
        return single_node_status(http, token).await;
    }
    let image: MetadataImage = serde_json::from_value(raft["image"].clone())
        .context("the node's /api/raft has no metadata image")?;
    let here: RaftStatus = serde_json::from_value(raft["status"].clone())?;
    let here = &here;
    let asked = image.brokers.values().map(|b| async move {
        let status = if b.broker_id as u64 == here.node_id {
            Ok(here.clone())
        } else {
            get_json(&b.http_addr, "/api/raft", token)
                .await
                .and_then(|v| Ok(serde_json::from_value::<RaftStatus>(v["status"].clone())?))
        };
        (b.broker_id, status.ok())
    });
    let statuses: BTreeMap<i32, Option<RaftStatus>> =
        futures::future::join_all(asked).await.into_iter().collect();
    let controller = here.leader.map(|l| l as i32);
    let partitions = image.topics.values().flat_map(|t| t.partitions.iter());
    let nodes = image
        .brokers
        .values()
        .map(|b| {
            let raft = statuses.get(&b.broker_id).cloned().flatten();
            NodeStatus {
                id: b.broker_id,
                kafka_addr: b.kafka_addr.clone(),
                http_addr: b.http_addr.clone(),
                alive: !b.fenced && raft.is_some(),
                fenced: b.fenced,
                decommissioning: b.decommissioning,
                controller: controller == Some(b.broker_id),
                voter: here.voters.contains(&(b.broker_id as u64)),
                raft,
                replicas: partitions
                    .clone()
                    .filter(|p| p.replicas.contains(&b.broker_id))
                    .count(),
                leaders: partitions
                    .clone()
                    .filter(|p| p.leader == b.broker_id)
                    .count(),
            }
        })
        .collect();
    let mut under_replicated = Vec::new();
    let mut offline = Vec::new();
    let mut reassignments = Vec::new();
    let mut total = 0;
    for (name, t) in &image.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            total += 1;
            let label = format!("{name}-{i}");
            if p.leader == NO_LEADER {
                offline.push(label);
            } else if p.isr.len() < p.replicas.len() {
                under_replicated.push(label);
            }
            if p.reassigning() {
                reassignments.push(ReassignmentStatus {
                    topic: name.clone(),
                    partition: i as i32,
                    replicas: p.replicas.clone(),
                    adding_replicas: p.adding_replicas.clone(),
                    removing_replicas: p.removing_replicas.clone(),
                    isr: p.isr.clone(),
                });
            }
        }
    }
    Ok(ClusterStatus {
        cluster_id: image.cluster_id.clone(),
        mode: "cluster".into(),
        controller,
        nodes,
        partitions: PartitionCounts {
            total,
            under_replicated: under_replicated.len(),
            offline: offline.len(),
            reassigning: reassignments.len(),
        },
        under_replicated,
        offline,
        reassignments,
    })
}

/// A node without Raft: itself, leading every partition.
async fn single_node_status(http: &str, token: Option<&str>) -> anyhow::Result<ClusterStatus> {
    let info = get_json(http, "/api/cluster", token).await?;
    let total = info["topics"].as_array().map_or(0, |t| {
        t.iter()
            .map(|t| t["partitions"].as_array().map_or(0, Vec::len))
            .sum()
    });
    let id = info["controller_id"].as_i64().unwrap_or(0) as i32;
    let broker = info["brokers"]
        .as_array()
        .and_then(|b| b.first())
        .cloned()
        .unwrap_or_default();
    Ok(ClusterStatus {
        cluster_id: info["cluster_id"].as_str().unwrap_or_default().into(),
        mode: "single-node".into(),
        controller: Some(id),
        nodes: vec![NodeStatus {
            id,
            kafka_addr: broker["kafka_addr"].as_str().unwrap_or_default().into(),
            http_addr: http.into(),
            alive: true,
            fenced: false,
            decommissioning: false,
            controller: true,
            voter: false,
            raft: None,
            replicas: total,
            leaders: total,
        }],
        partitions: PartitionCounts {
            total,
            under_replicated: 0,
            offline: 0,
            reassigning: 0,
        },
        under_replicated: Vec::new(),
        offline: Vec::new(),
        reassignments: Vec::new(),
    })
}

impl ClusterStatus {
    /// The human-readable form: a node table, partition counts, and the
    /// under-replicated, offline and reassigning partitions.
    fn table(&self) -> String {
        let mut out = format!(
            "cluster {} ({}), controller {}\n\n",
            self.cluster_id,
            self.mode,
            self.controller
                .map_or_else(|| "none".to_string(), |c| c.to_string())
        );
        out.push_str(&format!(
            "{:<4} {:<22} {:<8} {:<10} {:<10} {:>6} {:>9} {:>9} {:>9} {:>8} {:>7}\n",
            "ID",
            "KAFKA",
            "STATE",
            "ROLE",
            "RAFT",
            "TERM",
            "LAST_LOG",
            "COMMITTED",
            "APPLIED",
            "REPLICAS",
            "LEADERS"
        ));
        let index = |i: Option<u64>| i.map_or_else(|| "-".to_string(), |i| i.to_string());
        for n in &self.nodes {
            let state = if n.decommissioning {
                "leaving"
            } else if n.fenced {
                "fenced"
            } else if n.alive {
                "alive"
            } else {
                "down"
            };
            let role = if n.controller {
                "controller"
            } else if n.voter {
                "voter"
            } else {
                "broker"
            };
            let (raft_role, term, last, committed, applied) = match &n.raft {
                Some(r) => (
                    r.role.clone(),
                    r.term.to_string(),
                    index(r.last_log_index),
                    index(r.committed_index),
                    index(r.last_applied_index),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
            };
            out.push_str(&format!(
                "{:<4} {:<22} {:<8} {:<10} {:<10} {:>6} {:>9} {:>9} {:>9} {:>8} {:>7}\n",
                n.id,
                n.kafka_addr,
                state,
                role,
                raft_role,
                term,
                last,
                committed,
                applied,
                n.replicas,
                n.leaders
            ));
        }
        let p = &self.partitions;
        out.push_str(&format!(
            "\npartitions: {} total, {} under-replicated, {} offline, {} reassigning\n",
            p.total, p.under_replicated, p.offline, p.reassigning
        ));
        if !self.under_replicated.is_empty() {
            out.push_str(&format!(
                "under-replicated: {}\n",
                self.under_replicated.join(" ")
            ));
        }
        if !self.offline.is_empty() {
            out.push_str(&format!("offline: {}\n", self.offline.join(" ")));
        }
        if !self.reassignments.is_empty() {
            out.push_str("\nREASSIGNING          REPLICAS     ADDING       REMOVING     ISR\n");
            let ids = |v: &[i32]| {
                v.iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            for r in &self.reassignments {
                out.push_str(&format!(
                    "{:<20} {:<12} {:<12} {:<12} {}\n",
                    format!("{}-{}", r.topic, r.partition),
                    ids(&r.replicas),
                    ids(&r.adding_replicas),
                    ids(&r.removing_replicas),
                    ids(&r.isr)
                ));
            }
        }
        out
    }
}

/// Ask the cluster to remove node `id`, then (unless `no_wait`) wait until
/// Metadata no longer lists it, printing its remaining replicas meanwhile.
async fn remove_node(
    id: i32,
    bootstrap: &str,
    timeout: Duration,
    no_wait: bool,
) -> anyhow::Result<()> {
    let addr = bootstrap
        .split(',')
        .next()
        .map(str::trim)
        .unwrap_or_default();
    let conn = BrokerConnection::connect(addr, &ConnectionConfig::default())
        .await
        .with_context(|| format!("cannot reach {addr}"))?;
    let mut req = UnregisterBrokerRequest::default();
    req.broker_id = BrokerId(id);
    let resp = conn.request(&req).await?;
    if resp.error_code != 0 {
        bail!(
            "node {id} not removed: error {} {}",
            resp.error_code,
            resp.error_message.as_deref().unwrap_or_default()
        );
    }
    println!("removing node {id}: its replicas move to the other nodes first");
    if no_wait {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_reported = usize::MAX;
    loop {
        let mut meta = MetadataRequest::default();
        meta.topics = None;
        let meta = conn.request(&meta).await?;
        let listed = meta.brokers.iter().any(|b| b.node_id.0 == id);
        let held = meta
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.replica_nodes.iter().any(|r| r.0 == id))
            .count();
        if !listed && held == 0 {
            println!("node {id} removed from the cluster; it can be stopped");
            return Ok(());
        }
        if held != last_reported {
            println!("node {id} still holds {held} replica(s)");
            last_reported = held;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("node {id} still in the cluster after {timeout:?} (the removal goes on)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
