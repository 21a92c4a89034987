//! The OpenAPI 3 paths and schemas of the console's API (`/api/admin/...`),
//! merged into the document at `GET /api/openapi.json` that `/api/docs`
//! shows (tests/test_admin_api.py checks the paths are listed).
//!
//! Must never: run requests; it is a document.

use serde_json::{json, Map, Value};

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

/// The responses every console route may give besides its own.
fn common(mut responses: Value) -> Value {
    responses["401"] = error("`--http-auth` is on and no valid credentials came with the request.");
    responses["403"] = error("The caller's role is not `admin`.");
    responses["502"] = error("The Kafka cluster did not answer, or answered with an error (`kafka_error`, `kafka_unavailable`).");
    responses
}

fn op(summary: &str, parameters: Vec<Value>, request: Option<Value>, responses: Value) -> Value {
    let mut o = json!({
        "tags": ["console"],
        "summary": summary,
        "parameters": parameters,
        "responses": common(responses),
    });
    if let Some(r) = request {
        o["requestBody"] = r;
    }
    o
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The console's paths, keyed by path.
pub(crate) fn paths() -> Map<String, Value> {
    let topic = || path_param("name", "The topic name.");
    let group = || path_param("id", "The group id.");
    let not_found = || error("No such topic or group (`not_found`).");
    let mut p = Map::new();
    p.insert("/api/admin/topics".into(), json!({
        "get": op("List topics with partitions, replication factor, size, message count and records/s",
            vec![query("internal", "Include internal topics such as `__consumer_offsets`.", json!({"type": "boolean"}))],
            None,
            json!({"200": ok("The topics.", json!({"type": "object", "properties": {"topics": {"type": "array", "items": schema("AdminTopic")}}}))})),
        "post": op("Create a topic (CreateTopics)", vec![],
            Some(body(schema("AdminNewTopic"))),
            json!({"201": ok("Created.", json!({"type": "object"})), "400": error("A name and at least one partition are required."), "409": error("The topic exists (`conflict`)."), "422": error("The cluster refused the name, partitions, replication factor or a config (`invalid`).")})),
    }));
    p.insert("/api/admin/topics/{name}".into(), json!({
        "get": op("A topic with, per partition, leader, replicas, ISR, log start, log end, high watermark and size",
            vec![topic()], None,
            json!({"200": ok("The topic.", schema("AdminTopic")), "404": not_found()})),
        "delete": op("Delete a topic (DeleteTopics)", vec![topic()], None,
            json!({"200": ok("Deleted.", json!({"type": "object"})), "404": not_found()})),
    }));
    p.insert("/api/admin/topics/{name}/configs".into(), json!({
        "get": op("A topic's configs (DescribeConfigs)", vec![topic()], None,
            json!({"200": ok("Every config, with whether it is the default.", schema("AdminConfigs")), "404": not_found()})),
        "patch": op("Set or remove config overrides (IncrementalAlterConfigs)", vec![topic()],
            Some(body(json!({"type": "object", "properties": {
                "set": {"type": "object", "additionalProperties": {"type": "string"}, "example": {"retention.ms": "3600000"}},
                "delete": {"type": "array", "items": {"type": "string"}}
            }}))),
            json!({"200": ok("The configs after the change.", schema("AdminConfigs")), "400": error("Nothing to change."), "404": not_found(), "422": error("An unknown config or a bad value (`invalid`).")})),
    }));
    p.insert("/api/admin/topics/{name}/partitions".into(), json!({
        "post": op("Add partitions (CreatePartitions)", vec![topic()],
            Some(body(json!({"type": "object", "required": ["count"], "properties": {"count": {"type": "integer", "description": "The new total number of partitions."}}}))),
            json!({"200": ok("Grown.", json!({"type": "object"})), "404": not_found(), "422": error("The count is not larger than now (`invalid`).")})),
    }));
    p.insert("/api/admin/topics/{name}/records".into(), json!({
        "get": op("Read records page by page, filtered on the server",
            vec![
                topic(),
                query("partition", "Only this partition (default: all).", json!({"type": "integer"})),
                query("offset", "Start at this offset (reads oldest first), or with `order=newest` read below it.", json!({"type": "integer", "format": "int64"})),
                query("from_ts", "Only records at or after this time (ms since the epoch); with no offset, reading starts there, oldest first.", json!({"type": "integer", "format": "int64"})),
                query("to_ts", "Only records at or before this time (ms since the epoch).", json!({"type": "integer", "format": "int64"})),
                query("limit", "Records per page (1-500, default 50).", json!({"type": "integer"})),
                query("order", "`newest` (default without offset or from_ts) or `oldest`.", json!({"type": "string", "enum": ["newest", "oldest"]})),
                query("cursor", "The `next_cursor` of the previous page (`partition:offset,...`).", json!({"type": "string"})),
                query("key", "Only records whose key contains this text.", json!({"type": "string"})),
                query("header", "Only records with this header: `name` or `name=value`.", json!({"type": "string"})),
                query("jsonpath", "Only records whose JSON value matches `PATH OP LITERAL`, e.g. `$.customer == \"Ada\"` (OP: == != < <= > >=; PATH: RFC 9535 JSONPath), or a bare PATH that must select something.", json!({"type": "string"})),
                query("scan_budget", "Most records one page may read (default 200000, at most 2000000); a page also stops after 10 s.", json!({"type": "integer"})),
            ],
            None,
            json!({"200": ok("One page.", schema("AdminRecordPage")), "400": error("A bad cursor, order or JSON path (`bad_request`)."), "404": not_found()})),
        "post": op("Produce one record (acks=all)", vec![topic()],
            Some(body(schema("AdminNewRecord"))),
            json!({"201": ok("Written.", json!({"type": "object", "properties": {"partition": {"type": "integer"}, "offset": {"type": "integer"}}})), "400": error("Bad headers."), "404": not_found(), "422": error("No such partition (`invalid`).")})),
    }));
    p.insert("/api/admin/groups".into(), json!({
        "get": op("Every consumer group of the cluster (ListGroups asked of every broker)", vec![], None,
            json!({"200": ok("The groups.", json!({"type": "object", "properties": {"groups": {"type": "array", "items": schema("AdminGroupListing")}}}))})),
    }));
    p.insert("/api/admin/groups/{id}".into(), json!({
        "get": op("A group: state, type, members, assignments and lag per partition", vec![group()], None,
            json!({"200": ok("The group.", schema("AdminGroup")), "404": not_found()})),
        "delete": op("Delete a group (DeleteGroups); it must have no members", vec![group()], None,
            json!({"200": ok("Deleted.", json!({"type": "object"})), "404": not_found(), "409": error("The group has members (`conflict`).")})),
    }));
    p.insert("/api/admin/groups/{id}/reset-offsets".into(), json!({
        "post": op("Reset a group's offsets of one topic (OffsetCommit), or with dry_run only compute them", vec![group()],
            Some(body(schema("AdminReset"))),
            json!({"200": ok("The new position of each partition.", json!({"type": "object"})), "400": error("The value the reset needs is missing."), "404": not_found(), "409": error("The group has members; stop them first (`conflict`).")})),
    }));
    p.insert("/api/admin/groups/{id}/offsets/{topic}".into(), json!({
        "delete": op("Delete a group's committed offsets of one topic (OffsetDelete)",
            vec![group(), path_param("topic", "The topic whose offsets are deleted.")], None,
            json!({"200": ok("Deleted.", json!({"type": "object"})), "404": not_found(), "409": error("A member still consumes the topic (`conflict`).")})),
    }));
    p.insert("/api/admin/brokers".into(), json!({
        "get": op("Brokers: liveness, controller, Raft role and term (only where Raft runs), leaders, disk use, version, uptime", vec![], None,
            json!({"200": ok("The brokers.", schema("AdminBrokers"))})),
    }));
    p
}

/// The console's schemas.
pub(crate) fn schemas() -> Map<String, Value> {
    let int = json!({"type": "integer", "format": "int64"});
    let nullable_int = json!({"type": "integer", "format": "int64", "nullable": true});
    let bytes = json!({"type": "object", "nullable": true, "description": "`{\"text\"}` for UTF-8 bytes, else `{\"base64\"}`",
        "properties": {"text": {"type": "string"}, "base64": {"type": "string"}}});
    let mut s = Map::new();
    s.insert("AdminTopic".into(), json!({"type": "object", "properties": {
        "name": {"type": "string"}, "topic_id": {"type": "string"}, "internal": {"type": "boolean"},
        "partitions": {"type": "integer"}, "replication_factor": {"type": "integer"},
        "size_bytes": nullable_int, "messages": int, "records_per_second": {"type": "number", "nullable": true},
        "under_replicated": {"type": "integer"},
        "partition_details": {"type": "array", "items": {"type": "object", "properties": {
            "partition": {"type": "integer"}, "leader": {"type": "integer"}, "leader_epoch": {"type": "integer"},
            "replicas": {"type": "array", "items": {"type": "integer"}}, "isr": {"type": "array", "items": {"type": "integer"}},
            "log_start_offset": int, "high_watermark": int, "log_end_offset": nullable_int, "size_bytes": nullable_int}}}
    }}));
    s.insert("AdminNewTopic".into(), json!({"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "partitions": {"type": "integer", "default": 1},
        "replication_factor": {"type": "integer", "default": -1, "description": "-1: the broker's default."},
        "configs": {"type": "object", "additionalProperties": {"type": "string"}}
    }}));
    s.insert("AdminConfigs".into(), json!({"type": "object", "properties": {
        "topic": {"type": "string"},
        "configs": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "value": {"type": "string", "nullable": true},
            "default": {"type": "boolean"}, "read_only": {"type": "boolean"}, "sensitive": {"type": "boolean"}}}}
    }}));
    s.insert("AdminRecordPage".into(), json!({"type": "object", "properties": {
        "records": {"type": "array", "items": {"type": "object", "properties": {
            "partition": {"type": "integer"}, "offset": int, "timestamp": int, "key": bytes.clone(), "value": bytes.clone(),
            "headers": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}, "value": bytes}}},
            "size": {"type": "integer"}}}},
        "next_cursor": {"type": "string", "nullable": true, "description": "Pass as `cursor` for the next page; null at the log's end in the direction read."},
        "cursor": {"type": "string", "description": "Where each partition stopped (for a live tail: read `order=oldest` from it)."},
        "scanned": {"type": "integer", "description": "Records read to fill this page."},
        "elapsed_ms": {"type": "integer"},
        "partitions": {"type": "array", "items": {"type": "object"}}
    }}));
    s.insert("AdminNewRecord".into(), json!({"type": "object", "properties": {
        "key": {"type": "string", "nullable": true},
        "value": {"description": "A string is written as it is; any other JSON value as its JSON text.", "nullable": true},
        "headers": {"description": "`{\"name\": \"value\"}` or `[{\"key\", \"value\"}]`."},
        "partition": {"type": "integer", "nullable": true, "description": "Default: by key, else any."}
    }}));
    s.insert("AdminGroupListing".into(), json!({"type": "object", "properties": {
        "group_id": {"type": "string"}, "state": {"type": "string"}, "type": {"type": "string", "enum": ["classic", "consumer"]},
        "protocol_type": {"type": "string"}, "coordinator": {"type": "integer"},
        "members": {"type": "integer", "nullable": true}, "total_lag": nullable_int
    }}));
    s.insert("AdminGroup".into(), json!({"type": "object", "properties": {
        "group_id": {"type": "string"}, "state": {"type": "string"}, "type": {"type": "string"},
        "protocol_type": {"type": "string"}, "protocol": {"type": "string"}, "coordinator": {"type": "integer"},
        "members": {"type": "array", "items": {"type": "object"}},
        "offsets": {"type": "array", "items": {"type": "object", "properties": {
            "topic": {"type": "string"}, "partition": {"type": "integer"}, "committed": nullable_int,
            "high_watermark": nullable_int, "last_stable_offset": nullable_int, "lag": nullable_int, "member_id": {"type": "string", "nullable": true}}}},
        "total_lag": int
    }}));
    s.insert("AdminReset".into(), json!({"type": "object", "required": ["topic", "to"], "properties": {
        "topic": {"type": "string"},
        "partitions": {"type": "array", "items": {"type": "integer"}, "description": "Default: every partition of the topic."},
        "to": {"type": "string", "enum": ["earliest", "latest", "offset", "timestamp", "shift"]},
        "offset": int, "timestamp": {"type": "integer", "format": "int64", "description": "ms since the epoch"},
        "shift": {"type": "integer", "format": "int64", "description": "Added to the committed offset; negative moves back."},
        "dry_run": {"type": "boolean", "default": false}
    }}));
    s.insert("AdminBrokers".into(), json!({"type": "object", "properties": {
        "cluster_id": {"type": "string", "nullable": true}, "controller_id": {"type": "integer"},
        "mode": {"type": "string", "enum": ["single-node", "cluster", "external"]},
        "brokers": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"}, "host": {"type": "string"}, "port": {"type": "integer"}, "alive": {"type": "boolean"},
            "controller": {"type": "boolean"}, "raft_role": {"type": "string", "nullable": true}, "raft_term": nullable_int,
            "leaders": {"type": "integer"}, "replicas": {"type": "integer"}, "disk_used_bytes": nullable_int,
            "version": {"type": "string", "nullable": true}, "uptime_s": nullable_int}}}
    }}));
    s.insert(
        "Error".into(),
        json!({"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}}}}}),
    );
    s
}

/// The whole document: the shop's (when it runs on this node) with the
/// console's paths and schemas added.
pub(crate) fn document(shop: Option<Value>) -> Value {
    let mut doc = shop.unwrap_or_else(|| {
        json!({
            "openapi": "3.0.3",
            "info": {"title": "Sluice API", "version": env!("CARGO_PKG_VERSION")},
            "paths": {},
            "components": {"schemas": {}},
        })
    });
    doc["info"]["title"] = Value::from("Sluice API: shop and console");
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(self::paths());
    }
    if !doc["components"]["schemas"].is_object() {
        doc["components"]["schemas"] = json!({});
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (name, s) in self::schemas() {
            schemas.entry(name).or_insert(s);
        }
    }
    doc
}
