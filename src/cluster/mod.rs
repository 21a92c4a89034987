//! The metadata quorum: a Raft group (openraft) whose log and state machine
//! live in this node's Raft trees (`storage::RaftTrees`), and whose state machine is the
//! metadata image (brokers, topics, partitions). The Raft leader is the
//! controller (`controller`).
//!
//! Owns: the Raft node (`start`), its storage (`store`), the image and its
//! commands (`image`), the controller's liveness duties (`controller`), the
//! cluster listener (`server`) and its client (`network`, `rpc`), the
//! quorum's state as DescribeQuorum reports it (`quorum`), the
//! node's readiness as a cluster member (`readiness`), and `sluice cluster`
//! (`launcher`). Other modules see only `ClusterHandle`:
//! Raft role, term and leader, the applied image and its changes, this
//! run's registration, and `propose` (which reaches the leader from any node).
//!
//! Must never touch partition logs or answer Kafka requests: replication
//! (`crate::replication`) follows the image and does both.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub mod auth;
pub mod controller;
mod decommission;
pub mod image;
pub mod launcher;
pub mod network;
pub mod quorum;
pub mod readiness;
pub mod rpc;
pub mod server;
pub mod share_states;
pub mod store;
pub mod tls;

use crate::storage::RaftTrees;
use image::{Command, CommandResponse, MetadataImage};
use store::{MetadataStateMachine, RaftLogStore};

openraft::declare_raft_types!(
    /// Raft types of the metadata quorum: commands in, command responses out,
    /// nodes known by their cluster listener address.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
);

/// Raft timing. Heartbeats every 100 ms; a follower that hears nothing for
/// 0.5-1 s starts an election (after the leader lease of openraft, which is
/// the election timeout), so a dead leader is replaced in about 1.5-2 s.
const HEARTBEAT_INTERVAL_MS: u64 = 100;
const ELECTION_TIMEOUT_MIN_MS: u64 = 500;
const ELECTION_TIMEOUT_MAX_MS: u64 = 1_000;
/// Build a snapshot of the image (and purge the log) after this many entries.
const SNAPSHOT_EVERY_ENTRIES: u64 = 1_000;
/// How long one peer status probe may take during start-up.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long `propose` keeps retrying while there is no reachable leader.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("bad --peers: {0}")]
    BadPeers(String),
    #[error("cannot bind the cluster listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("Raft storage: {0}")]
    Storage(String),
    #[error("Raft stopped: {0}")]
    Fatal(String),
    #[error("proposal failed: {0}")]
    Propose(#[from] ProposeError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
}

/// Why a proposal was not committed; sent over the cluster listener too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// The node asked is not the leader (the leader it knows, if any).
    #[error("not the Raft leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    #[error("{0}")]
    Failed(String),
}

/// Parse `--peers 1=HOST:PORT,2=HOST:PORT,...` into node id -> cluster address.
pub fn parse_peers(spec: &str) -> Result<BTreeMap<u64, String>, ClusterError> {
    let mut peers = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| ClusterError::BadPeers(format!("{item:?} is not ID=HOST:PORT")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| ClusterError::BadPeers(format!("{id:?} is not a node id")))?;
        let addr = addr.trim();
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(ClusterError::BadPeers(format!("{addr:?} is not HOST:PORT"))),
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(ClusterError::BadPeers(format!("node id {id} given twice")));
        }
    }
    if peers.is_empty() {
        return Err(ClusterError::BadPeers("no peers given".into()));
    }
    Ok(peers)
}

/// How this node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This node's Raft id (= broker id).
    pub node_id: u64,
    /// Where the cluster listener binds.
    pub bind_addr: SocketAddr,
    /// Every voter of the initial cluster, this node included: id -> cluster address.
    pub peers: BTreeMap<u64, String>,
    /// The Kafka address this broker advertises (registered in the image).
    pub kafka_addr: String,
    /// The HTTP address of this node (registered in the image).
    pub http_addr: String,
    /// This node's own cluster id, proposed for the image.
    pub cluster_id: String,
    /// How peers prove their membership (`--cluster-secret-file`, `--cluster-tls-*`).
    pub auth: auth::PeerAuth,
    /// Its advertised Kafka listeners (name -> `host:port`), registered in the image.
    pub listeners: BTreeMap<String, String>,
}

impl ClusterSettings {
    /// Settings from `--node-id`, `--peers` and `--cluster-addr` (which
    /// defaults to this node's own entry in `--peers`).
    pub fn new(
        node_id: i32,
        peers: &str,
        cluster_addr: Option<SocketAddr>,
        kafka_addr: String,
        http_addr: String,
    ) -> Result<Self, ClusterError> {
        let peers = parse_peers(peers)?;
        let node_id = u64::try_from(node_id)
            .map_err(|_| ClusterError::BadPeers(format!("--node-id {node_id} is negative")))?;
        let own = peers.get(&node_id).ok_or_else(|| {
            ClusterError::BadPeers(format!("--node-id {node_id} is not one of the peers"))
        })?;
        let bind_addr = match cluster_addr {
            Some(addr) => addr,
            None => own.parse().map_err(|_| {
                ClusterError::BadPeers(format!(
                    "give --cluster-addr: own peer address {own} is not IP:PORT"
                ))
            })?,
        };
        Ok(ClusterSettings {
            node_id,
            bind_addr,
            peers,
            kafka_addr,
            http_addr,
            cluster_id: String::new(),
            auth: auth::PeerAuth::default(),
            listeners: BTreeMap::new(),
        })
    }
}

/// What `/api/raft` and `/cluster/status` report about one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// This node's id.
    pub node_id: u64,
    /// Leader, Follower, Candidate, Learner or Shutdown.
    pub role: String,
    /// The current Raft term.
    pub term: u64,
    /// The leader this node knows of (the controller, later).
    pub leader: Option<u64>,
    /// Index of the last entry in this node's log.
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied to the image.
    pub last_applied_index: Option<u64>,
    /// Index of the last entry a majority of voters holds (known on the
    /// leader only, from its replication progress).
    pub committed_index: Option<u64>,
    /// The voters of the current membership.
    pub voters: Vec<u64>,
    /// True once this node has a Raft log (initialised or joined).
    pub initialized: bool,
}

/// A running Raft node. Cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<Inner>,
}

struct Inner {
    /// This node's id.
    node_id: u64,
    /// Every voter of the initial cluster: id -> cluster address.
    peers: BTreeMap<u64, String>,
    /// The Raft node.
    raft: Raft<TypeConfig>,
    /// Requests to peers, signed as `--cluster-secret-file`/`--cluster-tls-*` ask.
    rpc: rpc::RpcClient,
    /// The state machine, read for the image.
    state_machine: MetadataStateMachine,
    /// Brokers' heartbeats, as heard while this node is the controller.
    heartbeats: controller::SharedHeartbeats,
    /// The liveness epoch this run of the broker registered with; `None`
    /// until the registration is committed. Until then the image on disk
    /// is the previous run's: this node must neither lead nor follow by it.
    registered: watch::Sender<Option<u64>>,
}

impl ClusterHandle {
    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// The initial voters: id -> cluster address.
    pub fn peers(&self) -> &BTreeMap<u64, String> {
        &self.inner.peers
    }

    /// The client that sends this node's requests to its peers.
    pub fn rpc(&self) -> &rpc::RpcClient {
        &self.inner.rpc
    }

    /// The Raft node (for the cluster listener's handlers).
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    /// Role, term, leader and log position of this node now.
    pub fn status(&self) -> RaftStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        RaftStatus {
            node_id: self.inner.node_id,
            role: format!("{:?}", metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied.map(|l| l.index),
            committed_index: committed_index(&metrics),
            voters: metrics.membership_config.membership().voter_ids().collect(),
            initialized: metrics.last_log_index.is_some(),
        }
    }

    /// The metadata image as applied on this node (may lag the leader).
    pub fn image(&self) -> MetadataImage {
        self.inner.state_machine.applied().image
    }

    /// The liveness epoch of this run's registration, once committed.
    pub fn registered_epoch(&self) -> watch::Receiver<Option<u64>> {
        self.inner.registered.subscribe()
    }

    /// Heartbeats heard by this node as controller.
    pub fn heartbeats(&self) -> &controller::Heartbeats {
        &self.inner.heartbeats
    }

    /// Run `f` on the applied image without copying it (for lookups that
    /// need a few fields; `image()` copies the whole image).
    pub fn read_image<R>(&self, f: impl FnOnce(&MetadataImage) -> R) -> R {
        self.inner.state_machine.read_image(f)
    }

    /// Wakes after every change of the applied image.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.state_machine.subscribe()
    }

    /// The Raft leader this node knows of: the controller.
    pub fn controller(&self) -> Option<u64> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// True while this node is the Raft leader (and so the controller).
    pub fn is_controller(&self) -> bool {
        self.controller() == Some(self.inner.node_id)
    }

    /// Post `body` as JSON to `path` on the cluster listener of node `id`.
    pub async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        id: u64,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, ProposeError> {
        let addr = self
            .address_of(id)
            .ok_or_else(|| ProposeError::Failed(format!("node {id} has no known address")))?;
        self.inner
            .rpc
            .post_json(id, &addr, path, body, timeout)
            .await
            .map_err(|e| ProposeError::Failed(e.to_string()))
    }

    /// Commit `command` through the leader, from any node: proposed locally
    /// on the leader, forwarded to it otherwise; retried while there is no
    /// reachable leader, for up to `timeout`.
    pub async fn propose(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<CommandResponse, ProposeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let leader = self.inner.raft.metrics().borrow().current_leader;
            let attempt = match leader {
                Some(id) if id == self.inner.node_id => self.propose_local(command.clone()).await,
                Some(id) => self.forward(id, &command).await,
                None => Err(ProposeError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(response) => return Ok(response),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "proposal not committed yet; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Commit `command` if this node is the leader (never forwards).
    pub async fn propose_local(&self, command: Command) -> Result<CommandResponse, ProposeError> {
        match self.inner.raft.client_write(command).await {
            Ok(written) => Ok(written.data),
            Err(e) => Err(write_error(e)),
        }
    }

    /// On the leader: add node `node_id`, whose cluster listener is
    /// `cluster_addr`, as a voter. It first catches up as a learner, then
    /// the membership changes (joint consensus) to include it.
    pub async fn add_voter(&self, node_id: u64, cluster_addr: String) -> Result<(), ProposeError> {
        let raft = &self.inner.raft;
        raft.add_learner(node_id, BasicNode::new(cluster_addr), true)
            .await
            .map_err(write_error)?;
        let mut voters = self.voters();
        voters.insert(node_id);
        raft.change_membership(voters, false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// The voters of the current Raft membership.
    fn voters(&self) -> BTreeSet<u64> {
        self.inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// On the leader: remove node `node_id` from the voters (nothing when
    /// it is not one).
    pub async fn remove_voter(&self, node_id: u64) -> Result<(), ProposeError> {
        let mut voters = self.voters();
        if !voters.remove(&node_id) {
            return Ok(());
        }
        self.inner
            .raft
            .change_membership(voters, false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// The cluster address of node `id`: from the Raft membership (which
    /// knows nodes added later), else from `--peers`.
    fn address_of(&self, id: u64) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let from_membership = metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|node| node.addr.clone());
        from_membership.or_else(|| self.inner.peers.get(&id).cloned())
    }

    async fn forward(
        &self,
        leader: u64,
        command: &Command,
    ) -> Result<CommandResponse, ProposeError> {
        let addr = self
            .address_of(leader)
            .ok_or_else(|| ProposeError::Failed(format!("leader {leader} has no known address")))?;
        let answer: Result<CommandResponse, ProposeError> = self
            .inner
            .rpc
            .post_json(
                leader,
                &addr,
                server::PROPOSE_PATH,
                command,
                PROPOSE_TIMEOUT,
            )
            .await
            .map_err(|e| ProposeError::Failed(e.to_string()))?;
        answer
    }

    /// Stop the Raft node (its storage is flushed on every vote and append).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
    }
}

/// A failed client write or membership change, as a `ProposeError`.
fn write_error(e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader {
            leader: f.leader_id,
        },
        other => ProposeError::Failed(other.to_string()),
    }
}

/// Start this node's Raft member on its Raft trees, bind the cluster
/// listener, initialise the cluster once if this node is the lowest id and
/// every peer is reachable and uninitialised, and register this broker in
/// the image. Returns once the listener runs; the rest happens in the
/// background until `shutdown` turns true.
pub async fn start(
    settings: ClusterSettings,
    trees: RaftTrees,
    shutdown: watch::Receiver<bool>,
) -> Result<ClusterHandle, ClusterError> {
    let log_store = RaftLogStore::new(trees.clone());
    let state_machine =
        MetadataStateMachine::open(trees).map_err(|e| ClusterError::Storage(e.to_string()))?;
    let config = openraft::Config {
        cluster_name: "sluice".into(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_ENTRIES),
        ..Default::default()
    };
    let config = Arc::new(
        config
            .validate()
            .map_err(|e| ClusterError::Fatal(e.to_string()))?,
    );
    settings.auth.check_bind(settings.bind_addr)?;
    let rpc = rpc::RpcClient::new(settings.auth.clone());
    let listener = tokio::net::TcpListener::bind(settings.bind_addr)
        .await
        .map_err(|source| ClusterError::Bind {
            addr: settings.bind_addr,
            source,
        })?;
    let raft = Raft::new(
        settings.node_id,
        config,
        network::HttpNetworkFactory::new(rpc.clone()),
        log_store,
        state_machine.clone(),
    )
    .await
    .map_err(|e| ClusterError::Fatal(e.to_string()))?;
    let handle = ClusterHandle {
        inner: Arc::new(Inner {
            node_id: settings.node_id,
            peers: settings.peers.clone(),
            raft,
            rpc,
            state_machine,
            heartbeats: Default::default(),
            registered: watch::channel(None).0,
        }),
    };
    let bound = listener.local_addr().unwrap_or(settings.bind_addr);
    tokio::spawn(server::serve(
        listener,
        handle.clone(),
        settings.auth.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(bootstrap(handle.clone(), settings, shutdown));
    tracing::info!(
        "cluster listening cluster_addr={bound} node_id={}",
        handle.node_id()
    );
    Ok(handle)
}

/// Initialise the cluster once, then register this broker.
async fn bootstrap(
    handle: ClusterHandle,
    settings: ClusterSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    let lowest = settings.peers.keys().next().copied();
    loop {
        match handle.raft().is_initialized().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "Raft stopped before joining the cluster");
                return;
            }
        }
        if lowest == Some(settings.node_id) && peers_ready_for_initialise(&handle, &settings).await
        {
            let members: BTreeMap<u64, BasicNode> = settings
                .peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            match handle.raft().initialize(members).await {
                Ok(()) => {
                    tracing::info!(voters = ?settings.peers.keys().collect::<Vec<_>>(), "initialised the Raft cluster")
                }
                // Already initialised (by an earlier run): nothing to do.
                Err(e) => tracing::info!(error = %e, "Raft cluster not initialised by this node"),
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(1));
    }

    let command = Command::RegisterBroker {
        broker_id: settings.node_id as i32,
        kafka_addr: settings.kafka_addr.clone(),
        http_addr: settings.http_addr.clone(),
        cluster_addr: settings
            .peers
            .get(&settings.node_id)
            .cloned()
            .unwrap_or_default(),
        cluster_id: settings.cluster_id.clone(),
        listeners: settings.listeners.clone(),
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        match handle.propose(command.clone(), PROPOSE_TIMEOUT).await {
            Ok(CommandResponse::BrokerRegistered { liveness_epoch }) => {
                tracing::info!(liveness_epoch, "broker registered in the metadata image");
                handle.inner.registered.send_replace(Some(liveness_epoch));
                return;
            }
            Ok(other) => {
                tracing::error!(response = ?other, "broker registration refused");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "broker registration not committed yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// True when every other peer answers and none has a Raft log yet: then the
/// lowest id may initialise without creating a second cluster.
async fn peers_ready_for_initialise(handle: &ClusterHandle, settings: &ClusterSettings) -> bool {
    for (id, addr) in &settings.peers {
        if *id == settings.node_id {
            continue;
        }
        let status =
            handle
                .rpc()
                .get_json::<RaftStatus>(*id, addr, rpc::STATUS_PATH, PROBE_TIMEOUT);
        match status.await {
            Ok(status) if !status.initialized => {}
            Ok(_) => return false,
            Err(e) => {
                tracing::debug!(peer = id, error = %e, "peer not reachable yet");
                return false;
            }
        }
    }
    true
}

/// The highest log index held by a majority of the voters, from the
/// leader's replication progress (None on a follower, which does not know).
fn committed_index(metrics: &openraft::RaftMetrics<u64, BasicNode>) -> Option<u64> {
    let replication = metrics.replication.as_ref()?;
    let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
    let mut matched: Vec<u64> = voters
        .iter()
        .map(|voter| {
            if *voter == metrics.id {
                metrics.last_log_index.unwrap_or(0)
            } else {
                replication
                    .get(voter)
                    .and_then(|l| l.as_ref())
                    .map_or(0, |l| l.index)
            }
        })
        .collect();
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(voters.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject_malformed_lists() {
        let peers = parse_peers("1=127.0.0.1:7001, 2=localhost:7002,3=[::1]:7003").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&2], "localhost:7002");
        for bad in ["", "1=127.0.0.1", "x=127.0.0.1:1", "1=a:1,1=b:2", "1:a:1"] {
            assert!(parse_peers(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn settings_require_own_id_among_peers_and_default_the_bind_address() {
        let peers = "1=127.0.0.1:7001,2=127.0.0.1:7002";
        let s = ClusterSettings::new(2, peers, None, "k".into(), "h".into()).unwrap();
        assert_eq!(s.bind_addr, "127.0.0.1:7002".parse().unwrap());
        assert!(ClusterSettings::new(3, peers, None, "k".into(), "h".into()).is_err());
        assert!(ClusterSettings::new(-1, peers, None, "k".into(), "h".into()).is_err());
    }
}
