//! The shop's HTTP routes: the REST API under `/api`, the WebSocket at `/ws`
//! and the OpenAPI document. Handlers only translate between HTTP and the
//! shop: parse and validate (`validation`), call a command or a query, and
//! shape the answer. Every error is `{"error": {"code", "message", "fields"?}}`.
//!
//! Must never: write to the read model or produce to Kafka except through
//! the command side; it holds no policy of its own.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::state::AppState;
use super::views::{
    accepted_json, delivery_json, model_stats_json, order_detail_json, order_summary_json,
    payment_json, timeline_json,
};
use crate::app::commands;
use crate::app::domain::error::ApiError;
use crate::app::domain::events::{DeliveryStatus, PaymentStatus, SHOP_TOPICS};
use crate::app::domain::order::OrderRecord;
use crate::app::domain::status::OrderStatus;
use crate::app::domain::{time, validation};
use crate::app::read_model::{DeliveryFilter, OrderFilter, PaymentFilter};
use crate::app::workers::{notifier, replay, simulator};

/// Default page size of listings.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Largest page size of listings.
pub(crate) const MAX_LIMIT: usize = 500;

/// The HTTP methods the shop routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
}

impl Verb {
    /// The lower-case name OpenAPI uses (read by the test that checks the
    /// OpenAPI document against the route table).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
        }
    }
}

/// One route of the shop.
pub(crate) struct Route {
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) verb: Verb,
    pub(crate) path: &'static str,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(verb: Verb, path: &'static str, handler: H) -> Route
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    Route {
        verb,
        path,
        handler: on(verb.filter(), handler),
    }
}

/// Every route; the router is built from this table, and a test checks that
/// the OpenAPI document lists exactly these.
pub(crate) fn route_table() -> Vec<Route> {
    use Verb::{Get, Post};
    vec![
        route(Post, "/api/orders", create_order),
        route(Post, "/api/orders/create", create_order),
        route(Get, "/api/orders", list_orders),
        route(Get, "/api/orders/{order_id}", get_order),
        route(Post, "/api/orders/{order_id}/cancel", cancel_order),
        route(Post, "/api/orders/{order_id}/refund", refund_order),
        route(Post, "/api/payments", create_payment),
        route(Get, "/api/payments", list_payments),
        route(Post, "/api/deliveries", create_delivery),
        route(Get, "/api/deliveries", list_deliveries),
        route(
            Get,
            "/api/deliveries/{order_id}/timeline",
            delivery_timeline,
        ),
        route(Get, "/api/notifications", list_notifications),
        route(Get, "/api/stats", stats),
        route(Get, "/api/status", status),
        route(Get, "/api/simulator", simulator_status),
        route(Post, "/api/simulator", set_simulator),
        route(Get, "/api/replay", replay_status),
        route(Post, "/api/replay", start_replay),
        route(Get, "/ws", super::ws::handler),
    ]
}

/// The shop's router, with its state applied (merge it into the node's router).
pub(crate) fn routes(state: AppState) -> Router {
    let limit = state.link.config().max_body_bytes;
    let mut router = Router::new();
    for r in route_table() {
        router = router.route(r.path, r.handler);
    }
    router.layer(DefaultBodyLimit::max(limit)).with_state(state)
}

/// A request body parsed as JSON, with JSON errors for every failure
/// (400 not JSON, 413 too large).
pub(crate) struct JsonBody(pub(crate) Option<Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "payload_too_large",
                    message: e.body_text(),
                    fields: None,
                    details: Default::default(),
                }
            } else {
                ApiError::invalid_json(format!("cannot read the body: {}", e.body_text()))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| JsonBody(Some(v)))
            .map_err(|e| ApiError::invalid_json(format!("the body is not valid JSON: {e}")))
    }
}

impl JsonBody {
    fn required(self) -> Result<Value, ApiError> {
        self.0
            .ok_or_else(|| ApiError::invalid_json("a JSON body is required"))
    }
}

type Accepted = (StatusCode, Json<Value>);

fn accepted(a: commands::Accepted) -> Accepted {
    (StatusCode::ACCEPTED, Json(accepted_json(&a)))
}

type QueryParams = Result<Query<HashMap<String, String>>, QueryRejection>;

fn params(q: QueryParams) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::invalid_query("query", e.body_text()))
}

fn paging(q: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::invalid_query(
                    "limit",
                    format!("must be an integer from 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let offset = match q.get("offset") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .ok_or_else(|| ApiError::invalid_query("offset", "must be an integer >= 0"))?,
    };
    Ok((offset, limit))
}

fn parsed<T>(
    q: &HashMap<String, String>,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    match q.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse(v)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_query(name, format!("must be {expected}"))),
    }
}

fn text(q: &HashMap<String, String>, name: &str) -> Option<String> {
    q.get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

async fn create_order(State(app): State<AppState>, body: JsonBody) -> Result<Accepted, ApiError> {
    let order = validation::parse_new_order(&body.required()?)?;
    Ok(accepted(app.commands.create_order(order).await?))
}

async fn list_orders(State(app): State<AppState>, q: QueryParams) -> Result<Json<Value>, ApiError> {
    let q = params(q)?;
    let (offset, limit) = paging(&q)?;
    let filter = OrderFilter {
        status: parsed(&q, "status", OrderStatus::parse, "an order status")?,
        customer: text(&q, "customer"),
    };
    let page = app
        .read_model
        .current()
        .orders(&filter, offset, limit)
        .await?;
    Ok(Json(json!({
        "orders": page.items.iter().map(order_summary_json).collect::<Vec<_>>(),
        "total": page.total,
        "offset": offset,
        "limit": limit,
    })))
}

async fn known_order(app: &AppState, order_id: &str) -> Result<OrderRecord, ApiError> {
    if !validation::valid_order_id(order_id) {
        return Err(ApiError::order_not_found(order_id));
    }
    app.read_model
        .current()
        .order(order_id)
        .await?
        .filter(|o| o.created.is_some())
        .ok_or_else(|| ApiError::order_not_found(order_id))
}

async fn get_order(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(order_detail_json(
        &known_order(&app, &order_id).await?,
    )))
}

/// The `{"reason"?}` body of an order-level command and its order id, checked.
fn order_reason(order_id: &str, body: &JsonBody) -> Result<Option<String>, ApiError> {
    let reason = validation::parse_cancel(body.0.as_ref())?;
    if !validation::valid_order_id(order_id) {
        return Err(ApiError::order_not_found(order_id));
    }
    Ok(reason)
}

async fn cancel_order(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
    body: JsonBody,
) -> Result<Accepted, ApiError> {
    let reason = order_reason(&order_id, &body)?;
    Ok(accepted(
        app.commands.cancel_order(&order_id, reason).await?,
    ))
}

async fn refund_order(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
    body: JsonBody,
) -> Result<Accepted, ApiError> {
    let reason = order_reason(&order_id, &body)?;
    Ok(accepted(
        app.commands.refund_order(&order_id, reason).await?,
    ))
}

async fn create_payment(State(app): State<AppState>, body: JsonBody) -> Result<Accepted, ApiError> {
    let payment = validation::parse_new_payment(&body.required()?)?;
    Ok(accepted(app.commands.add_payment(payment).await?))
}

async fn list_payments(
    State(app): State<AppState>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let q = params(q)?;
    let (offset, limit) = paging(&q)?;
    let filter = PaymentFilter {
        status: parsed(
            &q,
            "status",
            PaymentStatus::parse,
            "authorized, failed or refunded",
        )?,
        method: text(&q, "method"),
        order_id: text(&q, "order_id"),
    };
    let page = app
        .read_model
        .current()
        .payments(&filter, offset, limit)
        .await?;
    Ok(Json(json!({
        "payments": page.items.iter().map(|(o, p)| payment_json(o, p)).collect::<Vec<_>>(),
        "total": page.total,
        "offset": offset,
        "limit": limit,
    })))
}

async fn list_notifications(
    State(app): State<AppState>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let q = params(q)?;
    let (offset, limit) = paging(&q)?;
    let severity = parsed(
        &q,
        "severity",
        |s| ["info", "success", "warning"].into_iter().find(|v| *v == s),
        "info, success or warning",
    )?;
    let page = app
        .read_model
        .current()
        .notifications(severity, offset, limit)
        .await?;
    Ok(Json(json!({
        "notifications": page.items,
        "total": page.total,
        "offset": offset,
        "limit": limit,
    })))
}

async fn create_delivery(
    State(app): State<AppState>,
    body: JsonBody,
) -> Result<Accepted, ApiError> {
    let delivery = validation::parse_new_delivery(&body.required()?)?;
    Ok(accepted(app.commands.add_delivery(delivery).await?))
}

async fn list_deliveries(
    State(app): State<AppState>,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let q = params(q)?;
    let (offset, limit) = paging(&q)?;
    let instant = "milliseconds since the epoch, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ";
    let filter = DeliveryFilter {
        status: parsed(&q, "status", DeliveryStatus::parse, "a delivery status")?,
        carrier: text(&q, "carrier"),
        from: parsed(&q, "from", time::parse_instant, instant)?,
        to: parsed(&q, "to", time::parse_instant, instant)?,
    };
    let page = app
        .read_model
        .current()
        .deliveries(&filter, offset, limit)
        .await?;
    Ok(Json(json!({
        "deliveries": page.items.iter().map(delivery_json).collect::<Vec<_>>(),
        "total": page.total,
        "offset": offset,
        "limit": limit,
    })))
}

async fn delivery_timeline(
    State(app): State<AppState>,
    Path(order_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let order = known_order(&app, &order_id).await?;
    Ok(Json(json!({
        "order_id": order.order_id,
        "order_status": order.status().as_str(),
        "status": order.delivery_status().map(DeliveryStatus::as_str),
        "carrier": order.carrier(),
        "timeline": timeline_json(&order.timeline),
    })))
}

async fn stats(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(model_stats_json(&app.read_model.current()).await?))
}

async fn status(State(app): State<AppState>) -> Json<Value> {
    let applied: Vec<Value> = {
        let mut v: Vec<_> = app.read_model.progress.applied().into_iter().collect();
        v.sort();
        v.into_iter()
            .map(|((t, p), o)| json!({"topic": t, "partition": p, "next_offset": o}))
            .collect()
    };
    Json(json!({
        "ready": app.link.is_ready(),
        "bootstrap": app.link.config().bootstrap,
        "instance_id": app.instance_id,
        "generation": app.read_model.current().generation,
        "topics": SHOP_TOPICS,
        "groups": {
            "projector": app.read_model.projector_group(&app.instance_id),
            "notifier": notifier::GROUP_ID,
        },
        "applied": applied,
        "websocket_clients": app.hub.client_count(),
    }))
}

async fn simulator_status(State(app): State<AppState>) -> Json<Value> {
    Json(app.simulator.status_json())
}

async fn set_simulator(
    State(app): State<AppState>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let settings = simulator::parse_settings(&body.required()?, app.simulator.settings())?;
    if settings.enabled && !app.link.is_ready() {
        return Err(ApiError::unavailable(
            "the shop is still connecting to Kafka",
        ));
    }
    app.simulator.set(settings);
    Ok(Json(app.simulator.status_json()))
}

async fn replay_status(State(app): State<AppState>) -> Json<Value> {
    Json(app.replay.status_json())
}

async fn start_replay(
    State(app): State<AppState>,
    q: QueryParams,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let q = params(q)?;
    let wait = parsed(&q, "wait", |v| v.parse::<bool>().ok(), "true or false")?.unwrap_or(false);
    if !app.link.is_ready() {
        return Err(ApiError::unavailable(
            "the shop is still connecting to Kafka",
        ));
    }
    if !replay::start(&app.replay) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "replay_running",
            message: "a replay is already running".to_owned(),
            fields: None,
            details: Default::default(),
        });
    }
    if !wait {
        return Ok((StatusCode::ACCEPTED, Json(app.replay.status_json())));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while app.replay.running() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = app.replay.status_json();
    let code = if status["state"] == "done" {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Ok((code, Json(status)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = crate::app::http::openapi::document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        // The document itself is served by the web layer (with the console's paths).
        let routed: BTreeSet<(String, String)> = route_table()
            .iter()
            .map(|r| (r.verb.name().to_owned(), r.path.to_owned()))
            .chain([("get".to_owned(), "/api/openapi.json".to_owned())])
            .collect();
        assert_eq!(routed, documented);
    }
}
