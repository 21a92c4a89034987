//! The metadata image: what the Raft state machine holds. Brokers, topics and
//! partitions (replicas, leader, leader epoch, ISR, partition epoch), and the
//! commands that change them.
//!
//! Applying a command is deterministic: every decision (topic ids, replica
//! placement, the new leader) is made by the proposer and carried in the
//! command, so every node that applies the same log reaches the same image.
//! A command that does not fit the image is rejected (the rejection is the
//! command's committed result) and leaves the image unchanged. Nothing here
//! does I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::share_states::{ShareStateWrite, ShareStates};
use crate::security::{SecurityChange, SecurityRejection, SecurityState};

/// Leader value of a partition that has no leader (Kafka's -1).
pub const NO_LEADER: i32 = -1;

/// `host:port` split of an advertised address (port -1 when it has none).
pub fn host_port(addr: &str) -> (String, i32) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port.parse().unwrap_or(-1),
        ),
        None => (addr.to_string(), -1),
    }
}

/// One registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// The broker id (the node id of `sluice serve --node-id`).
    pub broker_id: i32,
    /// Where Kafka clients reach it (`host:port`), as it advertises itself.
    pub kafka_addr: String,
    /// Its HTTP listener (`host:port`), for the dashboard's links.
    pub http_addr: String,
    /// Its cluster listener (`host:port`), where Raft RPCs reach it.
    pub cluster_addr: String,
    /// Every Kafka listener it advertises: listener name -> `host:port`
    /// (Metadata answers a client with the addresses of its listener).
    #[serde(default)]
    pub listeners: BTreeMap<String, String>,
    /// Bumped on every registration: a broker that restarts gets a new epoch,
    /// so requests carrying the old one can be told apart (fencing).
    pub liveness_epoch: u64,
    /// Set by the controller when the broker missed its heartbeat session;
    /// a fenced broker leads nothing and is not elected.
    #[serde(default)]
    pub fenced: bool,
    /// Being removed from the cluster: the controller moves its replicas to
    /// other brokers, then unregisters it. Nothing new is placed on it.
    #[serde(default)]
    pub decommissioning: bool,
}

/// One partition of a topic, as the controller decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Brokers holding a replica, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The broker that leads the partition, or `NO_LEADER`.
    pub leader: i32,
    /// Bumped on every leader change; clients and followers fence on it.
    pub leader_epoch: i32,
    /// The in-sync replicas (always a subset of `replicas`).
    pub isr: Vec<i32>,
    /// Bumped on every change of this partition (leader or ISR), as
    /// AlterPartition's partition epoch: a stale change is refused.
    pub partition_epoch: i32,
    /// An ongoing reassignment's new replicas (also in `replicas`): they
    /// fetch and catch up, and the reassignment completes once every target
    /// replica is in the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// An ongoing reassignment's leaving replicas (still in `replicas`, after
    /// the target ones): dropped when the reassignment completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionImage {
    /// The first replica (in preference order) that is live and in sync:
    /// who leads when the leader goes (unclean election stays off).
    fn first_live_in_sync(&self, live: &BTreeSet<i32>) -> Option<i32> {
        self.replicas
            .iter()
            .copied()
            .find(|r| live.contains(r) && self.isr.contains(r))
    }

    /// True while a reassignment is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas before the ongoing reassignment (all of them when none is).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding_replicas.contains(r))
            .collect()
    }

    /// The replicas the ongoing reassignment moves to (all of them when none is).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// Make `replicas` the replica set: the ISR keeps its members among them,
    /// and a leader outside them hands over to the first live in-sync one.
    /// Refused when no ISR member would remain.
    fn set_replicas(&mut self, replicas: Vec<i32>, live: &BTreeSet<i32>) -> Result<(), Rejection> {
        if !self.isr.iter().any(|b| replicas.contains(b)) {
            return Err(Rejection::InvalidReplicaAssignment(format!(
                "no in-sync replica among {replicas:?}"
            )));
        }
        self.replicas = replicas;
        self.adding_replicas.clear();
        self.removing_replicas.clear();
        let replicas = &self.replicas;
        self.isr.retain(|b| replicas.contains(b));
        if self.leader != NO_LEADER && !self.replicas.contains(&self.leader) {
            self.leader = self.first_live_in_sync(live).unwrap_or(NO_LEADER);
            self.leader_epoch += 1;
            crate::metrics::global().leader_election();
        }
        self.partition_epoch += 1;
        Ok(())
    }

    /// Complete the ongoing reassignment once every target replica is in
    /// the ISR: the target becomes the replica set.
    fn complete_reassignment(&mut self, live: &BTreeSet<i32>) {
        if !self.reassigning() {
            return;
        }
        let target = self.target_replicas();
        if target.iter().all(|b| self.isr.contains(b)) {
            // Every target replica is in the ISR, so this cannot be refused.
            let _ = self.set_replicas(target, live);
        }
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// The topic's id (Kafka's topic UUID), chosen by the proposer.
    pub topic_id: uuid::Uuid,
    /// Topic configs that differ from the defaults (`min.insync.replicas`...).
    pub configs: BTreeMap<String, String>,
    /// Partitions by index: partition `i` is `partitions[i]`.
    pub partitions: Vec<PartitionImage>,
}

/// The cluster's metadata as of the last applied log entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The cluster's id (Kafka's cluster id): the one proposed by the first
    /// broker to register.
    #[serde(default)]
    pub cluster_id: String,
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Credentials, ACLs and quotas.
    #[serde(default)]
    pub security: SecurityState,
    /// Share groups' share-partition states (KIP-932).
    #[serde(default, skip_serializing_if = "ShareStates::is_empty")]
    pub share_states: ShareStates,
}

/// A change to the image, proposed to the Raft leader and applied by every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Command {
    /// A broker (re)joins: its addresses are recorded and its liveness epoch bumped.
    RegisterBroker {
        broker_id: i32,
        kafka_addr: String,
        http_addr: String,
        cluster_addr: String,
        /// This broker's own cluster id, adopted if the image has none yet.
        #[serde(default)]
        cluster_id: String,
        /// Its advertised Kafka listeners: name -> `host:port`.
        #[serde(default)]
        listeners: BTreeMap<String, String>,
    },
    /// Create a topic with one replica list per partition; each partition
    /// starts with its first replica as leader and all replicas in sync.
    CreateTopic {
        name: String,
        topic_id: uuid::Uuid,
        configs: BTreeMap<String, String>,
        assignments: Vec<Vec<i32>>,
    },
    /// Remove a topic and its partitions.
    DeleteTopic { name: String },
    /// Add partitions (one replica list each) after the existing ones.
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<i32>>,
    },
    /// Set and remove topic configs.
    AlterConfigs {
        name: String,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// The broker missed its session: it loses the leadership of its
    /// partitions (a new leader is elected from the ISR, the leader epoch
    /// bumped) and leaves every ISR it is not the last member of.
    FenceBroker { broker_id: i32 },
    /// A fenced broker heartbeats again: it may be elected again, and
    /// leaderless partitions whose ISR holds it get it as leader.
    UnfenceBroker { broker_id: i32 },
    /// Change a partition's leader and ISR. Refused unless
    /// `partition_epoch` is the partition's current one (no lost updates).
    UpdatePartitionLeadership {
        name: String,
        partition: i32,
        leader: i32,
        isr: Vec<i32>,
        partition_epoch: i32,
    },
    /// Change the credentials, ACLs or quotas.
    Security { change: SecurityChange },
    /// Reassign a partition to `target` (Kafka's AlterPartitionReassignments):
    /// the new replicas join `replicas` as adding replicas, and the target
    /// becomes the replica set once all of it is in the ISR. `None` cancels
    /// the ongoing reassignment (back to the original replicas).
    ReassignPartition {
        name: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Start removing a broker: it takes no new replicas, and the controller
    /// reassigns the ones it holds.
    DecommissionBroker { broker_id: i32 },
    /// Remove a broker that holds no replica any more from the image.
    UnregisterBroker { broker_id: i32 },
    /// Write share-partition states, each fenced as `share_states` says.
    ShareStates { writes: Vec<ShareStateWrite> },
}

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    #[error("unknown topic or partition {0}")]
    UnknownTopicOrPartition(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    #[error("invalid leadership change: {0}")]
    InvalidLeadership(String),
    #[error("stale partition epoch {given}, current is {current}")]
    StalePartitionEpoch { given: i32, current: i32 },
    #[error("{0}")]
    Security(SecurityRejection),
    #[error("no reassignment in progress for {0}")]
    NoReassignmentInProgress(String),
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
}

/// The committed result of one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Applied (also the result of Raft's own blank and membership entries).
    Applied,
    /// A broker registered with this liveness epoch.
    BrokerRegistered { liveness_epoch: u64 },
    /// A security change applied; the security state is now at `version`.
    SecurityApplied { version: u64 },
    /// Share-partition states written (`fenced` of them refused); the
    /// share states are now at `version`.
    ShareStatesApplied { version: u64, fenced: usize },
    /// Not applied; the image is unchanged.
    Rejected(Rejection),
}

impl MetadataImage {
    /// Apply one command. Rejections leave the image as it was.
    pub fn apply(&mut self, command: &Command) -> CommandResponse {
        match self.try_apply(command) {
            Ok(response) => response,
            Err(rejection) => CommandResponse::Rejected(rejection),
        }
    }

    fn try_apply(&mut self, command: &Command) -> Result<CommandResponse, Rejection> {
        match command {
            Command::RegisterBroker {
                broker_id,
                kafka_addr,
                http_addr,
                cluster_addr,
                cluster_id,
                listeners,
            } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
                let liveness_epoch = self
                    .brokers
                    .get(broker_id)
                    .map_or(1, |b| b.liveness_epoch + 1);
                let decommissioning = self
                    .brokers
                    .get(broker_id)
                    .is_some_and(|b| b.decommissioning);
                // A restarted broker may have lost the unflushed tail of its
                // logs: its old incarnation gives up leadership and ISR
                // places first, and it earns them back by catching up.
                if self.brokers.contains_key(broker_id) {
                    self.fence(*broker_id);
                }
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        broker_id: *broker_id,
                        kafka_addr: kafka_addr.clone(),
                        http_addr: http_addr.clone(),
                        cluster_addr: cluster_addr.clone(),
                        listeners: listeners.clone(),
                        liveness_epoch,
                        fenced: false,
                        decommissioning,
                    },
                );
                self.elect_leaderless();
                Ok(CommandResponse::BrokerRegistered { liveness_epoch })
            }
            Command::CreateTopic {
                name,
                topic_id,
                configs,
                assignments,
            } => {
                if self.topics.contains_key(name) {
                    return Err(Rejection::TopicAlreadyExists(name.clone()));
                }
                if assignments.is_empty() {
                    return Err(Rejection::InvalidReplicaAssignment(
                        "a topic needs at least one partition".into(),
                    ));
                }
                let partitions = self.new_partitions(0, assignments)?;
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        topic_id: *topic_id,
                        configs: configs.clone(),
                        partitions,
                    },
                );
                Ok(CommandResponse::Applied)
            }
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(topic) => {
                    self.share_states.forget_topic(topic.topic_id);
                    Ok(CommandResponse::Applied)
                }
                None => Err(Rejection::UnknownTopicOrPartition(name.clone())),
            },
            Command::CreatePartitions { name, assignments } => {
                let existing = self
                    .topics
                    .get(name)
                    .map(|t| t.partitions.len())
                    .ok_or_else(|| Rejection::UnknownTopicOrPartition(name.clone()))?;
                let added = self.new_partitions(existing, assignments)?;
                if let Some(topic) = self.topics.get_mut(name) {
                    topic.partitions.extend(added);
                }
                Ok(CommandResponse::Applied)
            }
            Command::AlterConfigs { name, set, delete } => {
                let topic = self
                    .topics
                    .get_mut(name)
                    .ok_or_else(|| Rejection::UnknownTopicOrPartition(name.clone()))?;
                for key in delete {
                    topic.configs.remove(key);
                }
                for (key, value) in set {
                    topic.configs.insert(key.clone(), value.clone());
                }
                Ok(CommandResponse::Applied)
            }
            Command::FenceBroker { broker_id } => {
                if !self.brokers.contains_key(broker_id) {
                    return Err(Rejection::InvalidLeadership(format!(
                        "broker {broker_id} is not registered"
                    )));
                }
                self.fence(*broker_id);
                Ok(CommandResponse::Applied)
            }
            Command::UnfenceBroker { broker_id } => {
                let broker = self.brokers.get_mut(broker_id).ok_or_else(|| {
                    Rejection::InvalidLeadership(format!("broker {broker_id} is not registered"))
                })?;
                broker.fenced = false;
                self.elect_leaderless();
                Ok(CommandResponse::Applied)
            }
            Command::UpdatePartitionLeadership {
                name,
                partition,
                leader,
                isr,
                partition_epoch,
            } => {
                let unknown = || Rejection::UnknownTopicOrPartition(format!("{name}-{partition}"));
                let index = usize::try_from(*partition).map_err(|_| unknown())?;
                let live = self.live_brokers();
                let state = self
                    .topics
                    .get_mut(name)
                    .and_then(|t| t.partitions.get_mut(index))
                    .ok_or_else(unknown)?;
                if *partition_epoch != state.partition_epoch {
                    return Err(Rejection::StalePartitionEpoch {
                        given: *partition_epoch,
                        current: state.partition_epoch,
                    });
                }
                if let Some(outsider) = isr.iter().find(|b| !state.replicas.contains(b)) {
                    return Err(Rejection::InvalidLeadership(format!(
                        "ISR member {outsider} holds no replica"
                    )));
                }
                if *leader != NO_LEADER && !isr.contains(leader) {
                    return Err(Rejection::InvalidLeadership(format!(
                        "leader {leader} is not in the ISR"
                    )));
                }
                if isr.is_empty() {
                    return Err(Rejection::InvalidLeadership(
                        "the ISR cannot be empty".into(),
                    ));
                }
                // A fenced broker (gone silent, or in controlled shutdown)
                // does not join an ISR: acks=all would wait for it (Kafka's
                // INELIGIBLE_REPLICA).
                if let Some(fenced) = isr
                    .iter()
                    .find(|b| !state.isr.contains(b) && !live.contains(b))
                {
                    return Err(Rejection::InvalidLeadership(format!(
                        "broker {fenced} is fenced and cannot join the ISR"
                    )));
                }
                if *leader != state.leader {
                    state.leader_epoch += 1;
                    crate::metrics::global().leader_election();
                }
                state.leader = *leader;
                state.isr = isr.clone();
                state.partition_epoch += 1;
                state.complete_reassignment(&live);
                Ok(CommandResponse::Applied)
            }
            Command::Security { change } => {
                let version = self.security.apply(change).map_err(Rejection::Security)?;
                Ok(CommandResponse::SecurityApplied { version })
            }
            Command::ShareStates { writes } => {
                let fenced = self.share_states.apply(writes);
                Ok(CommandResponse::ShareStatesApplied {
                    version: self.share_states.version,
                    fenced,
                })
            }
            Command::ReassignPartition {
                name,
                partition,
                target,
            } => self.reassign(name, *partition, target.as_deref()),
            Command::DecommissionBroker { broker_id } => {
                let broker = self
                    .brokers
                    .get_mut(broker_id)
                    .ok_or(Rejection::UnknownBroker(*broker_id))?;
                broker.decommissioning = true;
                Ok(CommandResponse::Applied)
            }
            Command::UnregisterBroker { broker_id } => {
                if !self.brokers.contains_key(broker_id) {
                    return Err(Rejection::UnknownBroker(*broker_id));
                }
                if let Some((name, index)) = self.partitions_of(*broker_id).into_iter().next() {
                    return Err(Rejection::InvalidReplicaAssignment(format!(
                        "broker {broker_id} still holds a replica of {name}-{index}"
                    )));
                }
                self.brokers.remove(broker_id);
                Ok(CommandResponse::Applied)
            }
        }
    }

    /// Start, change or cancel a partition's reassignment. A new target is
    /// taken against the original replicas; one that equals them with no
    /// reassignment under way changes nothing.
    fn reassign(
        &mut self,
        name: &str,
        partition: i32,
        target: Option<&[i32]>,
    ) -> Result<CommandResponse, Rejection> {
        let unknown = || Rejection::UnknownTopicOrPartition(format!("{name}-{partition}"));
        let index = usize::try_from(partition).map_err(|_| unknown())?;
        if let Some(target) = target {
            self.check_assignment(target)?;
            if let Some(leaving) = target
                .iter()
                .find(|b| self.brokers.get(b).is_some_and(|b| b.decommissioning))
            {
                return Err(Rejection::InvalidReplicaAssignment(format!(
                    "broker {leaving} is being removed from the cluster"
                )));
            }
        }
        let live = self.live_brokers();
        let p = self
            .topics
            .get_mut(name)
            .and_then(|t| t.partitions.get_mut(index))
            .ok_or_else(unknown)?;
        let original = p.original_replicas();
        let Some(target) = target else {
            if !p.reassigning() {
                return Err(Rejection::NoReassignmentInProgress(format!(
                    "{name}-{partition}"
                )));
            }
            p.set_replicas(original, &live)?;
            return Ok(CommandResponse::Applied);
        };
        if target == original.as_slice() && !p.reassigning() {
            return Ok(CommandResponse::Applied);
        }
        let removing: Vec<i32> = original
            .iter()
            .copied()
            .filter(|b| !target.contains(b))
            .collect();
        let mut replicas = target.to_vec();
        replicas.extend(&removing);
        let before = p.clone();
        p.adding_replicas = target
            .iter()
            .copied()
            .filter(|b| !original.contains(b))
            .collect();
        p.removing_replicas = removing;
        p.replicas = replicas;
        let replicas = &p.replicas;
        p.isr.retain(|b| replicas.contains(b));
        if p.isr.is_empty() {
            *p = before;
            return Err(Rejection::InvalidReplicaAssignment(format!(
                "no in-sync replica among {:?}",
                p.replicas
            )));
        }
        p.partition_epoch += 1;
        p.complete_reassignment(&live);
        Ok(CommandResponse::Applied)
    }

    /// Every partition broker `id` holds a replica of.
    pub fn partitions_of(&self, id: i32) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.replicas.contains(&id))
                    .map(|(i, _)| (name.clone(), i as i32))
            })
            .collect()
    }

    /// A replica list must name distinct, registered brokers.
    fn check_assignment(&self, replicas: &[i32]) -> Result<(), Rejection> {
        let distinct: BTreeSet<_> = replicas.iter().collect();
        if replicas.is_empty() || distinct.len() != replicas.len() {
            return Err(Rejection::InvalidReplicaAssignment(format!(
                "replicas {replicas:?} must be distinct and not empty"
            )));
        }
        if let Some(unknown) = replicas.iter().find(|b| !self.brokers.contains_key(b)) {
            return Err(Rejection::InvalidReplicaAssignment(format!(
                "broker {unknown} is not registered"
            )));
        }
        Ok(())
    }

    /// Registered brokers that are not fenced.
    pub fn live_brokers(&self) -> BTreeSet<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.broker_id)
            .collect()
    }

    /// True when broker `id` is registered and not fenced.
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Fence broker `id`: every partition it leads gets the first live ISR
    /// member (in replica order) as leader, or no leader when there is none
    /// (unclean election stays off: the ISR keeps its last member). It
    /// leaves every ISR where others remain.
    fn fence(&mut self, id: i32) {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = true;
        }
        let live = self.live_brokers();
        for p in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            let mut changed = false;
            if p.isr.contains(&id) && p.isr.len() > 1 {
                p.isr.retain(|b| *b != id);
                changed = true;
            }
            if p.leader == id {
                // `id` is fenced by now, so never its own successor.
                p.leader = p.first_live_in_sync(&live).unwrap_or(NO_LEADER);
                p.leader_epoch += 1;
                crate::metrics::global().leader_election();
                changed = true;
            }
            if changed {
                p.partition_epoch += 1;
                p.complete_reassignment(&live);
            }
        }
    }

    /// Give every leaderless partition a live ISR member as leader.
    fn elect_leaderless(&mut self) {
        let live = self.live_brokers();
        for p in self
            .topics
            .values_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            if p.leader != NO_LEADER {
                continue;
            }
            if let Some(next) = p.first_live_in_sync(&live) {
                p.leader = next;
                p.leader_epoch += 1;
                crate::metrics::global().leader_election();
                p.partition_epoch += 1;
            }
        }
    }

    /// Fresh partitions for replica lists that must name distinct, registered brokers.
    /// `existing` is how many partitions the topic has already: the total
    /// stays within what a broker opens for one topic.
    fn new_partitions(
        &self,
        existing: usize,
        assignments: &[Vec<i32>],
    ) -> Result<Vec<PartitionImage>, Rejection> {
        let max = crate::broker::MAX_PARTITIONS_PER_TOPIC as usize;
        if existing.saturating_add(assignments.len()) > max {
            return Err(Rejection::InvalidReplicaAssignment(format!(
                "{} partitions; a topic has at most {max}",
                existing.saturating_add(assignments.len())
            )));
        }
        assignments
            .iter()
            .map(|replicas| {
                self.check_assignment(replicas)?;
                // The first live replica leads; the preferred leader takes
                // over once it is back.
                let leader = replicas
                    .iter()
                    .copied()
                    .find(|r| self.is_live(*r))
                    .unwrap_or(replicas[0]);
                Ok(PartitionImage {
                    replicas: replicas.clone(),
                    leader,
                    leader_epoch: 0,
                    isr: replicas.clone(),
                    partition_epoch: 0,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A RegisterBroker command for broker `id` on made-up local ports.
    pub(crate) fn register(id: i32) -> Command {
        Command::RegisterBroker {
            broker_id: id,
            kafka_addr: format!("127.0.0.1:{}", 9090 + id),
            http_addr: format!("127.0.0.1:{}", 8080 + id),
            cluster_addr: format!("127.0.0.1:{}", 7070 + id),
            cluster_id: "test-cluster".into(),
            listeners: BTreeMap::new(),
        }
    }

    fn three_brokers() -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.apply(&register(id));
        }
        image
    }

    fn create(name: &str, assignments: Vec<Vec<i32>>) -> Command {
        Command::CreateTopic {
            name: name.into(),
            topic_id: uuid::Uuid::new_v4(),
            configs: BTreeMap::new(),
            assignments,
        }
    }

    #[test]
    fn reregistering_a_broker_bumps_its_liveness_epoch() {
        let mut image = three_brokers();
        assert_eq!(
            image.apply(&register(2)),
            CommandResponse::BrokerRegistered { liveness_epoch: 2 }
        );
        assert_eq!(image.brokers[&2].liveness_epoch, 2);
        assert_eq!(image.brokers[&1].liveness_epoch, 1);
    }

    #[test]
    fn created_topic_starts_with_preferred_leader_and_full_isr() {
        let mut image = three_brokers();
        let response = image.apply(&create("orders", vec![vec![1, 2, 3], vec![2, 3, 1]]));
        assert_eq!(response, CommandResponse::Applied);
        let p1 = &image.topics["orders"].partitions[1];
        assert_eq!((p1.leader, p1.leader_epoch, p1.partition_epoch), (2, 0, 0));
        assert_eq!(p1.isr, vec![2, 3, 1]);
    }

    #[test]
    fn invalid_commands_are_rejected_and_change_nothing() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![1, 2]]));
        let before = image.clone();
        for command in [
            create("orders", vec![vec![1]]),
            create("dup", vec![vec![1, 1]]),
            create("ghost", vec![vec![1, 9]]),
            Command::DeleteTopic {
                name: "nope".into(),
            },
            Command::CreatePartitions {
                name: "orders".into(),
                assignments: vec![vec![4]],
            },
            Command::CreatePartitions {
                name: "orders".into(),
                assignments: vec![vec![1]; crate::broker::MAX_PARTITIONS_PER_TOPIC as usize],
            },
        ] {
            assert!(
                matches!(image.apply(&command), CommandResponse::Rejected(_)),
                "{command:?} should be rejected"
            );
            assert_eq!(image, before);
        }
    }

    #[test]
    fn leadership_change_bumps_epochs_and_refuses_stale_partition_epoch() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![1, 2, 3]]));
        let change = |leader, isr: Vec<i32>, partition_epoch| Command::UpdatePartitionLeadership {
            name: "orders".into(),
            partition: 0,
            leader,
            isr,
            partition_epoch,
        };
        assert_eq!(
            image.apply(&change(2, vec![2, 3], 0)),
            CommandResponse::Applied
        );
        let p = &image.topics["orders"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 1));
        // An ISR-only change keeps the leader epoch.
        image.apply(&change(2, vec![2, 3, 1], 1));
        let p = &image.topics["orders"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));
        assert!(matches!(
            image.apply(&change(3, vec![3], 1)),
            CommandResponse::Rejected(Rejection::StalePartitionEpoch { .. })
        ));
        assert!(matches!(
            image.apply(&change(1, vec![2], 2)),
            CommandResponse::Rejected(Rejection::InvalidLeadership(_))
        ));
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_and_unfencing_restores_leaderless() {
        let mut image = three_brokers();
        image.apply(&create(
            "orders",
            vec![vec![1, 2, 3], vec![2, 3, 1], vec![1]],
        ));
        image.apply(&Command::FenceBroker { broker_id: 1 });
        let parts = &image.topics["orders"].partitions;
        // Led by 1: the next replica in the ISR leads, with a new epoch.
        assert_eq!((parts[0].leader, parts[0].leader_epoch), (2, 1));
        assert_eq!(parts[0].isr, vec![2, 3]);
        // Followed by 1: it leaves the ISR, the leader stays.
        assert_eq!((parts[1].leader, parts[1].leader_epoch), (2, 0));
        assert_eq!(parts[1].isr, vec![2, 3]);
        // Its only replica: no leader, and the ISR keeps it (no unclean election).
        assert_eq!(
            (parts[2].leader, parts[2].isr.clone()),
            (NO_LEADER, vec![1])
        );
        image.apply(&Command::UnfenceBroker { broker_id: 1 });
        let parts = &image.topics["orders"].partitions;
        assert_eq!((parts[2].leader, parts[2].leader_epoch), (1, 2));
        // Leaders elected elsewhere stay until the preferred leader is restored.
        assert_eq!(parts[0].leader, 2);
    }

    #[test]
    fn a_fenced_broker_does_not_join_an_isr_until_unfenced() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![2, 3, 1]]));
        image.apply(&Command::FenceBroker { broker_id: 1 });
        let expand = |partition_epoch| Command::UpdatePartitionLeadership {
            name: "orders".into(),
            partition: 0,
            leader: 2,
            isr: vec![2, 3, 1],
            partition_epoch,
        };
        let epoch = image.topics["orders"].partitions[0].partition_epoch;
        assert!(matches!(
            image.apply(&expand(epoch)),
            CommandResponse::Rejected(Rejection::InvalidLeadership(_))
        ));
        assert_eq!(image.topics["orders"].partitions[0].isr, vec![2, 3]);
        image.apply(&Command::UnfenceBroker { broker_id: 1 });
        let epoch = image.topics["orders"].partitions[0].partition_epoch;
        assert_eq!(image.apply(&expand(epoch)), CommandResponse::Applied);
        assert_eq!(image.topics["orders"].partitions[0].isr, vec![2, 3, 1]);
    }

    #[test]
    fn a_restarted_broker_gives_up_its_leadership_until_it_catches_up() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![1, 2, 3]]));
        image.apply(&register(1));
        let p = &image.topics["orders"].partitions[0];
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (2, 1, vec![2, 3])
        );
        assert!(image.is_live(1));
    }

    #[test]
    fn configs_and_partitions_can_be_altered_and_topics_deleted() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![1]]));
        image.apply(&Command::AlterConfigs {
            name: "orders".into(),
            set: BTreeMap::from([("min.insync.replicas".into(), "2".into())]),
            delete: vec![],
        });
        image.apply(&Command::CreatePartitions {
            name: "orders".into(),
            assignments: vec![vec![2], vec![3]],
        });
        let topic = &image.topics["orders"];
        assert_eq!(topic.configs["min.insync.replicas"], "2");
        assert_eq!(topic.partitions.len(), 3);
        image.apply(&Command::DeleteTopic {
            name: "orders".into(),
        });
        assert!(image.topics.is_empty());
    }

    fn reassign(target: Option<Vec<i32>>) -> Command {
        Command::ReassignPartition {
            name: "orders".into(),
            partition: 0,
            target,
        }
    }

    fn expand(image: &mut MetadataImage, leader: i32, isr: Vec<i32>) -> CommandResponse {
        let partition_epoch = image.topics["orders"].partitions[0].partition_epoch;
        image.apply(&Command::UpdatePartitionLeadership {
            name: "orders".into(),
            partition: 0,
            leader,
            isr,
            partition_epoch,
        })
    }

    #[test]
    fn a_reassignment_adds_replicas_and_completes_when_the_target_is_in_sync() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![1, 2]]));
        assert_eq!(
            image.apply(&reassign(Some(vec![2, 3]))),
            CommandResponse::Applied
        );
        let p = &image.topics["orders"].partitions[0];
        assert_eq!(p.replicas, vec![2, 3, 1]);
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![3], vec![1])
        );
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1, 2]));
        // Node 3 catches up and joins the ISR: the target is the replica set,
        // and the leader, which leaves, hands over within it.
        assert_eq!(
            expand(&mut image, 1, vec![2, 3, 1]),
            CommandResponse::Applied
        );
        let p = &image.topics["orders"].partitions[0];
        assert_eq!(p.replicas, vec![2, 3]);
        assert!(!p.reassigning());
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (2, 1, vec![2, 3])
        );
        assert_eq!(image.partitions_of(1), vec![]);
    }

    #[test]
    fn a_reassignment_can_be_cancelled_and_a_same_target_is_a_no_op() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![1, 2]]));
        let before = image.clone();
        assert_eq!(
            image.apply(&reassign(Some(vec![1, 2]))),
            CommandResponse::Applied
        );
        assert_eq!(image, before);
        assert!(matches!(
            image.apply(&reassign(None)),
            CommandResponse::Rejected(Rejection::NoReassignmentInProgress(_))
        ));
        image.apply(&reassign(Some(vec![3, 1])));
        assert_eq!(image.topics["orders"].partitions[0].replicas, vec![3, 1, 2]);
        assert_eq!(image.apply(&reassign(None)), CommandResponse::Applied);
        let p = &image.topics["orders"].partitions[0];
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![1, 2], vec![1, 2], 1)
        );
        assert!(!p.reassigning());
        // Shrinking to in-sync replicas completes at once.
        image.apply(&reassign(Some(vec![2])));
        let p = &image.topics["orders"].partitions[0];
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![2], vec![2], 2)
        );
    }

    #[test]
    fn invalid_reassignments_are_refused() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![1, 2]]));
        let before = image.clone();
        for (command, unknown) in [
            (reassign(Some(vec![])), false),
            (reassign(Some(vec![2, 2])), false),
            (reassign(Some(vec![2, 9])), false),
            (
                Command::ReassignPartition {
                    name: "orders".into(),
                    partition: 5,
                    target: Some(vec![1]),
                },
                true,
            ),
            (
                Command::ReassignPartition {
                    name: "ghost".into(),
                    partition: 0,
                    target: Some(vec![1]),
                },
                true,
            ),
        ] {
            match image.apply(&command) {
                CommandResponse::Rejected(Rejection::UnknownTopicOrPartition(_)) => {
                    assert!(unknown)
                }
                CommandResponse::Rejected(Rejection::InvalidReplicaAssignment(_)) => {
                    assert!(!unknown)
                }
                other => panic!("{command:?}: {other:?}"),
            }
            assert_eq!(image, before);
        }
    }

    #[test]
    fn a_decommissioned_broker_is_unregistered_only_once_it_holds_nothing() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![1, 3]]));
        image.apply(&Command::DecommissionBroker { broker_id: 3 });
        assert!(image.brokers[&3].decommissioning);
        assert!(matches!(
            image.apply(&reassign(Some(vec![3, 2]))),
            CommandResponse::Rejected(Rejection::InvalidReplicaAssignment(_))
        ));
        assert!(matches!(
            image.apply(&Command::UnregisterBroker { broker_id: 3 }),
            CommandResponse::Rejected(Rejection::InvalidReplicaAssignment(_))
        ));
        image.apply(&reassign(Some(vec![1, 2])));
        expand(&mut image, 1, vec![1, 3, 2]);
        assert_eq!(image.partitions_of(3), vec![]);
        assert_eq!(
            image.apply(&Command::UnregisterBroker { broker_id: 3 }),
            CommandResponse::Applied
        );
        assert!(!image.brokers.contains_key(&3));
        assert!(matches!(
            image.apply(&Command::DecommissionBroker { broker_id: 3 }),
            CommandResponse::Rejected(Rejection::UnknownBroker(3))
        ));
    }

    #[test]
    fn image_survives_a_json_round_trip() {
        let mut image = three_brokers();
        image.apply(&create("orders", vec![vec![1, 2], vec![2, 3]]));
        let json = serde_json::to_vec(&image).unwrap();
        let back: MetadataImage = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, image);
    }
}
