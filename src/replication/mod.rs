//! Partition replication in a cluster, Kafka's way: the metadata image says
//! who leads each partition; followers fetch from the leader (`fetcher`);
//! the leader tracks each follower's log end, moves the high watermark to
//! the minimum over the ISR, shrinks the ISR when a follower lags longer
//! than `replica.lag.time.max.ms` and expands it when it catches up
//! (proposing the change to the controller, as AlterPartition does).
//!
//! Owns: the role of every local replica (leader with its ISR state, or
//! follower of a leader in an epoch), the follower fetchers, the topic
//! changes that go through the controller (`topics`), and telling the
//! registered `LeadershipListener`s (the group coordinator) when this node
//! starts or stops leading a partition.
//!
//! Must never: decide leadership itself (the controller does, through the
//! image), append to a partition it does not lead except with batches
//! fetched from its leader, import a layer above it (the group coordinator,
//! the wire server), or speak in Kafka error codes (it returns `ReplicaError`).
//!
//! Locks: `roles` is held only for bookkeeping, never across I/O or an await;
//! `listeners` is taken alone and released before a listener is called.

mod fetcher;
pub mod placement;
mod reassign;
mod security;
pub mod share_state;
pub mod topics;

pub use crate::cluster::controller::{elect_leader, ElectionError, ElectionType};
pub use crate::cluster::quorum::{QuorumReplica, QuorumState};
pub use crate::cluster::ProposeError;
pub use reassign::{ReassignError, Reassignment};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::cluster::image::{Command, CommandResponse, MetadataImage, NO_LEADER};
use crate::cluster::{ClusterHandle, PROPOSE_TIMEOUT};
use crate::log::PartitionLog;

/// Why this node cannot serve a partition as its leader, or why a wait for
/// replication ended without the batch being committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("this node does not lead the partition")]
    NotLeaderOrFollower,
    #[error("the given leader epoch is older than the leader's")]
    FencedLeaderEpoch,
    #[error("the given leader epoch is newer than the leader's")]
    UnknownLeaderEpoch,
    #[error("this node does not host the partition")]
    UnknownTopicOrPartition,
    #[error("the ISR shrank below min.insync.replicas after the append")]
    NotEnoughReplicasAfterAppend,
    #[error("the high watermark did not reach the batch in time")]
    RequestTimedOut,
}

/// Check a client's idea of the leader epoch against ours (KIP-320): -1
/// means "no idea"; older is fenced, newer is unknown.
pub fn check_leader_epoch(requested: i32, current: i32) -> Result<(), ReplicaError> {
    if requested < 0 || requested == current {
        Ok(())
    } else if requested < current {
        Err(ReplicaError::FencedLeaderEpoch)
    } else {
        Err(ReplicaError::UnknownLeaderEpoch)
    }
}

/// Told when this node starts or stops leading a partition. A layer above
/// (the group coordinator, for `__consumer_offsets`) registers one, so that
/// replication never imports it.
pub trait LeadershipListener: Send + Sync {
    /// This node now leads `topic`/`partition` (called after the log took
    /// the new leader epoch).
    fn on_became_leader(&self, topic: &str, partition: i32);
    /// This node no longer leads `topic`/`partition`.
    fn on_leadership_lost(&self, topic: &str, partition: i32);
}

/// How replication behaves (Kafka's `replica.*` settings).
#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    /// A follower that has not caught up for this long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// How long a follower's fetch waits at the leader for new data.
    pub fetch_max_wait: Duration,
    /// Most bytes per partition in one follower fetch.
    pub fetch_partition_max_bytes: i32,
    /// Replication factor of topics created without one.
    pub default_replication_factor: i16,
    /// Partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_partitions: i32,
}

/// What a follower's fetch progress looks like to the leader.
#[derive(Debug, Clone, Copy)]
struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset); -1 unknown.
    log_end_offset: i64,
    /// The last time it was caught up: its fetch asked for everything the
    /// leader held when it answered the previous fetch (Kafka's rule, which
    /// a follower of a partition under constant load can meet).
    last_caught_up: Instant,
    /// The leader's log end when it answered this follower's last fetch.
    leader_end_at_last_fetch: i64,
}

/// A partition this node leads.
#[derive(Debug)]
struct LeaderState {
    epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    followers: HashMap<i32, FollowerProgress>,
    /// An ISR change was proposed and is not applied yet.
    isr_change_pending: bool,
}

/// The role of one local replica.
#[derive(Debug)]
enum Role {
    Leader(LeaderState),
    /// Following the partition's leader (or waiting for one to be elected).
    Follower,
}

type PartitionKey = (String, i32);

/// A partition whose produce waits for acks=all.
pub struct CommitWait {
    pub log: Arc<PartitionLog>,
    /// The offset the high watermark must reach.
    pub target: i64,
    /// `min.insync.replicas` of the topic.
    pub min_insync: usize,
}

/// The replication side of one cluster node.
pub struct ReplicaManager {
    broker: Arc<Broker>,
    cluster: ClusterHandle,
    settings: ReplicaSettings,
    me: i32,
    roles: Mutex<HashMap<PartitionKey, Role>>,
    fetchers: Mutex<HashMap<i32, fetcher::FetcherHandle>>,
    /// Who hears about leadership changes (registered before `start`).
    listeners: Mutex<Vec<Arc<dyn LeadershipListener>>>,
    /// Bumped after each reconcile, so topic changes can wait for it.
    reconciled: watch::Sender<u64>,
    /// Share-partition states on their way to the image.
    share_writer: share_state::ShareStateWriter,
    shutdown: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ReplicaManager {
    /// Create the manager; it does nothing until `start`, so listeners can
    /// register first and miss no leadership change.
    pub fn new(
        broker: Arc<Broker>,
        cluster: ClusterHandle,
        settings: ReplicaSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        Arc::new(ReplicaManager {
            me: broker.node_id(),
            broker,
            cluster,
            settings,
            roles: Mutex::new(HashMap::new()),
            fetchers: Mutex::new(HashMap::new()),
            listeners: Mutex::new(Vec::new()),
            reconciled: watch::channel(0).0,
            share_writer: Default::default(),
            shutdown,
        })
    }

    /// Register a listener for leadership changes.
    pub fn add_listener(&self, listener: Arc<dyn LeadershipListener>) {
        lock(&self.listeners).push(listener);
    }

    /// Start following the image: reconcile on every change, check ISRs,
    /// checkpoint high watermarks.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(Arc::clone(self).follow_image());
        tokio::spawn(Arc::clone(self).follow_security());
        tokio::spawn(Arc::clone(self).propose_pending_security());
        tokio::spawn(Arc::clone(self).maintain());
        tokio::spawn(Arc::clone(self).write_share_states());
    }

    fn listeners(&self) -> Vec<Arc<dyn LeadershipListener>> {
        lock(&self.listeners).clone()
    }

    /// Persist every partition's high watermark (at shutdown).
    pub fn checkpoint_all(&self) {
        for log in self.all_logs() {
            if let Err(e) = log.checkpoint_high_watermark() {
                tracing::warn!(topic = %log.topic, partition = log.partition, error = %e, "cannot checkpoint the high watermark");
            }
        }
    }

    pub fn cluster(&self) -> &ClusterHandle {
        &self.cluster
    }

    pub fn settings(&self) -> &ReplicaSettings {
        &self.settings
    }

    /// This node's broker id.
    pub fn node_id(&self) -> i32 {
        self.me
    }

    /// The applied image (a copy).
    pub fn image(&self) -> MetadataImage {
        self.cluster.image()
    }

    /// Whether the applied image has topic `name` (without copying it).
    pub fn has_topic(&self, name: &str) -> bool {
        self.cluster
            .read_image(|image| image.topics.contains_key(name))
    }

    /// The name of the topic with id `id` in the applied image.
    pub fn topic_name(&self, id: uuid::Uuid) -> Option<String> {
        self.cluster.read_image(|image| {
            image
                .topics
                .iter()
                .find(|(_, t)| t.topic_id == id)
                .map(|(name, _)| name.clone())
        })
    }

    /// The leader of a partition and its epoch, as the applied image has
    /// them (the leader is `NO_LEADER` while there is none).
    pub fn current_leader(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        self.cluster.read_image(|image| {
            let p = image
                .topics
                .get(topic)?
                .partitions
                .get(partition as usize)?;
            Some((p.leader, p.leader_epoch))
        })
    }

    /// Reconcile whenever the image changes, until shutdown.
    async fn follow_image(self: Arc<Self>) {
        let mut changes = self.cluster.subscribe();
        let mut shutdown = self.shutdown.clone();
        // The image on disk is the previous run's: this node may have lost
        // the unflushed tail of its logs since. It takes no role until this
        // run's registration is committed, which also moves its old
        // leaderships and ISR places elsewhere.
        let mut registered = self.cluster.registered_epoch();
        tokio::select! {
            r = registered.wait_for(|e| e.is_some()) => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        loop {
            let me = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || me.reconcile()).await {
                Ok(()) => {}
                Err(e) => tracing::error!(error = %e, "reconcile panicked"),
            }
            self.reconciled.send_modify(|n| *n += 1);
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        for (_, f) in lock(&self.fetchers).drain() {
            f.stop();
        }
        self.checkpoint_all();
    }

    /// Wait until the image has been reconciled after now (topic changes
    /// made through the controller are then visible in the local broker).
    pub async fn wait_reconciled(
        &self,
        until: impl Fn(&Broker) -> bool,
        timeout: Duration,
    ) -> bool {
        let mut rx = self.reconciled.subscribe();
        let deadline = Instant::now() + timeout;
        loop {
            if until(&self.broker) {
                return true;
            }
            match self
                .unless_stopping(tokio::time::timeout_at(deadline, rx.changed()))
                .await
            {
                Some(Ok(Ok(()))) => {}
                _ => return until(&self.broker),
            }
        }
    }

    /// `fut`'s result, or `None` as soon as this node starts to stop (so
    /// requests waiting on the cluster do not hold up the shutdown).
    pub async fn unless_stopping<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            out = fut => Some(out),
            _ = shutdown.wait_for(|s| *s) => None,
        }
    }

    fn all_logs(&self) -> Vec<Arc<PartitionLog>> {
        self.broker
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .collect()
    }

    /// Make local topics and replica roles match the image.
    fn reconcile(self: &Arc<Self>) {
        let image = self.cluster.image();
        let registered = *self.cluster.registered_epoch().borrow();
        let applied = image.brokers.get(&self.me).map(|b| b.liveness_epoch);
        if registered.is_none() || applied < registered {
            // This run's registration is not in the local image yet.
            return;
        }
        for local in self.broker.topics() {
            if local.from_image && !image.topics.contains_key(&local.name) {
                lock(&self.roles).retain(|(t, _), _| t != &local.name);
                if let Err(e) = self.broker.delete_topic(&local.name) {
                    tracing::error!(topic = %local.name, error = %e, "cannot delete a topic the image dropped");
                }
            }
        }
        let mut wanted_fetches: HashMap<i32, Vec<(PartitionKey, i32)>> = HashMap::new();
        for (name, t) in &image.topics {
            let topic = match self.broker.sync_topic(
                name,
                t.topic_id,
                t.partitions.len() as i32,
                &t.configs,
            ) {
                Ok(topic) => topic,
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "cannot create a topic of the image");
                    continue;
                }
            };
            for (index, p) in t.partitions.iter().enumerate() {
                let index = index as i32;
                let Some(log) = topic.partition(index) else {
                    continue;
                };
                if let Err(e) = log.set_replicated() {
                    tracing::error!(topic = %name, partition = index, error = %e, "cannot read the high watermark checkpoint");
                }
                let key = (name.clone(), index);
                if !p.replicas.contains(&self.me) {
                    self.drop_role(&key);
                    // Not (or no longer) a replica: a copy left from before
                    // a reassignment moved it away is deleted.
                    if log.log_end_offset() > 0 || log.log_start_offset() > 0 {
                        tracing::info!(topic = %name, partition = index, "no longer a replica; deleting the local copy");
                        if let Err(e) = log.reset_to(0) {
                            tracing::error!(topic = %name, partition = index, error = %e, "cannot delete the local copy");
                        }
                    }
                    continue;
                }
                if p.leader == self.me {
                    self.lead(&key, &log, p);
                } else {
                    let became = {
                        let mut roles = lock(&self.roles);
                        let was_leader = matches!(roles.get(&key), Some(Role::Leader(_)));
                        roles.insert(key.clone(), Role::Follower);
                        was_leader
                    };
                    log.set_leader_epoch(p.leader_epoch);
                    if became {
                        tracing::info!(topic = %name, partition = index, leader = p.leader, epoch = p.leader_epoch, "now following");
                        self.on_leadership_lost(&key);
                    }
                    if p.leader != NO_LEADER {
                        wanted_fetches
                            .entry(p.leader)
                            .or_default()
                            .push((key, p.leader_epoch));
                    }
                }
            }
        }
        self.update_fetchers(&image, wanted_fetches);
    }

    /// Take or keep the leadership of a partition as the image says.
    fn lead(
        self: &Arc<Self>,
        key: &PartitionKey,
        log: &Arc<PartitionLog>,
        p: &crate::cluster::image::PartitionImage,
    ) {
        let newly = {
            let mut roles = lock(&self.roles);
            match roles.get_mut(key) {
                Some(Role::Leader(ls)) if ls.epoch == p.leader_epoch => {
                    if ls.partition_epoch != p.partition_epoch {
                        ls.partition_epoch = p.partition_epoch;
                        ls.isr = p.isr.clone();
                        ls.replicas = p.replicas.clone();
                        ls.isr_change_pending = false;
                    }
                    false
                }
                _ => {
                    let now = Instant::now();
                    let followers = p
                        .replicas
                        .iter()
                        .filter(|r| **r != self.me)
                        .map(|r| {
                            (
                                *r,
                                FollowerProgress {
                                    log_end_offset: -1,
                                    last_caught_up: now,
                                    leader_end_at_last_fetch: -1,
                                },
                            )
                        })
                        .collect();
                    roles.insert(
                        key.clone(),
                        Role::Leader(LeaderState {
                            epoch: p.leader_epoch,
                            partition_epoch: p.partition_epoch,
                            replicas: p.replicas.clone(),
                            isr: p.isr.clone(),
                            followers,
                            isr_change_pending: false,
                        }),
                    );
                    true
                }
            }
        };
        if newly {
            if let Err(e) = log.become_leader(p.leader_epoch) {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot record the new leader epoch");
            }
            tracing::info!(topic = %key.0, partition = key.1, epoch = p.leader_epoch, "now leading");
            for listener in self.listeners() {
                listener.on_became_leader(&key.0, key.1);
            }
        }
        self.update_high_watermark(key, log);
    }

    fn drop_role(&self, key: &PartitionKey) {
        let was_leader = matches!(lock(&self.roles).remove(key), Some(Role::Leader(_)));
        if was_leader {
            self.on_leadership_lost(key);
        }
    }

    fn on_leadership_lost(&self, key: &PartitionKey) {
        for listener in self.listeners() {
            listener.on_leadership_lost(&key.0, key.1);
        }
    }

    /// Start, retarget and stop follower fetchers.
    fn update_fetchers(
        self: &Arc<Self>,
        image: &MetadataImage,
        wanted: HashMap<i32, Vec<(PartitionKey, i32)>>,
    ) {
        let mut fetchers = lock(&self.fetchers);
        fetchers.retain(|leader, f| {
            let keep = wanted.contains_key(leader) && !f.is_finished();
            if !keep {
                f.stop();
            }
            keep
        });
        for (leader, partitions) in wanted {
            let addr = image
                .brokers
                .get(&leader)
                .map(|b| b.kafka_addr.clone())
                .unwrap_or_default();
            let f = fetchers.entry(leader).or_insert_with(|| {
                fetcher::FetcherHandle::spawn(Arc::clone(self), leader, self.shutdown.clone())
            });
            f.set_target(addr, partitions.into_iter().collect::<BTreeMap<_, _>>());
        }
    }

    /// The log of a local partition.
    fn log(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.broker.topic(topic)?.partition(partition)
    }

    /// Ok when this node leads the partition (in `epoch`, if the client
    /// gave one), else why not.
    pub fn check_leader(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
    ) -> Result<(), ReplicaError> {
        match lock(&self.roles).get(&(topic.to_owned(), partition)) {
            Some(Role::Leader(ls)) => check_leader_epoch(epoch, ls.epoch),
            Some(Role::Follower) | None => Err(ReplicaError::NotLeaderOrFollower),
        }
    }

    /// How many ISR members can still acknowledge, when this node leads the
    /// partition (one lookup for the produce path), else why it cannot take
    /// the append. A follower that has not caught up within
    /// `replica.lag.time.max.ms` does not count, even while the ISR change
    /// that removes it is not committed (a leader cut off from the quorum
    /// cannot commit it): acks=all writes are refused with
    /// NOT_ENOUGH_REPLICAS rather than left to time out.
    ///
    /// A node out of contact with the controller for longer than it would
    /// take the controller to fence it and move its leaderships answers
    /// NOT_LEADER_OR_FOLLOWER instead: it cannot tell dead peers from being
    /// cut off itself, and clients retry NOT_ENOUGH_REPLICAS on the same
    /// broker, while NOT_LEADER_OR_FOLLOWER sends them to fresh metadata.
    pub fn leader_isr_len(&self, topic: &str, partition: i32) -> Result<usize, ReplicaError> {
        if !self.cluster.heartbeats().in_contact() {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        match lock(&self.roles).get(&(topic.to_owned(), partition)) {
            Some(Role::Leader(ls)) => {
                let now = Instant::now();
                let live = ls
                    .isr
                    .iter()
                    .filter(|b| {
                        **b == self.me
                            || ls.followers.get(b).is_some_and(|f| {
                                now.duration_since(f.last_caught_up)
                                    <= self.settings.replica_lag_time_max
                            })
                    })
                    .count();
                Ok(live)
            }
            Some(Role::Follower) | None => Err(ReplicaError::NotLeaderOrFollower),
        }
    }

    /// After a local append on a leader: an ISR of one commits at once.
    pub fn appended(&self, log: &PartitionLog) {
        self.update_high_watermark(&(log.topic.clone(), log.partition), log);
    }

    /// A follower fetched from `fetch_offset`: record its progress, move the
    /// high watermark, and propose it back into the ISR once caught up.
    /// Returns Ok, or the error for the follower.
    pub fn follower_fetched(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        replica: i32,
        fetch_offset: i64,
        epoch: i32,
    ) -> Result<(), ReplicaError> {
        let key = (topic.to_owned(), partition);
        let Some(log) = self.log(topic, partition) else {
            return Err(ReplicaError::UnknownTopicOrPartition);
        };
        let leo = log.log_end_offset();
        let expand = {
            let mut roles = lock(&self.roles);
            let Some(Role::Leader(ls)) = roles.get_mut(&key) else {
                return Err(ReplicaError::NotLeaderOrFollower);
            };
            check_leader_epoch(epoch, ls.epoch)?;
            if !ls.replicas.contains(&replica) {
                return Err(ReplicaError::NotLeaderOrFollower);
            }
            let now = Instant::now();
            let progress = ls.followers.entry(replica).or_insert(FollowerProgress {
                log_end_offset: -1,
                last_caught_up: now,
                leader_end_at_last_fetch: -1,
            });
            progress.log_end_offset = fetch_offset;
            let caught_up = fetch_offset >= leo
                || (progress.leader_end_at_last_fetch >= 0
                    && fetch_offset >= progress.leader_end_at_last_fetch);
            progress.leader_end_at_last_fetch = leo;
            if caught_up {
                progress.last_caught_up = now;
            }
            log.set_high_watermark(high_watermark(ls, self.me, leo));
            let caught_up = caught_up && fetch_offset >= log.high_watermark();
            if caught_up && !ls.isr.contains(&replica) && !ls.isr_change_pending {
                ls.isr_change_pending = true;
                let mut isr = ls.isr.clone();
                isr.push(replica);
                isr.sort_by_key(|b| ls.replicas.iter().position(|r| r == b));
                Some((isr, ls.partition_epoch))
            } else {
                None
            }
        };
        if let Some((isr, partition_epoch)) = expand {
            tracing::info!(
                topic,
                partition,
                replica,
                "follower caught up; expanding the ISR"
            );
            crate::metrics::global().isr_expand();
            self.propose_isr(key, isr, partition_epoch);
        }
        Ok(())
    }

    /// Set the high watermark of a partition this node leads.
    fn update_high_watermark(&self, key: &PartitionKey, log: &PartitionLog) {
        let leo = log.log_end_offset();
        if let Some(Role::Leader(ls)) = lock(&self.roles).get(key) {
            log.set_high_watermark(high_watermark(ls, self.me, leo));
        }
    }

    /// Propose a new ISR for a partition this node leads (AlterPartition).
    fn propose_isr(self: &Arc<Self>, key: PartitionKey, isr: Vec<i32>, partition_epoch: i32) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let command = Command::UpdatePartitionLeadership {
                name: key.0.clone(),
                partition: key.1,
                leader: me.me,
                isr: isr.clone(),
                partition_epoch,
            };
            let result = me.cluster.propose(command, PROPOSE_TIMEOUT).await;
            match &result {
                Ok(CommandResponse::Applied) => {
                    tracing::info!(topic = %key.0, partition = key.1, ?isr, "ISR changed")
                }
                other => {
                    tracing::info!(topic = %key.0, partition = key.1, result = ?other, "ISR change not applied")
                }
            }
            if !matches!(result, Ok(CommandResponse::Applied)) {
                if let Some(Role::Leader(ls)) = lock(&me.roles).get_mut(&key) {
                    ls.isr_change_pending = false;
                }
            }
        });
    }

    /// Every half second: shrink ISRs of lagging followers; every few
    /// seconds: checkpoint high watermarks.
    async fn maintain(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let now = Instant::now();
            let mut shrinks = Vec::new();
            {
                let mut roles = lock(&self.roles);
                for (key, role) in roles.iter_mut() {
                    let Role::Leader(ls) = role else { continue };
                    if ls.isr_change_pending {
                        continue;
                    }
                    let lagging: HashSet<i32> = ls
                        .isr
                        .iter()
                        .filter(|b| **b != self.me)
                        .filter(|b| {
                            ls.followers.get(b).is_none_or(|f| {
                                now.duration_since(f.last_caught_up)
                                    > self.settings.replica_lag_time_max
                            })
                        })
                        .copied()
                        .collect();
                    if !lagging.is_empty() {
                        ls.isr_change_pending = true;
                        let isr: Vec<i32> = ls
                            .isr
                            .iter()
                            .filter(|b| !lagging.contains(b))
                            .copied()
                            .collect();
                        shrinks.push((key.clone(), isr, ls.partition_epoch));
                    }
                }
            }
            for (key, isr, partition_epoch) in shrinks {
                tracing::info!(topic = %key.0, partition = key.1, ?isr, "followers lagging; shrinking the ISR");
                crate::metrics::global().isr_shrink();
                self.propose_isr(key, isr, partition_epoch);
            }
            if now.duration_since(last_checkpoint) >= Duration::from_secs(2) {
                last_checkpoint = now;
                let me = Arc::clone(&self);
                let _ = tokio::task::spawn_blocking(move || me.checkpoint_all()).await;
            }
        }
    }

    /// Wait until each partition's high watermark reaches its target
    /// (acks=all). Per partition: Ok, `NotEnoughReplicasAfterAppend` when the
    /// ISR shrank below `min.insync.replicas` meanwhile, `NotLeaderOrFollower`
    /// when leadership moved, or `RequestTimedOut`.
    pub async fn wait_committed(
        &self,
        waits: &[CommitWait],
        timeout: Duration,
    ) -> Vec<Result<(), ReplicaError>> {
        let deadline = Instant::now() + timeout;
        let mut results = Vec::with_capacity(waits.len());
        for w in waits {
            let mut rx = w.log.subscribe();
            let outcome = loop {
                // A node that stops hands its clients to the next leader
                // instead of holding them until their timeout.
                let isr = match self.leader_isr_len(&w.log.topic, w.log.partition) {
                    Ok(isr) if !*self.shutdown.borrow() => isr,
                    _ => break Err(ReplicaError::NotLeaderOrFollower),
                };
                // As Kafka's delayed produce: too few in-sync replicas left
                // to reach the target ends the wait at once.
                if isr < w.min_insync {
                    break Err(ReplicaError::NotEnoughReplicasAfterAppend);
                }
                if *rx.borrow_and_update() >= w.target || w.log.high_watermark() >= w.target {
                    break Ok(());
                }
                // Leadership changes do not touch the watermark: look again
                // now and then.
                let step = (Instant::now() + Duration::from_millis(200)).min(deadline);
                match tokio::time::timeout_at(step, rx.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break Err(ReplicaError::NotLeaderOrFollower),
                    Err(_) if Instant::now() >= deadline => {
                        break Err(ReplicaError::RequestTimedOut)
                    }
                    Err(_) => {}
                }
            };
            results.push(outcome);
        }
        results
    }

    /// One line per local replica for `/api/replicas`.
    pub fn describe(&self) -> Vec<ReplicaView> {
        let image = self.cluster.image();
        let roles = lock(&self.roles);
        let mut out = Vec::new();
        for (name, t) in &image.topics {
            let Some(topic) = self.broker.topic(name) else {
                continue;
            };
            for (index, p) in t.partitions.iter().enumerate() {
                if !p.replicas.contains(&self.me) {
                    continue;
                }
                let Some(log) = topic.partition(index as i32) else {
                    continue;
                };
                let role = match roles.get(&(name.clone(), index as i32)) {
                    Some(Role::Leader(_)) => "leader",
                    Some(Role::Follower) => "follower",
                    None => "none",
                };
                out.push(ReplicaView {
                    topic: name.clone(),
                    partition: index as i32,
                    role,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    log_start_offset: log.log_start_offset(),
                    log_end_offset: log.log_end_offset(),
                    high_watermark: log.high_watermark(),
                });
            }
        }
        out
    }

    /// The local logs of the replicas the image assigns to this node.
    pub fn hosted_logs(&self) -> Vec<Arc<PartitionLog>> {
        let me = self.node_id();
        let hosted: Vec<(String, i32)> = self.cluster().read_image(|image| {
            image
                .topics
                .iter()
                .flat_map(|(name, t)| {
                    t.partitions
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.replicas.contains(&me))
                        .map(move |(i, _)| (name.clone(), i as i32))
                })
                .collect()
        });
        hosted
            .into_iter()
            .filter_map(|(name, i)| self.broker().topic(&name)?.partition(i))
            .collect()
    }

    /// The broker this manager serves.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }
}

/// The smallest log end over the ISR (`leo` for this node, -1 for a
/// follower not heard from yet, which holds the watermark where it is).
fn high_watermark(ls: &LeaderState, me: i32, leo: i64) -> i64 {
    ls.isr
        .iter()
        .map(|b| {
            if *b == me {
                leo
            } else {
                ls.followers.get(b).map_or(-1, |f| f.log_end_offset)
            }
        })
        .min()
        .unwrap_or(leo)
}

/// One local replica as `/api/replicas` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicaView {
    pub topic: String,
    pub partition: i32,
    pub role: &'static str,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}
