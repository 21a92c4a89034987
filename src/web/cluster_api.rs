//! `GET /api/cluster`: what the dashboard's Cluster page shows — the brokers,
//! every topic's partitions with their offsets, and the consumer groups with
//! their members and lag.
//!
//! Read-only and cheap (in-memory state only; no log reads). It reports what is
//! true of this node: a single node is its own controller and runs no Raft,
//! which the answer says (`"mode": "single-node"`, `"raft_running": false`,
//! no Raft role or term). The route itself is `cluster_groups::router`: a
//! cluster member adds the groups the other brokers coordinate, so every
//! node lists every group.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::OnceCell;

use crate::client::Client;
use crate::group::state::decode_assignment;
use crate::group::GroupCoordinator;
use crate::partition::Partitions;

/// What the cluster view reads.
#[derive(Clone)]
pub struct ClusterView {
    /// Topics, partition logs, replicas and this node's addresses.
    pub partitions: Arc<Partitions>,
    /// Consumer groups, their members and committed offsets.
    pub groups: Arc<GroupCoordinator>,
    /// The bound HTTP address (the configured one may say port 0).
    pub http_addr: SocketAddr,
    /// The Kafka client that asks the other brokers for their groups.
    pub peers: PeerClient,
}

/// A Kafka client to this node's own listener, connected on first use and
/// shared by every request (`cluster_groups` asks the other brokers with it).
#[derive(Clone, Default)]
pub struct PeerClient(pub(super) Arc<OnceCell<Client>>);

/// The whole answer of `GET /api/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterInfo {
    pub cluster_id: String,
    /// `single-node`, or `cluster` for a member of a Raft quorum.
    pub mode: &'static str,
    /// False on a single node: no Raft quorum, no election, no term.
    pub raft_running: bool,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicInfo>,
    pub groups: Vec<GroupInfo>,
    /// When this answer was assembled (ms since the epoch).
    pub generated_at_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct BrokerInfo {
    pub id: i32,
    /// `host:port` given to Kafka clients.
    pub kafka_addr: String,
    /// The HTTP listener (dashboard, REST API).
    pub http_addr: String,
    pub alive: bool,
    pub controller: bool,
    /// This node's own Raft role, and `leader`/`follower` for the others as
    /// this node knows them; `null` on a single node, which runs no Raft.
    pub raft_role: Option<String>,
    /// The current Raft term; `null` on a single node.
    pub raft_term: Option<u64>,
    /// True for the node that answered.
    pub this_node: bool,
}

#[derive(Debug, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: String,
    /// `__consumer_offsets` and other `__` topics.
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader_epoch: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct GroupInfo {
    pub group_id: String,
    /// Kafka's state names: Empty, PreparingRebalance, CompletingRebalance, Stable.
    pub state: String,
    /// The broker that coordinates the group (and answered for it).
    pub coordinator: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberInfo>,
    pub lag: Vec<LagInfo>,
    pub total_lag: i64,
}

#[derive(Debug, Serialize)]
pub struct MemberInfo {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// `topic:0,1 other:2`, decoded from the consumer protocol assignment.
    pub assignment: String,
}

#[derive(Debug, Serialize)]
pub struct LagInfo {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    pub log_end_offset: i64,
    pub lag: i64,
}

/// Assemble the cluster view from the broker's and the coordinator's memory.
pub fn describe(view: &ClusterView) -> ClusterInfo {
    let broker = view.partitions.broker();
    let id = broker.node_id();
    let (host, port) = broker.advertised();
    let (brokers, topics, mode, controller_id, cluster_id) = match view.partitions.replica_manager()
    {
        Some(rm) => cluster_parts(view, rm),
        None => {
            let brokers = vec![BrokerInfo {
                id,
                kafka_addr: format!("{host}:{port}"),
                http_addr: view.http_addr.to_string(),
                alive: true,
                controller: true,
                raft_role: None,
                raft_term: None,
                this_node: true,
            }];
            let topics = broker
                .topics()
                .iter()
                .map(|topic| TopicInfo {
                    name: topic.name.clone(),
                    id: topic.id.to_string(),
                    internal: topic.internal,
                    partitions: topic
                        .partitions()
                        .iter()
                        .map(|log| partition_info(log, id, vec![id], vec![id], log.leader_epoch()))
                        .collect(),
                })
                .collect();
            (
                brokers,
                topics,
                "single-node",
                id,
                broker.cluster_id.clone(),
            )
        }
    };
    let groups = view
        .groups
        .list_groups(&[])
        .into_iter()
        .map(|listing| {
            let (protocol_type, protocol, members) =
                match view.groups.describe_group(&listing.group_id) {
                    Ok(d) => (
                        d.protocol_type,
                        d.protocol,
                        d.members
                            .into_iter()
                            .map(|m| MemberInfo {
                                assignment: assignment_text(&m.assignment),
                                member_id: m.member_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                            })
                            .collect(),
                    ),
                    Err(_) => (listing.protocol_type, String::new(), Vec::new()),
                };
            let lag: Vec<LagInfo> = view
                .groups
                .lag(&listing.group_id)
                .into_iter()
                .map(|l| LagInfo {
                    topic: l.topic,
                    partition: l.partition,
                    committed: l.committed,
                    log_end_offset: l.log_end_offset,
                    lag: l.lag,
                })
                .collect();
            GroupInfo {
                total_lag: lag.iter().map(|l| l.lag).sum(),
                group_id: listing.group_id,
                state: listing.state.to_owned(),
                coordinator: id,
                protocol_type,
                protocol,
                members,
                lag,
            }
        })
        .collect();
    ClusterInfo {
        cluster_id,
        mode,
        raft_running: mode == "cluster",
        controller_id,
        brokers,
        topics,
        groups,
        generated_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    }
}

/// One partition as this node's log has it, with the leadership given.
fn partition_info(
    log: &crate::log::PartitionLog,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    leader_epoch: i32,
) -> PartitionInfo {
    PartitionInfo {
        partition: log.partition,
        leader,
        replicas,
        isr,
        leader_epoch,
        log_start_offset: log.log_start_offset(),
        log_end_offset: log.log_end_offset(),
        high_watermark: log.high_watermark(),
        size_bytes: log.size_bytes(),
    }
}

type ClusterParts = (Vec<BrokerInfo>, Vec<TopicInfo>, &'static str, i32, String);

/// Brokers and partitions of a cluster node, from the metadata image
/// (leaders, replicas, ISR) and this node's replicas (offsets).
fn cluster_parts(view: &ClusterView, rm: &crate::replication::ReplicaManager) -> ClusterParts {
    let image = rm.image();
    let status = rm.cluster().status();
    let me = view.partitions.broker().node_id();
    let controller = status.leader.map_or(-1, |l| l as i32);
    let brokers = image
        .brokers
        .values()
        .map(|b| BrokerInfo {
            id: b.broker_id,
            kafka_addr: b.kafka_addr.clone(),
            http_addr: b.http_addr.clone(),
            alive: !b.fenced,
            controller: b.broker_id == controller,
            raft_role: Some(if b.broker_id == me {
                status.role.to_lowercase()
            } else if b.broker_id == controller {
                "leader".into()
            } else {
                "follower".into()
            }),
            raft_term: Some(status.term),
            this_node: b.broker_id == me,
        })
        .collect();
    let topics = image
        .topics
        .iter()
        .filter_map(|(name, t)| {
            let local = view.partitions.broker().topic(name)?;
            Some(TopicInfo {
                name: name.clone(),
                id: t.topic_id.to_string(),
                internal: name.starts_with("__"),
                partitions: t
                    .partitions
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| {
                        let log = local.partition(i as i32)?;
                        Some(partition_info(
                            &log,
                            p.leader,
                            p.replicas.clone(),
                            p.isr.clone(),
                            p.leader_epoch,
                        ))
                    })
                    .collect(),
            })
        })
        .collect();
    let cluster_id = if image.cluster_id.is_empty() {
        view.partitions.broker().cluster_id.clone()
    } else {
        image.cluster_id.clone()
    };
    (brokers, topics, "cluster", controller, cluster_id)
}

/// `orders:0,1 payments:2` from a consumer-protocol assignment; empty if it is
/// not one (another protocol type) or there is none.
pub(super) fn assignment_text(assignment: &[u8]) -> String {
    decode_assignment(assignment)
        .unwrap_or_default()
        .into_iter()
        .map(|(topic, partitions)| {
            let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
            format!("{topic}:{}", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::NodeConfig;
    use crate::group::{CommitRequest, CoordinatorSettings, PartitionCommit};

    #[tokio::test]
    async fn single_node_reports_itself_its_topics_and_a_committing_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = Arc::new(
            crate::broker::Broker::open(NodeConfig::for_tests(dir.path().to_path_buf()))
                .expect("broker opens"),
        );
        broker
            .create_topic("orders", 3, 1, BTreeMap::new(), false)
            .expect("topic created");
        let settings = CoordinatorSettings::from_config(&broker.config);
        let groups = GroupCoordinator::start(broker.clone(), settings).expect("coordinator");
        let errors = groups
            .commit_offsets(CommitRequest {
                group_id: "projector".into(),
                member_id: String::new(),
                group_instance_id: None,
                generation_id: -1,
                partitions: vec![PartitionCommit {
                    topic: "orders".into(),
                    partition: 1,
                    offset: 0,
                    leader_epoch: -1,
                    metadata: None,
                }],
            })
            .await;
        assert_eq!(errors, vec![Ok(())]);

        let view = ClusterView {
            partitions: Partitions::local(broker.clone()),
            groups: groups.clone(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            peers: PeerClient::default(),
        };
        let info = describe(&view);
        assert_eq!(info.mode, "single-node");
        assert_eq!(info.brokers.len(), 1);
        let me = &info.brokers[0];
        assert!(me.alive && me.controller && me.this_node);
        assert!(!info.raft_running, "a single node runs no Raft");
        assert_eq!((me.raft_role.as_deref(), me.raft_term), (None, None));
        assert_eq!(me.http_addr, "127.0.0.1:8080");

        let orders = info
            .topics
            .iter()
            .find(|t| t.name == "orders")
            .expect("orders listed");
        assert!(!orders.internal);
        assert_eq!(orders.partitions.len(), 3);
        for p in &orders.partitions {
            assert_eq!((p.leader, &p.replicas, &p.isr), (1, &vec![1], &vec![1]));
            assert_eq!(
                (p.log_start_offset, p.log_end_offset, p.high_watermark),
                (0, 0, 0)
            );
        }
        assert!(info.topics.iter().any(|t| t.internal));

        let group = info
            .groups
            .iter()
            .find(|g| g.group_id == "projector")
            .expect("group listed");
        assert_eq!(group.state, "Empty");
        assert!(group.members.is_empty());
        assert_eq!(group.lag.len(), 1);
        assert_eq!(
            (group.lag[0].topic.as_str(), group.lag[0].partition),
            ("orders", 1)
        );
        assert_eq!(group.total_lag, 0);

        let json = serde_json::to_value(&info).expect("serialises");
        assert_eq!(json["raft_running"], false);
        assert!(json["brokers"][0]["raft_role"].is_null());
        assert!(json["brokers"][0]["raft_term"].is_null());
        groups.shutdown().await;
    }
}
