//! Consumer group routes: every group of the cluster (ListGroups asked of
//! every broker), one group with its members and lag per partition, reset
//! offsets (with a dry run), delete a topic's offsets, delete the group.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Admin, AdminError};
use crate::client::{Client, GroupDescription};

/// The end of every partition named, asked once per topic: its high
/// watermark and its last stable offset (where a read_committed consumer
/// stops while a transaction is open).
async fn log_ends(
    client: &Client,
    partitions: impl Iterator<Item = &(String, i32)>,
) -> HashMap<(String, i32), (i64, i64)> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, p) in partitions {
        by_topic.entry(topic.clone()).or_default().push(*p);
    }
    let mut out = HashMap::new();
    for (topic, parts) in by_topic {
        // A deleted topic keeps its committed offsets: show them without a lag.
        let (Ok(high), Ok(stable)) = (
            client.list_offsets_isolated(&topic, &parts, -1, 0).await,
            client.list_offsets_isolated(&topic, &parts, -1, 1).await,
        ) else {
            continue;
        };
        let stable: HashMap<i32, i64> = stable.into_iter().collect();
        out.extend(high.into_iter().map(|(p, hw)| {
            let lso = stable.get(&p).copied().unwrap_or(hw);
            ((topic.clone(), p), (hw, lso))
        }));
    }
    out
}

/// A group's lag on one partition: what it can still read. Up to the last
/// stable offset for a position at or before it (records of an open
/// transaction count once it commits, as a read_committed consumer sees
/// them); a position past it is a read_uncommitted consumer's, measured
/// against the high watermark.
fn lag_of(committed: i64, high_watermark: i64, last_stable: i64) -> i64 {
    if committed <= last_stable {
        last_stable - committed
    } else {
        (high_watermark - committed).max(0)
    }
}

/// Per partition: committed offset, high watermark, last stable offset,
/// lag and owner.
async fn lag_rows(
    client: &Client,
    group: &GroupDescription,
    committed: &BTreeMap<(String, i32), i64>,
) -> (Vec<Value>, i64) {
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &group.members {
        for (topic, parts) in &m.assignment {
            for p in parts {
                owner.insert((topic.clone(), *p), m.member_id.clone());
            }
        }
    }
    let keys: BTreeSet<(String, i32)> = committed.keys().chain(owner.keys()).cloned().collect();
    let ends = log_ends(client, keys.iter()).await;
    let mut total = 0;
    let rows = keys
        .iter()
        .map(|key| {
            let current = committed.get(key).copied();
            let end = ends.get(key).copied();
            let lag = match (current, end) {
                (Some(c), Some((hw, lso))) => Some(lag_of(c, hw, lso)),
                _ => None,
            };
            total += lag.unwrap_or(0);
            json!({
                "topic": key.0,
                "partition": key.1,
                "committed": current,
                "high_watermark": end.map(|e| e.0),
                "last_stable_offset": end.map(|e| e.1),
                "lag": lag,
                "member_id": owner.get(key),
            })
        })
        .collect();
    (rows, total)
}

/// `GET /api/admin/groups`
pub(super) async fn list(State(admin): State<Admin>) -> Result<Json<Value>, AdminError> {
    let client = admin.client().await?;
    let listings = client.list_all_groups().await?;
    let mut groups = Vec::with_capacity(listings.len());
    for g in listings {
        let (members, total_lag) = match client.describe_group(&g.group_id).await {
            Ok(d) => {
                let committed = client.group_offsets(&g.group_id).await.unwrap_or_default();
                let (_, total) = lag_rows(&client, &d, &committed).await;
                (Some(d.members.len()), Some(total))
            }
            Err(_) => (None, None),
        };
        groups.push(json!({
            "group_id": g.group_id,
            "state": g.state,
            "type": if g.group_type.is_empty() { "classic".to_owned() } else { g.group_type.to_lowercase() },
            "protocol_type": g.protocol_type,
            "coordinator": g.coordinator,
            "members": members,
            "total_lag": total_lag,
        }));
    }
    Ok(Json(json!({ "groups": groups })))
}

/// `GET /api/admin/groups/{id}`
pub(super) async fn describe(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let client = admin.client().await?;
    let group = client.describe_group(&id).await?;
    let committed = client.group_offsets(&id).await?;
    let (offsets, total_lag) = lag_rows(&client, &group, &committed).await;
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "assignment": m.assignment.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({
        "group_id": group.group_id,
        "state": group.state,
        "type": group.group_type,
        "protocol_type": group.protocol_type,
        "protocol": group.protocol,
        "coordinator": group.coordinator,
        "members": members,
        "offsets": offsets,
        "total_lag": total_lag,
    })))
}

/// `DELETE /api/admin/groups/{id}`
pub(super) async fn delete(
    State(admin): State<Admin>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    admin.client().await?.delete_group(&id).await?;
    Ok(Json(json!({"deleted": id})))
}

/// `DELETE /api/admin/groups/{id}/offsets/{topic}`
pub(super) async fn delete_offsets(
    State(admin): State<Admin>,
    Path((id, topic)): Path<(String, String)>,
) -> Result<Json<Value>, AdminError> {
    let client = admin.client().await?;
    let partitions: Vec<i32> = client
        .group_offsets(&id)
        .await?
        .keys()
        .filter(|(t, _)| *t == topic)
        .map(|(_, p)| *p)
        .collect();
    if !partitions.is_empty() {
        client
            .delete_group_offsets(&id, &topic, &partitions)
            .await?;
    }
    Ok(Json(
        json!({"group_id": id, "topic": topic, "partitions": partitions}),
    ))
}

/// Where a reset moves each partition.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResetTo {
    Earliest,
    Latest,
    Offset,
    Timestamp,
    Shift,
}

#[derive(Debug, Deserialize)]
pub(super) struct ResetRequest {
    topic: String,
    /// Only these partitions (default: all of the topic's).
    partitions: Option<Vec<i32>>,
    to: ResetTo,
    /// For `offset`.
    offset: Option<i64>,
    /// For `timestamp`: ms since the epoch.
    timestamp: Option<i64>,
    /// For `shift`: added to the committed offset (negative moves back).
    shift: Option<i64>,
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/admin/groups/{id}/reset-offsets`
pub(super) async fn reset_offsets(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    Json(req): Json<ResetRequest>,
) -> Result<Json<Value>, AdminError> {
    let missing =
        |what: &str| AdminError::BadRequest(format!("`{what}` is required for this reset"));
    let client = admin.client().await?;
    // A group that never existed describes as Dead (not found): it may still
    // be given offsets, like kafka-consumer-groups does.
    if let Ok(group) = client.describe_group(&id).await {
        if !group.members.is_empty() && !req.dry_run {
            return Err(AdminError::Conflict(format!(
                "group {id} is {} with {} member(s); stop its consumers before resetting offsets",
                group.state,
                group.members.len()
            )));
        }
    }
    let info = client.topic(&req.topic).await?;
    let partitions: Vec<i32> = match &req.partitions {
        Some(ps) if !ps.is_empty() => ps.clone(),
        _ => info.partitions.iter().map(|p| p.partition).collect(),
    };
    let list = |ts: i64| {
        let client = client.clone();
        let topic = req.topic.clone();
        let partitions = partitions.clone();
        async move {
            client
                .list_offsets(&topic, &partitions, ts)
                .await
                .map(|v| v.into_iter().collect::<BTreeMap<i32, i64>>())
        }
    };
    let earliest = list(-2).await?;
    let latest = list(-1).await?;
    let by_time = match req.to {
        ResetTo::Timestamp => list(req.timestamp.ok_or_else(|| missing("timestamp"))?).await?,
        _ => BTreeMap::new(),
    };
    let committed = client.group_offsets(&id).await.unwrap_or_default();
    let mut targets = Vec::with_capacity(partitions.len());
    let mut rows = Vec::with_capacity(partitions.len());
    for p in &partitions {
        let lo = earliest.get(p).copied().unwrap_or(0);
        let hi = latest.get(p).copied().unwrap_or(0).max(lo);
        let previous = committed.get(&(req.topic.clone(), *p)).copied();
        let offset = match req.to {
            ResetTo::Earliest => lo,
            ResetTo::Latest => hi,
            ResetTo::Offset => req.offset.ok_or_else(|| missing("offset"))?.clamp(lo, hi),
            // No record that recent: start at the end.
            ResetTo::Timestamp => by_time.get(p).copied().filter(|o| *o >= 0).unwrap_or(hi),
            ResetTo::Shift => {
                let shift = req.shift.ok_or_else(|| missing("shift"))?;
                previous.unwrap_or(lo).saturating_add(shift).clamp(lo, hi)
            }
        };
        targets.push((*p, offset));
        rows.push(json!({"partition": p, "previous": previous, "offset": offset, "log_start_offset": lo, "high_watermark": hi}));
    }
    if !req.dry_run {
        client
            .commit_group_offsets(&id, &req.topic, &targets)
            .await?;
    }
    Ok(Json(json!({
        "group_id": id,
        "topic": req.topic,
        "dry_run": req.dry_run,
        "partitions": rows,
    })))
}

#[cfg(test)]
mod tests {
    use super::lag_of;

    #[test]
    fn lag_counts_to_the_last_stable_offset_then_to_the_high_watermark() {
        // No open transaction: the high watermark.
        assert_eq!(lag_of(4, 10, 10), 6);
        // An open transaction from offset 6: a read_committed position waits there.
        assert_eq!(lag_of(4, 10, 6), 2);
        assert_eq!(lag_of(6, 10, 6), 0);
        // Past the last stable offset: a read_uncommitted consumer's position.
        assert_eq!(lag_of(8, 10, 6), 2);
        assert_eq!(lag_of(12, 10, 6), 0);
    }
}
