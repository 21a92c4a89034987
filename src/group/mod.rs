//! The group coordinator of the classic consumer-group protocol, and the
//! committed offsets it keeps.
//!
//! Owns: every group's state machine (Empty, PreparingRebalance,
//! CompletingRebalance, Stable, Dead), generations, protocol selection,
//! session and rebalance timeouts, static membership (KIP-345), and the
//! internal topic `__consumer_offsets`, where offset commits and group
//! metadata are written as records in Kafka's format, partitioned by group as
//! Kafka does. The in-memory state is rebuilt by replaying that topic at start.
//!
//! Must never: block while holding a group's lock (waiting JoinGroup and
//! SyncGroup requests hold a channel, not the lock), nor write to any topic
//! other than `__consumer_offsets`. The wire format lives in `api`; the
//! Kafka listener only routes requests here.
//!
//! Locks: a group's lock may be taken first and the groups map's lock inside
//! it, never the other way round (the map lock is held only to look up,
//! insert or remove an entry).

pub mod consumer;
mod membership;
mod offsets;
pub mod records;
pub mod share;
pub mod state;
mod txn_offsets;
pub mod store {
    //! The keyed log of `__consumer_offsets` lives in `log::keyed`.
    pub use crate::log::keyed::*;
}

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::broker::{Broker, TopicError};
use crate::cluster::image::{host_port, MetadataImage, NO_LEADER};
use crate::config::NodeConfig;
use crate::partition::Partitions;
use crate::replication::LeadershipListener;
pub use membership::{JoinRequest, SyncRequest};
pub use offsets::{CommitRequest, PartitionCommit, TopicOffsets};
use records::{GroupValue, OffsetValue, RecordKey, OFFSETS_TOPIC};
use state::Group;
pub use state::GroupState;
use store::{OffsetsLog, StoreError};
use CoordinatorError as E;

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("cannot create {OFFSETS_TOPIC}: {0}")]
    Topic(#[from] TopicError),
    #[error("cannot load {OFFSETS_TOPIC}: {0}")]
    Store(#[from] StoreError),
}

/// Why the coordinator refused a request (`kafka::errors` maps each to its
/// Kafka error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    #[error("this node does not coordinate the group")]
    NotCoordinator,
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    #[error("the generation is not the group's")]
    IllegalGeneration,
    #[error("the member's protocols do not match the group's")]
    InconsistentGroupProtocol,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("unknown member")]
    UnknownMemberId,
    #[error("the session timeout is outside the allowed range")]
    InvalidSessionTimeout,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("the group has members")]
    NonEmptyGroup,
    #[error("no such group")]
    GroupIdNotFound,
    #[error("a member id is required")]
    MemberIdRequired,
    #[error("a newer member took this static instance id")]
    FencedInstanceId,
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("the offset metadata is too large")]
    OffsetMetadataTooLarge,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("the commit was not replicated in time")]
    RequestTimedOut,
    #[error("the member epoch is not the member's")]
    FencedMemberEpoch,
    #[error("the static instance id is still held by a member")]
    UnreleasedInstanceId,
    #[error("unknown server assignor")]
    UnsupportedAssignor,
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    #[error("the request is invalid")]
    InvalidRequest,
    #[error("invalid regular expression")]
    InvalidRegularExpression,
    #[error("the records are not acquired by this member")]
    InvalidRecordState,
    #[error("no such share session")]
    ShareSessionNotFound,
    #[error("the share session epoch is not the session's")]
    InvalidShareSessionEpoch,
    #[error("unknown topic id")]
    UnknownTopicId,
    #[error("this node does not lead the partition")]
    NotLeaderOrFollower,
}

/// The answer to one group operation (or one partition or member of it).
pub type Outcome = Result<(), CoordinatorError>;

/// How the coordinator behaves (Kafka's `group.*` and `offsets.*` settings).
#[derive(Debug, Clone)]
pub struct CoordinatorSettings {
    /// How long the first rebalance of an empty group waits for more members
    /// (`group.initial.rebalance.delay.ms`).
    pub initial_rebalance_delay: Duration,
    /// Partitions of `__consumer_offsets` when this node creates it.
    pub offsets_topic_partitions: i32,
    /// How long offsets of an empty group are kept (`offsets.retention.minutes`).
    pub offsets_retention: Duration,
    /// How often expired offsets and offsets of deleted topics are removed.
    pub offsets_retention_check_interval: Duration,
    /// Session timeouts outside this range are refused with INVALID_SESSION_TIMEOUT.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// How long a new member may wait in a rebalance without heartbeats.
    pub new_member_join_timeout: Duration,
    /// The longest the sweeper sleeps before it looks for new deadlines
    /// (it wakes at the earliest session, pending member or sync deadline
    /// it knows, so each member expires at its own deadline).
    pub sweep_interval: Duration,
    /// Consumer-protocol members are fenced this long after their last
    /// heartbeat (`group.consumer.session.timeout.ms`).
    pub consumer_session_timeout: Duration,
    /// How often consumer-protocol members heartbeat
    /// (`group.consumer.heartbeat.interval.ms`).
    pub consumer_heartbeat_interval: Duration,
    /// Whether classic and consumer-protocol members may share a group and
    /// which way a group in use converts (`group.consumer.migration.policy`).
    pub consumer_migration_policy: consumer::MigrationPolicy,
    /// Share groups' locks and limits (`group.share.*`).
    pub share: share::ShareSettings,
}

impl CoordinatorSettings {
    /// The node's settings: its flags, and Kafka's defaults for the rest.
    pub fn from_config(config: &NodeConfig) -> Self {
        CoordinatorSettings {
            initial_rebalance_delay: Duration::from_millis(config.group_initial_rebalance_delay_ms),
            offsets_topic_partitions: config.offsets_topic_partitions,
            offsets_retention: Duration::from_secs(
                config.offsets_retention_minutes.saturating_mul(60),
            ),
            offsets_retention_check_interval: Duration::from_secs(60),
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            new_member_join_timeout: Duration::from_secs(300),
            sweep_interval: Duration::from_millis(100),
            consumer_session_timeout: Duration::from_millis(
                config.group_consumer_session_timeout_ms,
            ),
            consumer_heartbeat_interval: Duration::from_millis(
                config.group_consumer_heartbeat_interval_ms,
            ),
            consumer_migration_policy: config
                .group_consumer_migration_policy
                .parse()
                .unwrap_or_default(),
            share: share::ShareSettings::from_config(config),
        }
    }
}

/// Committed offset, log end offset and lag of one partition for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// The high watermark: what a consumer can read up to.
    pub log_end_offset: i64,
    /// Records between the committed offset and the log end (0 if none).
    pub lag: i64,
}

/// A cheap handle on one group.
type GroupRef = Arc<Mutex<Group>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The longest a deadline task sleeps without looking (shorter than any
/// session, so every member is fenced at its own deadline, not later).
const DEADLINE_TASK_MAX_SLEEP: Duration = Duration::from_millis(1000);

/// The earlier of two optional deadlines.
fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl GroupCoordinator {
    /// Until shutdown: run `expire` (which acts on what is due at `now` and
    /// returns the next deadline), then sleep until that deadline, at most
    /// [`DEADLINE_TASK_MAX_SLEEP`].
    async fn run_at_deadlines(
        self: Arc<Self>,
        expire: impl Fn(&Arc<Self>, Instant) -> Option<Instant>,
    ) {
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let now = Instant::now();
            let latest = now + DEADLINE_TASK_MAX_SLEEP;
            let wake = expire(&self, now).map_or(latest, |e| e.min(latest));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Wall-clock milliseconds since the epoch (commit timestamps, retention).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The coordinator of every group whose `__consumer_offsets` partition this
/// node leads (on a single node: all of them).
pub struct GroupCoordinator {
    broker: Arc<Broker>,
    /// Where commits are replicated (a replication set of one on a single node).
    partition_layer: Arc<Partitions>,
    settings: CoordinatorSettings,
    /// Every known group by id.
    groups: Mutex<HashMap<String, GroupRef>>,
    /// The writer of each `__consumer_offsets` partition this node leads,
    /// by index (on a single node: all of them).
    partitions: RwLock<Vec<Option<Arc<OffsetsLog>>>>,
    /// Turns true once; timers and the sweeper stop, waiting requests fail.
    shutdown: watch::Sender<bool>,
    /// The task that expires sessions and offsets.
    sweeper: Mutex<Option<JoinHandle<()>>>,
    /// Share groups (KIP-932) and their share-partitions.
    share: share::ShareGroups,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("groups", &lock(&self.groups).len())
            .field("partitions", &self.partition_count())
            .finish()
    }
}

impl GroupCoordinator {
    /// Create `__consumer_offsets` if missing, replay it into the groups,
    /// and start the session/retention sweeper. Must run inside a tokio runtime.
    #[cfg(test)]
    pub fn start(
        broker: Arc<Broker>,
        settings: CoordinatorSettings,
    ) -> Result<Arc<Self>, GroupError> {
        Self::start_local(Partitions::local(broker), settings)
    }

    /// Create `__consumer_offsets` on a single node's partition layer if
    /// missing, replay it into the groups, and start the session/retention
    /// sweeper. Must run inside a tokio runtime.
    pub fn start_local(
        partition_layer: Arc<Partitions>,
        settings: CoordinatorSettings,
    ) -> Result<Arc<Self>, GroupError> {
        let broker = partition_layer.broker().clone();
        let started = std::time::Instant::now();
        let topic = match broker.topic(OFFSETS_TOPIC) {
            Some(t) => t,
            None => {
                let overrides = BTreeMap::from([
                    ("cleanup.policy".to_owned(), "compact".to_owned()),
                    ("retention.ms".to_owned(), "-1".to_owned()),
                    ("retention.bytes".to_owned(), "-1".to_owned()),
                    // As Kafka: small segments, so that what the coordinator's
                    // snapshots make obsolete leaves the disk soon.
                    ("segment.bytes".to_owned(), "104857600".to_owned()),
                ]);
                match broker.create_topic(
                    OFFSETS_TOPIC,
                    settings.offsets_topic_partitions,
                    -1,
                    overrides,
                    false,
                ) {
                    Ok(t) => t,
                    Err(TopicError::AlreadyExists(_)) => broker
                        .topic(OFFSETS_TOPIC)
                        .ok_or_else(|| TopicError::Unknown(OFFSETS_TOPIC.to_owned()))?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let now = Instant::now();
        let now_wall = now_ms();
        let mut loading = Loading::new(settings.consumer_session_timeout);
        let mut partitions = Vec::new();
        let mut replayed = 0usize;
        for log in topic.partitions() {
            let (store, records) = OffsetsLog::open(log)?;
            replayed += records.len();
            for (key, value) in records {
                loading.apply(&key, value.as_ref(), now, now_wall);
            }
            partitions.push(Some(Arc::new(store)));
        }
        let groups = loading.finish();
        tracing::info!(
            groups = groups.len(),
            records = replayed,
            partitions = partitions.len(),
            load_ms = started.elapsed().as_millis() as u64,
            "group coordinator loaded {OFFSETS_TOPIC}"
        );
        Ok(Self::with_partitions(
            partition_layer,
            settings,
            groups,
            partitions,
        ))
    }

    /// A coordinator for a cluster node: it coordinates nothing until this
    /// node leads a `__consumer_offsets` partition (`load_partition`), and
    /// gives it up when leadership moves; it registers itself as the
    /// partition layer's leadership listener to hear of both.
    pub fn start_unloaded(
        partition_layer: Arc<Partitions>,
        settings: CoordinatorSettings,
    ) -> Arc<Self> {
        let count = settings.offsets_topic_partitions.max(1) as usize;
        let coordinator =
            Self::with_partitions(partition_layer, settings, HashMap::new(), vec![None; count]);
        coordinator
            .partition_layer
            .add_leadership_listener(Arc::new(OffsetsLeadership(Arc::downgrade(&coordinator))));
        coordinator
    }

    fn with_partitions(
        partition_layer: Arc<Partitions>,
        settings: CoordinatorSettings,
        groups: HashMap<String, GroupRef>,
        partitions: Vec<Option<Arc<OffsetsLog>>>,
    ) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        // Share-partitions are stored in the node's tree, or a cluster's image.
        let share_store = match partition_layer.replica_manager() {
            Some(rm) => share::ShareStore::Cluster(Arc::clone(rm)),
            None => share::ShareStore::Tree(
                partition_layer
                    .broker()
                    .storage
                    .share_state_tree()
                    .map_err(|e| tracing::error!(error = %e, "cannot open the share groups' tree"))
                    .ok(),
            ),
        };
        let share = share::ShareGroups::open(settings.share, share_store);
        let coordinator = Arc::new(GroupCoordinator {
            broker: partition_layer.broker().clone(),
            partition_layer,
            settings,
            groups: Mutex::new(groups),
            partitions: RwLock::new(partitions),
            shutdown,
            sweeper: Mutex::new(None),
            share,
        });
        let task = tokio::spawn(Arc::clone(&coordinator).run_sweeper());
        *lock(&coordinator.sweeper) = Some(task);
        tokio::spawn(Arc::clone(&coordinator).run_consumer_sessions());
        tokio::spawn(Arc::clone(&coordinator).run_share_deadlines());
        coordinator.listen_for_txn_markers();
        coordinator
    }

    fn partition_count(&self) -> usize {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Become the coordinator of the groups in `__consumer_offsets`
    /// partition `partition`: replay it (this node now leads it).
    pub fn load_partition(&self, partition: i32) -> Result<(), GroupError> {
        let index = usize::try_from(partition).unwrap_or(usize::MAX);
        if index >= self.partition_count() {
            return Ok(());
        }
        let log = self
            .broker
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.partition(partition))
            .ok_or_else(|| TopicError::Unknown(format!("{OFFSETS_TOPIC}-{partition}")))?;
        let (store, records) = OffsetsLog::open(log)?;
        let now = Instant::now();
        let now_wall = now_ms();
        let mut loading = Loading::new(self.settings.consumer_session_timeout);
        let replayed = records.len();
        for (key, value) in records {
            loading.apply(&key, value.as_ref(), now, now_wall);
        }
        let loaded = loading.finish();
        let count = loaded.len();
        {
            let mut groups = lock(&self.groups);
            for (id, g) in loaded {
                groups.insert(id, g);
            }
        }
        self.partitions.write().unwrap_or_else(|p| p.into_inner())[index] = Some(Arc::new(store));
        tracing::info!(
            partition,
            groups = count,
            records = replayed,
            "now coordinating the groups of {OFFSETS_TOPIC}-{partition}"
        );
        Ok(())
    }

    /// Stop coordinating the groups of `partition` (leadership moved):
    /// waiting requests get NOT_COORDINATOR and the groups are dropped.
    pub fn unload_partition(&self, partition: i32) {
        let index = usize::try_from(partition).unwrap_or(usize::MAX);
        {
            let mut partitions = self.partitions.write().unwrap_or_else(|p| p.into_inner());
            match partitions.get_mut(index) {
                Some(slot) => *slot = None,
                None => return,
            }
        }
        let dropped: Vec<GroupRef> = {
            let mut groups = lock(&self.groups);
            let ids: Vec<String> = groups
                .keys()
                .filter(|id| self.partition_for(id) == partition)
                .cloned()
                .collect();
            ids.iter().filter_map(|id| groups.remove(id)).collect()
        };
        for g in &dropped {
            lock(g).fail_all_waiters(E::NotCoordinator);
        }
        tracing::info!(
            partition,
            groups = dropped.len(),
            "no longer coordinating the groups of {OFFSETS_TOPIC}-{partition}"
        );
    }

    /// Stop: fail every waiting JoinGroup/SyncGroup with NOT_COORDINATOR (so
    /// no connection stays blocked), stop timers and the sweeper.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        for group in self.all_groups() {
            lock(&group).fail_all_waiters(E::NotCoordinator);
        }
        let task = lock(&self.sweeper).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// The `__consumer_offsets` partition that owns `group_id`.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        records::partition_for(group_id, self.partition_count() as i32)
    }

    /// Ok if this node coordinates `group_id` now, else why not.
    pub fn coordinator_error(&self, group_id: &str) -> Outcome {
        self.store_for(group_id).map(|_| ())
    }

    fn store_for(&self, group_id: &str) -> Result<Arc<OffsetsLog>, E> {
        if self.is_shutting_down() {
            return Err(E::CoordinatorNotAvailable);
        }
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        usize::try_from(self.partition_for(group_id))
            .ok()
            .and_then(|p| partitions.get(p).cloned().flatten())
            .ok_or(E::NotCoordinator)
    }

    /// Append records of one group to its partition.
    fn append(&self, group_id: &str, records: &[store::KeyValue]) -> Result<(), E> {
        let store = self.store_for(group_id)?;
        store.append(records).map_err(|e| {
            tracing::error!(group = group_id, error = %e, "cannot write to {OFFSETS_TOPIC}");
            E::NotCoordinator
        })?;
        self.partition_layer.appended(store.log());
        Ok(())
    }

    /// Persist a group's membership, generation and assignments.
    fn persist_group(&self, g: &Group) -> Result<(), E> {
        let key = RecordKey::Group {
            group: g.group_id.clone(),
        };
        self.append(&g.group_id, &[(key.encode(), Some(g.to_record().encode()))])
    }

    fn group(&self, group_id: &str) -> Option<GroupRef> {
        lock(&self.groups).get(group_id).cloned()
    }

    fn group_or_create(&self, group_id: &str) -> GroupRef {
        lock(&self.groups)
            .entry(group_id.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(group_id, now_ms()))))
            .clone()
    }

    fn all_groups(&self) -> Vec<GroupRef> {
        lock(&self.groups).values().cloned().collect()
    }

    /// Drop a dead group from the map (if the map still holds this one).
    fn forget(&self, g: &Group, handle: &GroupRef) {
        let mut groups = lock(&self.groups);
        if groups
            .get(&g.group_id)
            .is_some_and(|current| Arc::ptr_eq(current, handle))
        {
            groups.remove(&g.group_id);
        }
    }

    /// A group created for a request that left nothing behind (no members,
    /// no member ids handed out, no offsets, no generation) is dropped.
    fn forget_if_unused(&self, g: &mut Group, handle: &GroupRef) {
        if g.is(GroupState::Empty)
            && g.generation_id == 0
            && g.members.is_empty()
            && g.pending_members.is_empty()
            && g.offsets.is_empty()
            && g.consumer.is_none()
        {
            g.transition(GroupState::Dead, now_ms());
            self.forget(g, handle);
        }
    }

    /// Per partition with a committed offset in `group_id`: the committed
    /// offset, the log end offset and the lag. The end is the last stable
    /// offset (the high watermark when no transaction is open), so a
    /// `read_committed` group's lag never counts records it cannot read yet.
    /// Partitions of topics that no longer exist are left out.
    pub fn lag(&self, group_id: &str) -> Vec<PartitionLag> {
        let committed: Vec<((String, i32), i64)> = match self.group(group_id) {
            Some(group) => lock(&group)
                .offsets
                .iter()
                .map(|(k, v)| (k.clone(), v.offset))
                .collect(),
            None => return Vec::new(),
        };
        committed
            .into_iter()
            .filter_map(|((topic, partition), committed)| {
                let log = self.broker.topic(&topic)?.partition(partition)?;
                let log_end_offset = log.last_stable_offset();
                Some(PartitionLag {
                    topic,
                    partition,
                    committed,
                    log_end_offset,
                    lag: (log_end_offset - committed.max(0)).max(0),
                })
            })
            .collect()
    }

    /// Expire sessions, pending member ids and sync deadlines at the
    /// earliest deadline (looking again at least every `sweep_interval`, so
    /// deadlines that appear meanwhile are found); expire offsets every
    /// retention check interval.
    async fn run_sweeper(self: Arc<Self>) {
        let mut shutdown = self.shutdown.subscribe();
        let mut last_cleanup = Instant::now();
        loop {
            let now = Instant::now();
            self.expire_sessions(now);
            if now.duration_since(last_cleanup) >= self.settings.offsets_retention_check_interval {
                last_cleanup = now;
                let removed = self.cleanup_offsets(now_ms());
                if removed > 0 {
                    tracing::info!(
                        offsets = removed,
                        "removed expired offsets and offsets of deleted topics"
                    );
                }
            }
            let now = Instant::now();
            let look_again = now + self.settings.sweep_interval;
            // At least a millisecond on: a deadline nothing clears cannot spin.
            let wake = self
                .next_deadline()
                .map_or(look_again, |d| d.min(look_again))
                .max(now + Duration::from_millis(1));
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// Run `on_fire` after `delay` unless the coordinator shuts down first.
    fn schedule(
        self: &Arc<Self>,
        delay: Duration,
        on_fire: impl FnOnce(&Arc<Self>) + Send + 'static,
    ) {
        let me = Arc::clone(self);
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => on_fire(&me),
                _ = shutdown.wait_for(|s| *s) => {}
            }
        });
    }
}

/// Groups being rebuilt from `__consumer_offsets` at start.
#[derive(Default)]
struct Loading {
    groups: HashMap<String, Group>,
    /// Groups whose latest metadata record is live (not a tombstone).
    with_metadata: HashSet<String>,
    skipped: usize,
    /// The session a loaded consumer-protocol member gets.
    consumer_session: Duration,
}

impl Loading {
    fn new(consumer_session: Duration) -> Self {
        Loading {
            consumer_session,
            ..Loading::default()
        }
    }

    fn apply(&mut self, key: &Bytes, value: Option<&Bytes>, now: Instant, now_wall: i64) {
        if let Some(key) = consumer::records::ConsumerKey::decode(key) {
            self.apply_consumer(key, value, now, now_wall);
            return;
        }
        let key = match RecordKey::decode(key) {
            Ok(k) => k,
            Err(e) => {
                self.skip(&e);
                return;
            }
        };
        let group_id = key.group().to_owned();
        match key {
            RecordKey::Offset {
                topic, partition, ..
            } => match value.map(|v| OffsetValue::decode(v)) {
                None => {
                    if let Some(g) = self.groups.get_mut(&group_id) {
                        g.offsets.remove(&(topic, partition));
                    }
                }
                Some(Ok(v)) => {
                    self.group(&group_id, now_wall)
                        .offsets
                        .insert((topic, partition), v);
                }
                Some(Err(e)) => self.skip(&e),
            },
            RecordKey::Group { .. } => match value.map(|v| GroupValue::decode(v)) {
                None => {
                    self.with_metadata.remove(&group_id);
                    if let Some(g) = self.groups.get_mut(&group_id) {
                        let offsets = std::mem::take(&mut g.offsets);
                        *g = Group::new(&group_id, now_wall);
                        g.offsets = offsets;
                    }
                }
                Some(Ok(v)) => {
                    self.with_metadata.insert(group_id.clone());
                    self.group(&group_id, now_wall).restore(v, now);
                }
                Some(Err(e)) => self.skip(&e),
            },
        }
    }

    /// A record of a consumer-protocol group (KIP-848).
    fn apply_consumer(
        &mut self,
        key: Result<consumer::records::ConsumerKey, records::RecordError>,
        value: Option<&Bytes>,
        now: Instant,
        now_wall: i64,
    ) {
        let key = match key {
            Ok(k) => k,
            Err(e) => return self.skip(&e),
        };
        let deadline = now + self.consumer_session;
        let g = self.group(key.group(), now_wall);
        let group = g.consumer.get_or_insert_with(Default::default);
        match group.apply(&key, value.map(|v| &v[..]), deadline) {
            Ok(true) => {}
            Ok(false) => g.consumer = None,
            Err(e) => self.skip(&e),
        }
    }

    fn group(&mut self, group_id: &str, now_wall: i64) -> &mut Group {
        self.groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id, now_wall))
    }

    fn skip(&mut self, e: &records::RecordError) {
        self.skipped += 1;
        if self.skipped <= 10 {
            tracing::warn!(error = %e, "skipping an unreadable record of {OFFSETS_TOPIC}");
        }
    }

    fn finish(self) -> HashMap<String, GroupRef> {
        let with_metadata = self.with_metadata;
        self.groups
            .into_iter()
            .filter(|(id, g)| {
                with_metadata.contains(id) || !g.offsets.is_empty() || g.consumer.is_some()
            })
            .map(|(id, g)| (id, Arc::new(Mutex::new(g))))
            .collect()
    }
}

/// Hears leadership changes of `__consumer_offsets` partitions for the
/// coordinator (weakly: the coordinator may be gone at shutdown).
struct OffsetsLeadership(std::sync::Weak<GroupCoordinator>);

impl LeadershipListener for OffsetsLeadership {
    fn on_became_leader(&self, topic: &str, partition: i32) {
        if topic != OFFSETS_TOPIC {
            return;
        }
        if let Some(coordinator) = self.0.upgrade() {
            if let Err(e) = coordinator.load_partition(partition) {
                tracing::error!(partition, error = %e, "cannot load groups");
            }
        }
    }

    fn on_leadership_lost(&self, topic: &str, partition: i32) {
        if topic != OFFSETS_TOPIC {
            return;
        }
        if let Some(coordinator) = self.0.upgrade() {
            coordinator.unload_partition(partition);
        }
    }
}

impl GroupCoordinator {
    /// Where the coordinator of `group_id` is, as (broker id, host, port):
    /// this node on a single node (when it can coordinate now), else the
    /// leader of the group's `__consumer_offsets` partition in the image.
    pub fn coordinator_of(&self, group_id: &str) -> Result<(i32, String, i32), E> {
        match self.partition_layer.replica_manager() {
            Some(rm) => rm
                .cluster()
                .read_image(|image| coordinator_in(image, group_id)),
            None => self.coordinator_error(group_id).map(|()| {
                let (host, port) = self.broker.advertised();
                (self.broker.node_id(), host, port)
            }),
        }
    }

    /// Create `__consumer_offsets` through the controller if the cluster has
    /// none yet (the first FindCoordinator does this, as Kafka does). A
    /// single node created it at start.
    pub async fn ensure_offsets_topic(&self) {
        let Some(rm) = self.partition_layer.replica_manager() else {
            return;
        };
        if rm.has_topic(OFFSETS_TOPIC) {
            return;
        }
        let configs = BTreeMap::from([
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            ("retention.ms".to_owned(), "-1".to_owned()),
            ("retention.bytes".to_owned(), "-1".to_owned()),
        ]);
        match self
            .partition_layer
            .create_topic(
                OFFSETS_TOPIC,
                rm.settings().offsets_topic_partitions,
                -1,
                configs,
                false,
            )
            .await
        {
            Ok(()) | Err(TopicError::AlreadyExists(_)) => {}
            Err(e) => tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC} yet"),
        }
    }
}

/// The coordinator of `group_id` in `image`: the leader of its partition.
fn coordinator_in(image: &MetadataImage, group_id: &str) -> Result<(i32, String, i32), E> {
    let topic = image
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or(E::CoordinatorNotAvailable)?;
    let index = records::partition_for(group_id, topic.partitions.len() as i32);
    let leader = topic
        .partitions
        .get(index as usize)
        .map_or(NO_LEADER, |p| p.leader);
    let registration = image
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .ok_or(E::CoordinatorNotAvailable)?;
    let (host, port) = host_port(&registration.kafka_addr);
    Ok((leader, host, port))
}

#[cfg(test)]
mod tests;
