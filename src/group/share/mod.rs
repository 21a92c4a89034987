//! Share groups (KIP-932, "queues for Kafka"): membership by
//! ShareGroupHeartbeat and ShareGroupDescribe here; records delivered by
//! ShareFetch and acknowledged by ShareAcknowledge in `fetch.rs`; each
//! share-partition's state machine in `partition.rs`.
//!
//! Assignment: the `simple` assignor (`assign.rs`) spreads each topic's
//! partitions over its subscribers, all of them sharing a partition once
//! they outnumber its partitions. Members learn a change on their next
//! heartbeat; records they hold stay theirs until acknowledged or their
//! locks expire.
//! Each member is fenced at its own session deadline; what it held is
//! released to the others.
//!
//! Where the state lives: membership in memory at the group's coordinator
//! (a restart or a new coordinator makes members join again, as their next
//! heartbeat is answered UNKNOWN_MEMBER_ID); every share-partition's start
//! offset and the states and delivery counts of the records after it, kept
//! by the partition's leader and written at each change, so acknowledged
//! records stay acknowledged across a restart and the rest are delivered
//! again. On a single node they are written to the node's `share_state`
//! tree (`storage`); in a cluster to the metadata image
//! (`replication::share_state`), fenced by state and leader epochs, and a
//! leader loads a share-partition from there when it has none or a stale
//! one (another leader or an administrative change wrote since).
//!
//! Must never: await while holding `state`'s lock.
//! Locks: `ShareGroups::state`, then `ShareGroups::fences`; `state` is
//! taken after a classic group's lock when both are held (ListGroups),
//! never before it.

pub mod admin;
pub mod assign;
pub mod fetch;
pub mod partition;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::cluster::share_states::{ShareStateWrite, ShareWriter};
use crate::config::NodeConfig;
use crate::group::consumer::TopicCatalog;
use crate::group::{min_instant, CoordinatorError as E, GroupCoordinator};
use crate::replication::ReplicaManager;
use crate::storage::ShareStateTree;
use partition::{Limits, SharePartition};

/// The member epoch a member leaves with.
const LEAVE_EPOCH: i32 = -1;

/// Group configs a share group applies (IncrementalAlterConfigs on GROUP).
const GROUP_SESSION_TIMEOUT: &str = "share.session.timeout.ms";
const GROUP_HEARTBEAT_INTERVAL: &str = "share.heartbeat.interval.ms";
const GROUP_LOCK_DURATION: &str = "share.record.lock.duration.ms";
const GROUP_OFFSET_RESET: &str = "share.auto.offset.reset";

/// Kafka's defaults of the share group settings without flags.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_millis(45_000);
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(5_000);

/// How share groups behave (Kafka's `group.share.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct ShareSettings {
    /// How long a record stays acquired without an acknowledgement
    /// (`group.share.record.lock.duration.ms`; a group's
    /// `share.record.lock.duration.ms` overrides it).
    pub record_lock_duration: Duration,
    /// Deliveries of one record before it is archived
    /// (`group.share.delivery.count.limit`) and records in flight per
    /// share-partition (`group.share.partition.max.record.locks`).
    pub limits: Limits,
}

impl ShareSettings {
    /// The node's settings.
    pub fn from_config(config: &NodeConfig) -> Self {
        ShareSettings {
            record_lock_duration: Duration::from_millis(config.group_share_record_lock_duration_ms),
            limits: Limits {
                max_delivery_count: config.group_share_delivery_count_limit,
                max_in_flight: config.group_share_partition_max_record_locks,
            },
        }
    }
}

/// A ShareGroupHeartbeat, as the coordinator needs it.
#[derive(Debug, Clone, Default)]
pub struct ShareHeartbeat {
    pub group_id: String,
    /// Given by the client (v1); generated when empty.
    pub member_id: String,
    /// 0 joins, -1 leaves.
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub client_id: String,
    pub client_host: String,
}

/// The answer to a ShareGroupHeartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareHeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's partitions by topic id (absent when it left).
    pub assignment: Option<BTreeMap<Uuid, Vec<i32>>>,
}

/// One member of a share group.
#[derive(Debug, Clone)]
pub(crate) struct ShareMember {
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    /// Fenced when no heartbeat came by then.
    deadline: Instant,
}

/// One share group's membership.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShareGroup {
    pub group_epoch: i32,
    pub members: BTreeMap<String, ShareMember>,
}

impl ShareGroup {
    /// Kafka's share group states: Empty or Stable (assignment is immediate).
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }
}

/// A share-partition's key: group, topic id, partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct PartitionKey {
    pub group_id: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

impl PartitionKey {
    /// The stored key: group id, a zero byte, topic id, partition.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.group_id.len() + 21);
        out.extend_from_slice(self.group_id.as_bytes());
        out.push(0);
        out.extend_from_slice(self.topic_id.as_bytes());
        out.extend_from_slice(&self.partition.to_be_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let split = b.len().checked_sub(21)?;
        let (group, rest) = b.split_at(split);
        if rest[0] != 0 {
            return None;
        }
        Some(PartitionKey {
            group_id: String::from_utf8(group.to_vec()).ok()?,
            topic_id: Uuid::from_slice(&rest[1..17]).ok()?,
            partition: i32::from_be_bytes(rest[17..21].try_into().ok()?),
        })
    }
}

/// A member's share session on this node (KIP-932): the partitions it
/// fetches and the epoch its next request must carry.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShareSession {
    pub next_epoch: i32,
    pub partitions: BTreeSet<(Uuid, i32)>,
    /// The client connection that opened it (closed with it).
    pub connection: u64,
}

/// Everything under one lock.
#[derive(Debug, Default)]
pub(crate) struct ShareState {
    pub groups: BTreeMap<String, ShareGroup>,
    pub partitions: HashMap<PartitionKey, SharePartition>,
    /// By (group id, member id).
    pub sessions: HashMap<(String, String), ShareSession>,
}

/// Where share-partition states are written.
pub enum ShareStore {
    /// The node's tree (None: kept in memory only).
    Tree(Option<ShareStateTree>),
    /// The cluster's metadata image.
    Cluster(Arc<ReplicaManager>),
}

/// Queue `p` (None: deleted) as `key`'s state for the cluster's image.
fn write_to_image(
    rm: &ReplicaManager,
    key: &PartitionKey,
    writer: ShareWriter,
    p: Option<&SharePartition>,
) {
    rm.write_share_state(ShareStateWrite {
        group_id: key.group_id.clone(),
        topic_id: key.topic_id,
        partition: key.partition,
        writer,
        state: p.map(|p| BASE64.encode(p.encode())),
    });
}

/// The fences a leader loaded a share-partition under (cluster only):
/// its state epoch and the partition leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    pub state_epoch: i32,
    pub leader_epoch: i32,
}

/// The share groups of this node.
pub struct ShareGroups {
    pub(crate) settings: ShareSettings,
    state: Mutex<ShareState>,
    /// Woken when records become available without an append (released,
    /// lock expired, member gone): a waiting ShareFetch looks again.
    pub(crate) available: Notify,
    store: ShareStore,
    /// By share-partition this node leads (cluster only).
    fences: Mutex<HashMap<PartitionKey, Fence>>,
}

impl std::fmt::Debug for ShareGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareGroups")
            .field("groups", &self.lock().groups.len())
            .finish()
    }
}

impl ShareGroups {
    /// Share groups writing to `store` (a tree's share-partitions are read
    /// back now; a cluster's are loaded by each leader when needed).
    pub fn open(settings: ShareSettings, store: ShareStore) -> Self {
        let mut state = ShareState::default();
        if let ShareStore::Tree(Some(tree)) = &store {
            match tree.entries() {
                Ok(entries) => {
                    for (k, v) in entries {
                        match (PartitionKey::decode(&k), SharePartition::decode(&v)) {
                            (Some(key), Some(p)) => {
                                state.partitions.insert(key, p);
                            }
                            _ => tracing::warn!("skipping an unreadable share-partition state"),
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the share-partition states"),
            }
        }
        // A group with stored share-partitions is known (and empty) again.
        let restored: Vec<String> = state
            .partitions
            .keys()
            .map(|k| k.group_id.clone())
            .collect();
        for group_id in restored {
            state.groups.entry(group_id).or_default();
        }
        ShareGroups {
            settings,
            state: Mutex::new(state),
            available: Notify::new(),
            store,
            fences: Mutex::new(HashMap::new()),
        }
    }

    /// The replica manager when share-partitions live in a cluster.
    pub(crate) fn cluster(&self) -> Option<&Arc<ReplicaManager>> {
        match &self.store {
            ShareStore::Cluster(rm) => Some(rm),
            ShareStore::Tree(_) => None,
        }
    }

    pub(crate) fn fences(&self) -> MutexGuard<'_, HashMap<PartitionKey, Fence>> {
        self.fences.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// In a cluster: an administrative write of `key` (the new state, or
    /// `None` to delete it), fencing every leader's copy.
    pub(crate) fn store_admin(&self, key: &PartitionKey, p: Option<&SharePartition>) {
        if let ShareStore::Cluster(rm) = &self.store {
            self.fences().remove(key);
            write_to_image(rm, key, ShareWriter::Admin, p);
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ShareState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store one share-partition (an error is logged: the state in memory
    /// stays right, a restart would deliver some records again).
    pub(crate) fn store(&self, key: &PartitionKey, p: &SharePartition) {
        match &self.store {
            ShareStore::Tree(Some(tree)) => {
                if let Err(e) = tree.put(&key.encode(), &p.encode()) {
                    tracing::error!(group = key.group_id.as_str(), error = %e, "cannot store a share-partition");
                }
            }
            ShareStore::Tree(None) => {}
            ShareStore::Cluster(rm) => {
                // Only a copy loaded by this node as leader is written.
                let Some(fence) = self.fences().get(key).copied() else {
                    return;
                };
                let writer = ShareWriter::Leader {
                    state_epoch: fence.state_epoch,
                    leader_epoch: fence.leader_epoch,
                };
                write_to_image(rm, key, writer, Some(p));
            }
        }
    }

    /// Forget the share-partitions `which` selects, stored ones included.
    pub(crate) fn forget_partitions(
        &self,
        state: &mut ShareState,
        which: impl Fn(&PartitionKey) -> bool,
    ) {
        state.partitions.retain(|key, _| {
            if !which(key) {
                return true;
            }
            if let ShareStore::Tree(Some(tree)) = &self.store {
                if let Err(e) = tree.remove(&key.encode()) {
                    tracing::error!(group = key.group_id.as_str(), error = %e, "cannot remove a share-partition");
                }
            }
            self.store_admin(key, None);
            false
        });
    }

    /// Release what `member_id` holds in its group's partitions and forget
    /// its share session.
    fn release_member(&self, state: &mut ShareState, group_id: &str, member_id: &str) {
        let limits = self.settings.limits;
        let mut released = false;
        for (key, p) in state.partitions.iter_mut() {
            if key.group_id == group_id && p.release_member(member_id, limits) {
                self.store(key, p);
                released = true;
            }
        }
        state
            .sessions
            .remove(&(group_id.to_owned(), member_id.to_owned()));
        if released {
            self.available.notify_waiters();
        }
    }

    /// Whether a share group of this id exists.
    pub fn contains(&self, group_id: &str) -> bool {
        self.lock().groups.contains_key(group_id)
    }

    /// Every share group: (group id, state).
    pub fn listing(&self) -> Vec<(String, &'static str)> {
        self.lock()
            .groups
            .iter()
            .map(|(id, g)| (id.clone(), g.state_name()))
            .collect()
    }
}

/// One member in ShareGroupDescribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedShareMember {
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    /// (topic id, topic name, partitions).
    pub assignment: Vec<(Uuid, String, Vec<i32>)>,
}

/// A group in ShareGroupDescribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedShareGroup {
    pub state: &'static str,
    pub group_epoch: i32,
    pub members: Vec<DescribedShareMember>,
}

/// How long an administrative change waits for its commit.
const SHARE_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the share groups' assignor (`assign.rs`).
pub const SHARE_ASSIGNOR: &str = "simple";

impl GroupCoordinator {
    /// A share request names a group.
    pub(crate) fn share_check(&self, group_id: &str) -> Result<(), E> {
        if group_id.is_empty() {
            return Err(E::InvalidGroupId);
        }
        Ok(())
    }

    /// In a cluster, make this node's copy of a share-partition current
    /// before it is used: loaded from the image when it has none, or when
    /// another leader or an administrative change wrote since it loaded.
    /// NOT_LEADER_OR_FOLLOWER (and the copy dropped) when this node does
    /// not lead the partition. Nothing to do on a single node.
    pub(crate) fn share_refresh(
        &self,
        state: &mut ShareState,
        key: &PartitionKey,
        topic: &str,
    ) -> Result<(), E> {
        let Some(rm) = self.share.cluster() else {
            return Ok(());
        };
        let Some((leader, leader_epoch)) = rm.current_leader(topic, key.partition) else {
            return Err(E::UnknownTopicOrPartition);
        };
        if leader != rm.node_id() {
            state.partitions.remove(key);
            self.share.fences().remove(key);
            return Err(E::NotLeaderOrFollower);
        }
        let fence = Fence {
            state_epoch: rm
                .read_share_state(&key.group_id, key.topic_id, key.partition, |e| {
                    e.state_epoch
                })
                .unwrap_or(0),
            leader_epoch,
        };
        let mut fences = self.share.fences();
        if fences.get(key) == Some(&fence) && state.partitions.contains_key(key) {
            return Ok(());
        }
        fences.insert(key.clone(), fence);
        drop(fences);
        let loaded = rm
            .read_share_state(&key.group_id, key.topic_id, key.partition, |e| {
                e.state.clone()
            })
            .flatten()
            .and_then(|s| BASE64.decode(s).ok())
            .and_then(|b| SharePartition::decode(&b));
        match loaded {
            Some(p) => {
                tracing::debug!(
                    group = key.group_id.as_str(),
                    partition = key.partition,
                    leader_epoch,
                    "share-partition loaded"
                );
                state.partitions.insert(key.clone(), p);
            }
            None => {
                state.partitions.remove(key);
            }
        }
        Ok(())
    }

    /// In a cluster, drop the copies of share-partitions this node no
    /// longer leads (their next leader loads the stored state).
    fn share_drop_unled(&self, state: &mut ShareState) {
        let Some(rm) = self.share.cluster() else {
            return;
        };
        let names: HashMap<Uuid, String> = self
            .topic_catalog()
            .into_iter()
            .map(|(name, (id, _))| (id, name))
            .collect();
        let me = rm.node_id();
        let mut fences = self.share.fences();
        state.partitions.retain(|key, _| {
            let led = names
                .get(&key.topic_id)
                .and_then(|name| rm.current_leader(name, key.partition))
                .is_some_and(|(leader, _)| leader == me);
            if !led {
                fences.remove(key);
            }
            led
        });
    }

    /// Whether a share group of this id exists: known here, or (in a
    /// cluster) with stored share-partitions.
    pub fn share_group_known(&self, group_id: &str) -> bool {
        self.share.contains(group_id)
            || self
                .share
                .cluster()
                .is_some_and(|rm| rm.has_share_states(group_id))
    }

    /// Every share group this node coordinates: (group id, state); in a
    /// cluster also those known only by their stored share-partitions.
    pub fn share_listing(&self) -> Vec<(String, &'static str)> {
        let mut out = self.share.listing();
        if let Some(rm) = self.share.cluster() {
            for group_id in rm.share_groups_stored() {
                if self.coordinator_error(&group_id).is_ok()
                    && !out.iter().any(|(g, _)| *g == group_id)
                {
                    out.push((group_id, "Empty"));
                }
            }
        }
        out
    }

    /// In a cluster, wait until the share-partition changes made so far
    /// are committed (an administrative call answers after them).
    pub(crate) async fn share_flush(&self) -> Result<(), E> {
        match self.share.cluster() {
            Some(rm) if !rm.flush_share_states(SHARE_FLUSH_TIMEOUT).await => {
                Err(E::RequestTimedOut)
            }
            _ => Ok(()),
        }
    }

    fn share_config_ms(&self, group_id: &str, name: &str) -> Option<Duration> {
        let state = self.broker.security.current();
        let value = state.configs.groups.get(group_id)?.get(name)?;
        value.parse::<u64>().ok().map(Duration::from_millis)
    }

    /// A share group's acquisition lock: its group config, else the flag.
    pub(crate) fn share_lock_duration(&self, group_id: &str) -> Duration {
        self.share_config_ms(group_id, GROUP_LOCK_DURATION)
            .unwrap_or(self.share.settings.record_lock_duration)
    }

    /// Whether a new share-partition of the group starts at the log start
    /// (`share.auto.offset.reset=earliest`) rather than its end.
    pub(crate) fn share_starts_earliest(&self, group_id: &str) -> bool {
        let state = self.broker.security.current();
        state
            .configs
            .groups
            .get(group_id)
            .and_then(|c| c.get(GROUP_OFFSET_RESET))
            .is_some_and(|v| v == "earliest")
    }

    /// `member_id`'s partitions in `group` by the `simple` assignor.
    fn member_assignment(
        group: &ShareGroup,
        member_id: &str,
        catalog: &TopicCatalog,
    ) -> BTreeMap<Uuid, Vec<i32>> {
        assign::assign(
            group.members.iter().map(|(id, m)| (id, &m.subscribed)),
            catalog,
        )
        .remove(member_id)
        .unwrap_or_default()
    }

    /// ShareGroupHeartbeat: join (epoch 0), heartbeat, or leave (epoch -1).
    pub fn share_group_heartbeat(&self, req: ShareHeartbeat) -> Result<ShareHeartbeatAnswer, E> {
        self.share_check(&req.group_id)?;
        self.coordinator_error(&req.group_id)?;
        // A classic or consumer group of the same id owns the id.
        if self.group(&req.group_id).is_some() && !self.share.contains(&req.group_id) {
            return Err(E::InconsistentGroupProtocol);
        }
        let interval = self
            .share_config_ms(&req.group_id, GROUP_HEARTBEAT_INTERVAL)
            .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL);
        let session = self
            .share_config_ms(&req.group_id, GROUP_SESSION_TIMEOUT)
            .unwrap_or(DEFAULT_SESSION_TIMEOUT);
        let heartbeat_interval_ms = i32::try_from(interval.as_millis()).unwrap_or(i32::MAX);
        let catalog = self.topic_catalog();
        let now = Instant::now();
        let mut state = self.share.lock();
        if req.member_epoch == LEAVE_EPOCH {
            let left = state
                .groups
                .get_mut(&req.group_id)
                .and_then(|g| g.members.remove(&req.member_id).map(|_| g));
            // What it holds stays acquired: the client closes its share
            // session after leaving (ShareAcknowledge with epoch -1, which
            // applies its last acknowledgements and releases the rest);
            // without that, the acquisition locks expire.
            if let Some(group) = left {
                group.group_epoch += 1;
            }
            return Ok(ShareHeartbeatAnswer {
                member_id: req.member_id,
                member_epoch: LEAVE_EPOCH,
                heartbeat_interval_ms,
                assignment: None,
            });
        }
        if !state.groups.contains_key(&req.group_id) {
            if req.member_epoch != 0 {
                return Err(E::UnknownMemberId);
            }
            state
                .groups
                .insert(req.group_id.clone(), ShareGroup::default());
        }
        let group = state
            .groups
            .get_mut(&req.group_id)
            .ok_or(E::UnknownMemberId)?;
        let member_id = if req.member_id.is_empty() {
            Uuid::new_v4().simple().to_string()
        } else {
            req.member_id.clone()
        };
        match group.members.get(&member_id).map(|m| m.member_epoch) {
            Some(epoch) if req.member_epoch == 0 || epoch == req.member_epoch => {}
            Some(_) => return Err(E::FencedMemberEpoch),
            None if req.member_epoch == 0 => {
                let Some(subscribed) = req.subscribed_topic_names.clone() else {
                    return Err(E::InvalidRequest);
                };
                group.group_epoch += 1;
                group.members.insert(
                    member_id.clone(),
                    ShareMember {
                        member_epoch: group.group_epoch,
                        rack_id: req.rack_id.clone(),
                        client_id: req.client_id.clone(),
                        client_host: req.client_host.clone(),
                        subscribed,
                        deadline: now + session,
                    },
                );
            }
            None => return Err(E::UnknownMemberId),
        }
        let member = group
            .members
            .get_mut(&member_id)
            .ok_or(E::UnknownMemberId)?;
        member.deadline = now + session;
        let changed = match &req.subscribed_topic_names {
            Some(subscribed) if *subscribed != member.subscribed => {
                member.subscribed = subscribed.clone();
                true
            }
            _ => false,
        };
        if changed {
            group.group_epoch += 1;
        }
        let group_epoch = group.group_epoch;
        let member = group
            .members
            .get_mut(&member_id)
            .ok_or(E::UnknownMemberId)?;
        member.member_epoch = group_epoch.max(member.member_epoch);
        let member_epoch = member.member_epoch;
        let assignment = Self::member_assignment(group, &member_id, &catalog);
        drop(state);
        Ok(ShareHeartbeatAnswer {
            member_id,
            member_epoch,
            heartbeat_interval_ms,
            assignment: Some(assignment),
        })
    }

    /// ShareGroupDescribe of one group: GROUP_ID_NOT_FOUND for an unknown
    /// one (or a group of another type).
    pub fn share_group_describe(&self, group_id: &str) -> Result<DescribedShareGroup, E> {
        self.share_check(group_id)?;
        self.coordinator_error(group_id)?;
        let catalog = self.topic_catalog();
        let state = self.share.lock();
        let group = state.groups.get(group_id).ok_or(E::GroupIdNotFound)?;
        let mut assignment = assign::assign(
            group.members.iter().map(|(id, m)| (id, &m.subscribed)),
            &catalog,
        );
        let names: BTreeMap<Uuid, &String> =
            catalog.iter().map(|(name, (id, _))| (*id, name)).collect();
        Ok(DescribedShareGroup {
            state: group.state_name(),
            group_epoch: group.group_epoch,
            members: group
                .members
                .iter()
                .map(|(id, m)| DescribedShareMember {
                    member_id: id.clone(),
                    member_epoch: m.member_epoch,
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed.clone(),
                    assignment: assignment
                        .remove(id)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(topic_id, partitions)| {
                            names
                                .get(&topic_id)
                                .map(|name| (topic_id, (*name).clone(), partitions))
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    /// Fence share members whose session ended and expire acquisition
    /// locks; returns the earliest deadline still ahead.
    fn expire_share_deadlines(&self, now: Instant) -> Option<Instant> {
        let limits = self.share.settings.limits;
        let mut state = self.share.lock();
        let expired: Vec<(String, String)> = state
            .groups
            .iter()
            .flat_map(|(g, group)| {
                group
                    .members
                    .iter()
                    .filter(|(_, m)| m.deadline <= now)
                    .map(move |(id, _)| (g.clone(), id.clone()))
            })
            .collect();
        for (group_id, member_id) in &expired {
            if let Some(group) = state.groups.get_mut(group_id) {
                group.members.remove(member_id);
                group.group_epoch += 1;
            }
            tracing::info!(
                group = group_id.as_str(),
                member = member_id.as_str(),
                "share group member fenced at its deadline"
            );
            self.share.release_member(&mut state, group_id, member_id);
        }
        self.share_drop_unled(&mut state);
        let mut released = false;
        let mut earliest: Option<Instant> = None;
        let ShareState {
            partitions, groups, ..
        } = &mut *state;
        for (key, p) in partitions.iter_mut() {
            if p.expire_locks(now, limits) {
                self.share.store(key, p);
                released = true;
            }
            earliest = min_instant(earliest, p.next_lock_deadline());
        }
        for group in groups.values() {
            earliest = min_instant(earliest, group.members.values().map(|m| m.deadline).min());
        }
        if released {
            self.share.available.notify_waiters();
        }
        earliest
    }

    /// Fence share members and expire locks at their deadlines until shutdown.
    pub(crate) async fn run_share_deadlines(self: Arc<Self>) {
        self.run_at_deadlines(|c, now| c.expire_share_deadlines(now))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_key_reads_back() {
        let key = PartitionKey {
            group_id: "notifications\0odd".into(),
            topic_id: Uuid::new_v4(),
            partition: 7,
        };
        assert_eq!(PartitionKey::decode(&key.encode()), Some(key));
        assert_eq!(PartitionKey::decode(b"short"), None);
    }
}
