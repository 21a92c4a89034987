//! Topic routes: list, create, describe, delete, configs, partitions, and
//! the records of a topic (read with filters, produce one).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::filter::{JsonPathFilter, RecordFilter};
use super::records::{format_cursor, parse_cursor, read_page, Order, PageRequest, Start};
use super::{Admin, AdminError};
use crate::client::{Client, ConfigChange, TopicDescription};

/// Most records one page returns.
const MAX_LIMIT: usize = 500;
/// Records one page may read by default, and at most.
const DEFAULT_SCAN_BUDGET: usize = 200_000;
const MAX_SCAN_BUDGET: usize = 2_000_000;

/// This node's log end offset and size of each partition it holds.
fn local_logs(admin: &Admin) -> HashMap<(String, i32), (i64, u64)> {
    let mut out = HashMap::new();
    if let Some(view) = admin.local() {
        for topic in view.partitions.broker().topics() {
            for log in topic.partitions().iter() {
                out.insert(
                    (topic.name.clone(), log.partition),
                    (log.log_end_offset(), log.size_bytes()),
                );
            }
        }
    }
    out
}

/// Log start and high watermark of every partition of `topic`.
async fn offsets(
    client: &Client,
    topic: &TopicDescription,
) -> Result<BTreeMap<i32, (i64, i64)>, AdminError> {
    let partitions: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let starts: BTreeMap<i32, i64> = client
        .list_offsets(&topic.name, &partitions, -2)
        .await?
        .into_iter()
        .collect();
    let ends = client.list_offsets(&topic.name, &partitions, -1).await?;
    Ok(ends
        .into_iter()
        .map(|(p, hw)| (p, (starts.get(&p).copied().unwrap_or(0), hw)))
        .collect())
}

/// A topic as the list and the detail show it.
async fn topic_json(
    admin: &Admin,
    client: &Client,
    topic: &TopicDescription,
    logs: &HashMap<(String, i32), (i64, u64)>,
    with_partitions: bool,
) -> Result<Value, AdminError> {
    let offsets = offsets(client, topic).await?;
    let mut size: Option<u64> = Some(0);
    let mut messages = 0i64;
    let mut rate: Option<f64> = None;
    let mut partitions = Vec::new();
    for p in &topic.partitions {
        let (start, hw) = offsets.get(&p.partition).copied().unwrap_or((0, 0));
        let local = logs.get(&(topic.name.clone(), p.partition)).copied();
        size = match (size, local) {
            (Some(total), Some((_, bytes))) => Some(total + bytes),
            _ => None,
        };
        messages += (hw - start).max(0);
        if let Some(r) = admin.rate(&topic.name, p.partition, hw) {
            rate = Some(rate.unwrap_or(0.0) + r);
        }
        if with_partitions {
            partitions.push(json!({
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "offline_replicas": p.offline_replicas,
                "log_start_offset": start,
                "high_watermark": hw,
                "log_end_offset": local.map(|(leo, _)| leo),
                "size_bytes": local.map(|(_, s)| s),
            }));
        }
    }
    let mut out = json!({
        "name": topic.name,
        "topic_id": topic.topic_id,
        "internal": topic.internal,
        "partitions": topic.partitions.len(),
        "replication_factor": topic.partitions.first().map_or(0, |p| p.replicas.len()),
        "size_bytes": size,
        "messages": messages,
        "records_per_second": rate,
        "under_replicated": topic.partitions.iter().filter(|p| p.isr.len() < p.replicas.len()).count(),
    });
    if with_partitions {
        out["partition_details"] = Value::from(partitions);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    /// Include `__consumer_offsets` and other internal topics.
    #[serde(default)]
    internal: bool,
}

/// `GET /api/admin/topics`
pub(super) async fn list(
    State(admin): State<Admin>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, AdminError> {
    let client = admin.client().await?;
    let cluster = client.describe_cluster().await?;
    let logs = local_logs(&admin);
    let mut topics = Vec::new();
    for topic in cluster.topics.iter().filter(|t| q.internal || !t.internal) {
        topics.push(topic_json(&admin, &client, topic, &logs, false).await?);
    }
    Ok(Json(json!({ "topics": topics })))
}

async fn find_topic(client: &Client, name: &str) -> Result<TopicDescription, AdminError> {
    client
        .describe_cluster()
        .await?
        .topics
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            AdminError::Kafka(crate::client::ClientError::Broker {
                api: kafka_protocol::messages::ApiKey::Metadata,
                error: kafka_protocol::error::ResponseError::UnknownTopicOrPartition,
                topic: Some(name.to_owned()),
                partition: None,
                message: None,
            })
        })
}

/// `GET /api/admin/topics/{name}`
pub(super) async fn describe(
    State(admin): State<Admin>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let client = admin.client().await?;
    let topic = find_topic(&client, &name).await?;
    let logs = local_logs(&admin);
    Ok(Json(
        topic_json(&admin, &client, &topic, &logs, true).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct NewTopic {
    name: String,
    #[serde(default = "one")]
    partitions: i32,
    /// -1: the broker's default.
    #[serde(default = "minus_one")]
    replication_factor: i16,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

fn one() -> i32 {
    1
}

fn minus_one() -> i16 {
    -1
}

/// `POST /api/admin/topics`
pub(super) async fn create(
    State(admin): State<Admin>,
    Json(body): Json<NewTopic>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    if body.name.trim().is_empty() {
        return Err(AdminError::BadRequest("a topic name is required".into()));
    }
    if body.partitions < 1 {
        return Err(AdminError::BadRequest(
            "partitions must be at least 1".into(),
        ));
    }
    let client = admin.client().await?;
    let configs: Vec<(&str, &str)> = body
        .configs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let created = client
        .create_topic(
            &body.name,
            body.partitions,
            body.replication_factor,
            &configs,
        )
        .await?;
    if !created {
        return Err(AdminError::Conflict(format!(
            "topic {} already exists",
            body.name
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": body.name, "partitions": body.partitions})),
    ))
}

/// `DELETE /api/admin/topics/{name}`
pub(super) async fn delete(
    State(admin): State<Admin>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    admin.client().await?.delete_topic(&name).await?;
    Ok(Json(json!({"deleted": name})))
}

/// `GET /api/admin/topics/{name}/configs`
pub(super) async fn configs(
    State(admin): State<Admin>,
    Path(name): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let configs = admin.client().await?.topic_configs(&name).await?;
    let entries: Vec<Value> = configs
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "value": if c.sensitive { None } else { c.value.clone() },
                "default": c.is_default,
                "read_only": c.read_only,
                "sensitive": c.sensitive,
            })
        })
        .collect();
    Ok(Json(json!({"topic": name, "configs": entries})))
}

#[derive(Debug, Deserialize)]
pub(super) struct ConfigPatch {
    /// Overrides to set.
    #[serde(default)]
    set: BTreeMap<String, String>,
    /// Overrides to remove (back to the broker's default).
    #[serde(default)]
    delete: Vec<String>,
}

/// `PATCH /api/admin/topics/{name}/configs`
pub(super) async fn alter_configs(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Json(patch): Json<ConfigPatch>,
) -> Result<Json<Value>, AdminError> {
    let changes: Vec<ConfigChange> = patch
        .set
        .into_iter()
        .map(|(k, v)| ConfigChange::Set(k, v))
        .chain(patch.delete.into_iter().map(ConfigChange::Delete))
        .collect();
    if changes.is_empty() {
        return Err(AdminError::BadRequest("nothing to change".into()));
    }
    let client = admin.client().await?;
    client.alter_topic_configs(&name, &changes).await?;
    configs(State(admin), Path(name)).await
}

#[derive(Debug, Deserialize)]
pub(super) struct AddPartitions {
    /// The new total number of partitions.
    count: i32,
}

/// `POST /api/admin/topics/{name}/partitions`
pub(super) async fn add_partitions(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Json(body): Json<AddPartitions>,
) -> Result<Json<Value>, AdminError> {
    admin
        .client()
        .await?
        .create_partitions(&name, body.count)
        .await?;
    Ok(Json(json!({"topic": name, "partitions": body.count})))
}

#[derive(Debug, Deserialize)]
pub(super) struct RecordsQuery {
    partition: Option<i32>,
    offset: Option<i64>,
    limit: Option<usize>,
    from_ts: Option<i64>,
    to_ts: Option<i64>,
    key: Option<String>,
    header: Option<String>,
    jsonpath: Option<String>,
    /// `newest` (default) or `oldest`.
    order: Option<String>,
    cursor: Option<String>,
    scan_budget: Option<usize>,
}

/// `GET /api/admin/topics/{name}/records`
pub(super) async fn records(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Query(q): Query<RecordsQuery>,
) -> Result<Json<Value>, AdminError> {
    let order = match q.order.as_deref() {
        None | Some("") => {
            if q.offset.is_some() || q.from_ts.is_some() {
                Order::Oldest
            } else {
                Order::Newest
            }
        }
        Some("newest") => Order::Newest,
        Some("oldest") => Order::Oldest,
        Some(other) => {
            return Err(AdminError::BadRequest(format!(
                "order must be newest or oldest, not {other}"
            )))
        }
    };
    let start = match (q.offset, q.from_ts) {
        (Some(o), _) => Start::Offset(o),
        (None, Some(ts)) if order == Order::Oldest => Start::Timestamp(ts),
        _ => Start::Default,
    };
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(text) => Some(
            parse_cursor(text)
                .ok_or_else(|| AdminError::BadRequest("cursor must look like 0:12,1:40".into()))?,
        ),
    };
    let json_path = match q
        .jsonpath
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(text) => {
            Some(JsonPathFilter::parse(text).map_err(|e| AdminError::BadRequest(e.to_string()))?)
        }
    };
    let filter = RecordFilter {
        key: q.key.filter(|k| !k.is_empty()),
        header: q
            .header
            .filter(|h| !h.is_empty())
            .map(|h| RecordFilter::parse_header(&h)),
        json_path,
        from_ts: q.from_ts,
        to_ts: q.to_ts,
    };
    let request = PageRequest {
        topic: name.clone(),
        partition: q.partition,
        order,
        start,
        cursor,
        limit: q.limit.unwrap_or(50).clamp(1, MAX_LIMIT),
        scan_budget: q
            .scan_budget
            .unwrap_or(DEFAULT_SCAN_BUDGET)
            .clamp(1, MAX_SCAN_BUDGET),
        filter,
    };
    let client = admin.client().await?;
    let page = read_page(&client, &request).await?;
    let bounds: Vec<Value> = page
        .bounds
        .iter()
        .map(|(p, (lo, hi))| json!({"partition": p, "log_start_offset": lo, "high_watermark": hi}))
        .collect();
    Ok(Json(json!({
        "topic": name,
        "order": if order == Order::Newest { "newest" } else { "oldest" },
        "records": page.records.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        "next_cursor": page.more.then(|| format_cursor(&page.cursor)),
        "cursor": format_cursor(&page.cursor),
        "scanned": page.scanned,
        "elapsed_ms": page.elapsed_ms as u64,
        "partitions": bounds,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct NewRecord {
    key: Option<String>,
    /// A string is sent as it is; any other JSON value as its JSON text.
    value: Option<Value>,
    /// `{"name": "value"}` or `[{"key": "name", "value": "value"}]`.
    #[serde(default)]
    headers: Option<Value>,
    partition: Option<i32>,
}

fn header_list(headers: Option<Value>) -> Result<IndexMap<StrBytes, Option<Bytes>>, AdminError> {
    let text = |v: &Value| match v {
        Value::Null => None,
        Value::String(s) => Some(Bytes::from(s.clone())),
        other => Some(Bytes::from(other.to_string())),
    };
    let mut out = IndexMap::new();
    match headers {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (k, v) in &map {
                out.insert(StrBytes::from_string(k.clone()), text(v));
            }
        }
        Some(Value::Array(items)) => {
            for item in &items {
                let key = item["key"]
                    .as_str()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| {
                        AdminError::BadRequest("every header needs a non-empty key".into())
                    })?;
                out.insert(StrBytes::from_string(key.to_owned()), text(&item["value"]));
            }
        }
        Some(_) => {
            return Err(AdminError::BadRequest(
                "headers must be an object or a list of {key, value}".into(),
            ))
        }
    }
    Ok(out)
}

/// `POST /api/admin/topics/{name}/records`
pub(super) async fn produce(
    State(admin): State<Admin>,
    Path(name): Path<String>,
    Json(body): Json<NewRecord>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let headers = header_list(body.headers)?;
    let value = match body.value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Bytes::from(s)),
        Some(other) => Some(Bytes::from(other.to_string())),
    };
    let producer = admin.producer().await?;
    let delivery = producer
        .send_to_partition(
            &name,
            body.partition,
            body.key.map(Bytes::from),
            value,
            headers,
        )
        .await?;
    let written = delivery.await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"topic": name, "partition": written.partition, "offset": written.offset})),
    ))
}
