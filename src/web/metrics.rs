//! `GET /metrics`: the node's Prometheus metrics, in the classic text format
//! or OpenMetrics when the scraper's `Accept` asks for it. The event
//! counters come from `metrics::global()`; the state (partition offsets and
//! sizes, ISR, under-replicated and offline partitions, the Raft log,
//! consumer group lag) is read here at scrape time from the same in-memory
//! structures as `/api/cluster` (`cluster_api::describe`), so nothing on a
//! hot path keeps a gauge up to date. `count_http` counts every answered
//! HTTP request by route pattern, method and status.
//!
//! With `--http-auth` the route is an ordinary read (role `viewer`, as the
//! cluster views): it names topics and groups. Must never: read a log or
//! block (it answers from memory). Locks: none of its own.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::DescriptorEncoder;

use super::cluster_api::{self, ClusterInfo, ClusterView};
use crate::cluster::RaftStatus;
use crate::metrics::{self, gauge, gauges, labels, Collector, Fmt, Format, Labels};

/// `GET /metrics`.
pub(super) async fn scrape(State(view): State<ClusterView>, headers: HeaderMap) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let state = NodeState::read(&view);
    match metrics::scrape(format, Box::new(state)) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Count an answered HTTP request by the router's pattern for its path
/// (`/api/orders/{id}`; `other` for paths no route names, such as the
/// dashboard's files), so the label values stay few.
pub(super) async fn count_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_owned();
    let method = req.method().clone();
    let response = next.run(req).await;
    metrics::global().http_request(&route, method.as_str(), response.status().as_u16());
    response
}

/// What the node's state was at the scrape.
#[derive(Debug)]
struct NodeState {
    /// This node's id.
    node_id: i32,
    /// Brokers, partitions (with ISR and offsets) and groups (with lag).
    cluster: ClusterInfo,
    /// This node's Raft state (None on a single node).
    raft: Option<RaftStatus>,
    /// Partitions without a live leader, counted by the active controller
    /// only (as Kafka's `OfflinePartitionsCount`), so a sum over nodes is right.
    offline: Option<usize>,
}

impl NodeState {
    fn read(view: &ClusterView) -> NodeState {
        let cluster = cluster_api::describe(view);
        let node_id = view.partitions.broker().node_id();
        let (raft, offline) = match view.partitions.replica_manager() {
            Some(rm) => {
                let status = rm.cluster().status();
                let controller = status.leader.is_some_and(|l| l == status.node_id);
                let offline = controller.then(|| {
                    rm.cluster().read_image(|image| {
                        image
                            .topics
                            .values()
                            .flat_map(|t| &t.partitions)
                            .filter(|p| image.brokers.get(&p.leader).is_none_or(|b| b.fenced))
                            .count()
                    })
                });
                (Some(status), offline)
            }
            None => (None, Some(0)),
        };
        NodeState {
            node_id,
            cluster,
            raft,
            offline,
        }
    }

    /// The partitions this node hosts, with their labels.
    fn partitions(&self) -> impl Iterator<Item = (Labels, &cluster_api::PartitionInfo)> {
        self.cluster.topics.iter().flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    labels([("topic", &t.name), ("partition", &p.partition.to_string())]),
                    p,
                )
            })
        })
    }

    fn encode_partitions(&self, encoder: &mut DescriptorEncoder) -> Fmt {
        type Field = fn(&cluster_api::PartitionInfo) -> i64;
        let fields: [(&str, &str, Field); 6] = [
            ("kafka_log_log_end_offset", "The offset after the last record of this node's replica, by partition.", |p| p.log_end_offset),
            ("kafka_log_log_start_offset", "The first offset this node's replica holds, by partition.", |p| p.log_start_offset),
            ("kafka_log_high_watermark", "The high watermark (the end of what consumers may read) of this node's replica, by partition.", |p| p.high_watermark),
            ("kafka_log_size_bytes", "Bytes of this node's replica on disk, by partition.", |p| p.size_bytes as i64),
            ("kafka_cluster_partition_replicas", "Replicas assigned to the partition, by partition.", |p| p.replicas.len() as i64),
            ("kafka_cluster_partition_in_sync_replicas", "Replicas in the partition's ISR, by partition.", |p| p.isr.len() as i64),
        ];
        for (name, help, field) in fields {
            gauges(
                encoder,
                name,
                help,
                self.partitions().map(|(l, p)| (l, field(p))),
            )?;
        }
        gauges(
            encoder,
            "kafka_cluster_partition_leader",
            "The partition's leader (a broker id, -1 for none), by partition.",
            self.partitions().map(|(l, p)| (l, i64::from(p.leader))),
        )?;
        let led: Vec<&cluster_api::PartitionInfo> = self
            .partitions()
            .map(|(_, p)| p)
            .filter(|p| p.leader == self.node_id)
            .collect();
        gauge(
            encoder,
            "kafka_server_replicamanager_partitions",
            "Partitions with a replica on this node.",
            self.partitions().count() as i64,
        )?;
        gauge(
            encoder,
            "kafka_server_replicamanager_leaders",
            "Partitions this node leads.",
            led.len() as i64,
        )?;
        gauge(
            encoder,
            "kafka_server_replicamanager_under_replicated_partitions",
            "Partitions this node leads whose ISR is smaller than their replica set.",
            led.iter()
                .filter(|p| p.isr.len() < p.replicas.len())
                .count() as i64,
        )?;
        gauge(
            encoder,
            "kafka_controller_offline_partitions",
            "Partitions without a live leader (reported by the active controller; 0 elsewhere).",
            self.offline.unwrap_or(0) as i64,
        )?;
        gauge(
            encoder,
            "kafka_controller_active_controllers",
            "1 on the active controller, else 0.",
            i64::from(self.cluster.controller_id == self.node_id),
        )?;
        gauges(
            encoder,
            "kafka_cluster_broker_alive",
            "1 for a registered broker that is not fenced, 0 for a fenced one, by broker.",
            self.cluster
                .brokers
                .iter()
                .map(|b| (labels([("broker", &b.id.to_string())]), i64::from(b.alive))),
        )
    }

    fn encode_raft(&self, encoder: &mut DescriptorEncoder) -> Fmt {
        const ROLES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];
        let role = self
            .raft
            .as_ref()
            .map_or_else(|| "leader".to_owned(), |s| s.role.to_lowercase());
        gauges(
            encoder,
            "sluice_raft_role",
            "This node's Raft role (1 for the current one; a single node is its own leader).",
            ROLES
                .iter()
                .map(|r| (labels([("role", r)]), i64::from(role == *r))),
        )?;
        let raft = self.raft.as_ref();
        let value = |v: Option<u64>| v.map(|v| (Labels::new(), v));
        gauges(
            encoder,
            "sluice_raft_term",
            "The current Raft term (0 on a single node).",
            [(Labels::new(), raft.map_or(0, |s| s.term))],
        )?;
        gauges(
            encoder,
            "sluice_raft_last_log_index",
            "Index of the last entry in this node's Raft log.",
            value(raft.and_then(|s| s.last_log_index)),
        )?;
        gauges(
            encoder,
            "sluice_raft_commit_index",
            "Index of the last entry a majority of voters holds (reported by the Raft leader).",
            value(raft.and_then(|s| s.committed_index)),
        )?;
        gauges(
            encoder,
            "sluice_raft_applied_index",
            "Index of the last entry applied to this node's metadata image.",
            value(raft.and_then(|s| s.last_applied_index)),
        )
    }

    fn encode_groups(&self, encoder: &mut DescriptorEncoder) -> Fmt {
        let lags = || {
            self.cluster.groups.iter().flat_map(|g| {
                g.lag.iter().map(|l| {
                    (
                        labels([
                            ("group", &g.group_id),
                            ("topic", &l.topic),
                            ("partition", &l.partition.to_string()),
                        ]),
                        l,
                    )
                })
            })
        };
        gauges(
            encoder,
            "kafka_consumergroup_lag",
            "Log end offset minus the group's committed offset, by group and partition (groups this node coordinates).",
            lags().map(|(labels, l)| (labels, l.lag)),
        )?;
        gauges(
            encoder,
            "kafka_consumergroup_current_offset",
            "The group's committed offset, by group and partition (groups this node coordinates).",
            lags().map(|(labels, l)| (labels, l.committed)),
        )?;
        gauges(
            encoder,
            "kafka_consumergroup_members",
            "Members of the group (groups this node coordinates).",
            self.cluster
                .groups
                .iter()
                .map(|g| (labels([("group", &g.group_id)]), g.members.len() as i64)),
        )
    }
}

impl Collector for NodeState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        self.encode_partitions(&mut encoder)?;
        self.encode_raft(&mut encoder)?;
        self.encode_groups(&mut encoder)
    }
}
