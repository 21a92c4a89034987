//! The consumer groups the other brokers of a cluster coordinate, for
//! `/api/cluster`: each node's coordinator knows only the groups whose
//! `__consumer_offsets` partition it leads, so the node asked sends ListGroups,
//! DescribeGroups and OffsetFetch to every other live broker through the
//! project's Kafka client, as any Kafka admin tool would.
//!
//! Lag is computed against this node's replica of each partition (its high
//! watermark), as for the local groups; a partition this node holds no
//! replica of has no lag entry. A broker that does not answer within
//! `PEER_TIMEOUT` is left out (its groups are missing from that answer, the
//! page asks again two seconds later).
//!
//! Must never: block the answer on a dead peer, or reach into another node's
//! memory other than through the Kafka protocol.

use std::time::Duration;

use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::cluster_api::{
    assignment_text, describe, ClusterInfo, ClusterView, GroupInfo, LagInfo, MemberInfo, PeerClient,
};
use crate::client::{BrokerConnection, Client, ClientConfig, ClientError};

/// How long one broker may take to list and describe its groups.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// The `/api/cluster` route: this node's view (`cluster_api::describe`),
/// and on a cluster member the groups the other brokers coordinate.
pub fn router(view: ClusterView) -> Router {
    Router::new()
        .route("/api/cluster", get(cluster))
        .with_state(view)
}

async fn cluster(State(view): State<ClusterView>) -> Json<ClusterInfo> {
    let mut info = describe(&view);
    if view.partitions.replica_manager().is_some() {
        add_other_brokers_groups(&view, &mut info).await;
    }
    Json(info)
}

// A failed connection is tried again on the next request.
impl PeerClient {
    async fn get(&self, bootstrap: &str) -> Result<&Client, ClientError> {
        self.0
            .get_or_try_init(|| async {
                let mut config = ClientConfig::new(bootstrap);
                config.connection.client_id = "sluice-dashboard".to_owned();
                Client::connect(config).await
            })
            .await
    }
}

/// Add to `info` the groups of every other live broker that `info` does not
/// list yet.
async fn add_other_brokers_groups(view: &ClusterView, info: &mut ClusterInfo) {
    let (host, port) = view.partitions.broker().advertised();
    let bootstrap = format!("{host}:{port}");
    let client = match view.peers.get(&bootstrap).await {
        Ok(client) => client,
        Err(e) => {
            tracing::debug!(error = %e, "cluster view: no client for the other brokers' groups");
            return;
        }
    };
    let others: Vec<i32> = info
        .brokers
        .iter()
        .filter(|b| b.alive && !b.this_node)
        .map(|b| b.id)
        .collect();
    let asks = others.into_iter().map(|broker_id| async move {
        match tokio::time::timeout(PEER_TIMEOUT, broker_groups(view, client, broker_id)).await {
            Ok(Ok(groups)) => groups,
            Ok(Err(e)) => {
                tracing::debug!(broker_id, error = %e, "cluster view: groups not listed");
                Vec::new()
            }
            Err(_) => {
                tracing::debug!(broker_id, "cluster view: groups not listed in time");
                Vec::new()
            }
        }
    });
    for groups in futures::future::join_all(asks).await {
        for group in groups {
            if !info.groups.iter().any(|g| g.group_id == group.group_id) {
                info.groups.push(group);
            }
        }
    }
    info.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// The groups `broker_id` coordinates, described, with their lag.
async fn broker_groups(
    view: &ClusterView,
    client: &Client,
    broker_id: i32,
) -> Result<Vec<GroupInfo>, ClientError> {
    let conn = match client.broker(broker_id).await {
        Ok(conn) => conn,
        Err(_) => {
            // A broker that joined after the client connected.
            client.refresh_metadata(&[]).await?;
            client.broker(broker_id).await?
        }
    };
    let listed = conn.request(&ListGroupsRequest::default()).await?;
    let mut out = Vec::new();
    for listing in listed.groups {
        let group_id = listing.group_id.to_string();
        let mut info = GroupInfo {
            group_id: group_id.clone(),
            state: listing.group_state.to_string(),
            coordinator: broker_id,
            protocol_type: listing.protocol_type.to_string(),
            protocol: String::new(),
            members: Vec::new(),
            lag: Vec::new(),
            total_lag: 0,
        };
        describe_into(&conn, &mut info).await?;
        info.lag = lag(view, &conn, &group_id).await?;
        info.total_lag = info.lag.iter().map(|l| l.lag).sum();
        out.push(info);
    }
    Ok(out)
}

/// State, protocol and members from DescribeGroups (a group of the KIP-848
/// protocol answers with an error there and keeps what ListGroups said).
async fn describe_into(conn: &BrokerConnection, info: &mut GroupInfo) -> Result<(), ClientError> {
    let req =
        DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(&info.group_id))]);
    let resp = conn.request(&req).await?;
    let Some(described) = resp.groups.into_iter().next() else {
        return Ok(());
    };
    if described.error_code != 0 {
        return Ok(());
    }
    if !described.group_state.is_empty() {
        info.state = described.group_state.to_string();
    }
    info.protocol_type = described.protocol_type.to_string();
    info.protocol = described.protocol_data.to_string();
    info.members = described
        .members
        .into_iter()
        .map(|m| MemberInfo {
            member_id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            assignment: assignment_text(&m.member_assignment),
        })
        .collect();
    Ok(())
}

/// The group's committed offsets (OffsetFetch, all partitions) against this
/// node's high watermarks.
async fn lag(
    view: &ClusterView,
    conn: &BrokerConnection,
    group_id: &str,
) -> Result<Vec<LagInfo>, ClientError> {
    // All partitions (topics = null) needs v2+; v8+ batches groups.
    let version = conn.version_for_capped::<OffsetFetchRequest>(7)?;
    if version < 2 {
        return Ok(Vec::new());
    }
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group_id)))
        .with_topics(None);
    let resp = conn.request_with_version(&req, version).await?;
    let broker = view.partitions.broker();
    let mut out = Vec::new();
    for topic in resp.topics {
        for p in topic.partitions {
            if p.error_code != 0 || p.committed_offset < 0 {
                continue;
            }
            let Some(log) = broker
                .topic(topic.name.as_str())
                .and_then(|t| t.partition(p.partition_index))
            else {
                continue;
            };
            let log_end_offset = log.high_watermark();
            out.push(LagInfo {
                topic: topic.name.to_string(),
                partition: p.partition_index,
                committed: p.committed_offset,
                log_end_offset,
                lag: (log_end_offset - p.committed_offset).max(0),
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}
