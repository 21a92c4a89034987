//! The OpenAPI 3 description of the shop's HTTP API (`GET /api/openapi.json`),
//! written by hand. A test in `api` checks that it lists exactly the routes
//! of `api::route_table`.
//!
//! Must never: import anything of the shop but the domain's lists of
//! accepted values; it is a document, not code that runs requests.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn body(schema: &str, required: bool) -> Value {
    json!({
        "required": required,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn command(summary: &str, schema: &str, extra: &[(&str, &str)]) -> Value {
    let mut responses = json!({
        "202": ok("The event was acknowledged by the log (acks=all). The read model and WebSocket clients follow asynchronously.", "Accepted"),
        "400": error_response("The body is not JSON, or not a JSON object (`invalid_json`)."),
        "413": error_response("The body is larger than the limit (`payload_too_large`)."),
        "422": error_response("Missing fields, wrong types or out-of-range values (`validation_failed`, see `fields`)."),
        "503": error_response("The shop is still connecting to Kafka, the log did not acknowledge, or the read model is behind (`unavailable`)."),
    });
    for (status, description) in extra {
        responses[*status] = error_response(description);
    }
    json!({
        "summary": summary,
        "requestBody": body(schema, true),
        "responses": responses,
    })
}

/// A command on one order with an optional `{"reason"?}` body.
fn order_command(summary: &str, conflict: &str) -> Value {
    json!({
        "summary": summary,
        "parameters": [path_order_id()],
        "requestBody": body("Cancel", false),
        "responses": {
            "202": ok("The event was acknowledged by the log.", "Accepted"),
            "400": error_response("The body is not a JSON object."),
            "404": error_response("Unknown order id."),
            "409": error_response(conflict),
            "422": error_response("`reason` is not a short string."),
            "503": error_response("Kafka is not reachable."),
        }
    })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn paging() -> [Value; 2] {
    [
        query(
            "limit",
            "Page size (1-500).",
            json!({"type": "integer", "default": 50, "minimum": 1, "maximum": 500}),
        ),
        query(
            "offset",
            "Items to skip.",
            json!({"type": "integer", "default": 0, "minimum": 0}),
        ),
    ]
}

fn path_order_id() -> Value {
    json!({"name": "order_id", "in": "path", "required": true, "schema": {"type": "string"}})
}

fn list(summary: &str, schema: &str, mut params: Vec<Value>) -> Value {
    params.extend(paging());
    json!({
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": ok("One page, newest first, with the total number of matches.", schema),
            "422": error_response("A query parameter is not understood (`invalid_query`)."),
        }
    })
}

fn enum_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

const ORDER_STATUSES: [&str; 11] = [
    "created",
    "payment_failed",
    "paid",
    "cancelled",
    "refunded",
    "scheduled",
    "shipped",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "delivery_failed",
];
const DELIVERY_STATUSES: [&str; 6] = [
    "scheduled",
    "shipped",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "failed",
];
const PAYMENT_STATUSES: [&str; 3] = ["authorized", "failed", "refunded"];

const DESCRIPTION: &str = "The Sluice shop: every order, payment and delivery is an event in a Kafka topic \
(`orders`, `payments`, `deliveries`; JSON values `{schema_version, event_id, type, timestamp, order_id, data}` keyed by order id). \
Commands (POST) are validated against the read model and answer `202 Accepted` with where the event was written as soon as the log acknowledges it. \
Queries (GET) read the CQRS read model, which a per-node consumer group keeps up to date; it is eventually consistent with the log \
(usually within milliseconds). Money is a decimal number with at most two decimal places; timestamps are milliseconds since the Unix epoch.\n\n\
Errors: every failure answers `{\"error\": {\"code\", \"message\", \"fields\"?}}` with 400 `invalid_json`, 404 `not_found`, \
409 `invalid_transition` (or `replay_running`), 413 `payload_too_large`, 422 `validation_failed`/`invalid_query`, \
422 `amount_mismatch` (a payment is not exactly the amount due, or a refund not exactly the amount paid; the error names the expected \
`amount_due` or `amount_refundable`, its `*_cents` and the `currency`), 503 `unavailable`.\n\n\
Money: a payment must equal what is still due on the order; a refund returns everything paid. Revenue is kept and reported per \
currency (`{\"EUR\": 12.5, \"USD\": 3}`), never summed across currencies.\n\n\
WebSocket `GET /ws`: the server sends JSON text messages `{\"event\": NAME, \"data\": {...}}`; a message caused by a shop event \
also carries the event's `event_id` (one event may cause several messages, e.g. a delivery step is a `delivery_update` and an \
`order_updated`: count events by distinct `event_id`). The first message is \
`{\"event\": \"snapshot\", \"data\": {\"stats\": Stats, \"orders\": [OrderSummary x 50 most recent], \"payments\": [Payment x 50], \"deliveries\": [Delivery x 50]}}`; \
then live events: `new_order` (OrderSummary), `order_updated` (OrderSummary), `new_payment` (Payment), \
`delivery_update` (Delivery plus `step`, a TimelineStep), `stats` (Stats, at most once a second while things change), \
`notification` (Notification). A client that falls too far behind is sent a fresh `snapshot` instead of the messages it missed. \
The server pings every 15 s and closes connections that stay silent for 45 s.";

/// The document.
pub(crate) fn document() -> Value {
    let order_filters = vec![
        query("status", "Order status.", enum_of(&ORDER_STATUSES)),
        query(
            "customer",
            "Case-insensitive part of the customer name.",
            json!({"type": "string"}),
        ),
    ];
    let payment_filters = vec![
        query("status", "Payment status.", enum_of(&PAYMENT_STATUSES)),
        query("method", "Payment method.", json!({"type": "string"})),
        query(
            "order_id",
            "Only this order's payments.",
            json!({"type": "string"}),
        ),
    ];
    let notification_filters = vec![query(
        "severity",
        "Notification severity.",
        enum_of(&["info", "success", "warning"]),
    )];
    let instant = json!({"type": "string", "description": "Milliseconds since the epoch, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.mmm]Z`."});
    let delivery_filters = vec![
        query(
            "status",
            "Status of the latest step.",
            enum_of(&DELIVERY_STATUSES),
        ),
        query(
            "carrier",
            "Carrier (case-insensitive).",
            json!({"type": "string"}),
        ),
        query(
            "from",
            "Latest step at or after this time.",
            instant.clone(),
        ),
        query("to", "Latest step at or before this time.", instant),
    ];
    let create_order = command("Place an order (OrderCreated)", "NewOrder", &[]);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Sluice shop API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION,
        },
        "paths": {
            "/api/orders": {
                "post": create_order,
                "get": list("List orders", "OrderPage", order_filters),
            },
            "/api/orders/create": {
                "post": command("Place an order (the original route; same as POST /api/orders)", "NewOrder", &[]),
            },
            "/api/orders/{order_id}": {
                "get": {
                    "summary": "One order with its payments and delivery timeline",
                    "parameters": [path_order_id()],
                    "responses": {
                        "200": ok("The order.", "OrderDetail"),
                        "404": error_response("Unknown order id (`not_found`)."),
                    }
                }
            },
            "/api/orders/{order_id}/cancel": {
                "post": order_command(
                    "Cancel an unpaid order (OrderCancelled)",
                    "The order is paid, cancelled or refunded (`invalid_transition`).",
                )
            },
            "/api/orders/{order_id}/refund": {
                "post": order_command(
                    "Refund everything paid for an order (PaymentRefunded of the amount paid, to the method it was paid with)",
                    "The order is not paid, is on its way, or is cancelled or refunded already (`invalid_transition`).",
                )
            },
            "/api/payments": {
                "post": command(
                    "Record a payment (PaymentAuthorized, PaymentFailed or PaymentRefunded)",
                    "NewPayment",
                    &[("404", "Unknown order id (`not_found`)."),
                      ("409", "The order's state does not allow it: cancelled, already paid, not paid (refund), on its way (refund) (`invalid_transition`)."),
                      ("422", "Missing fields, wrong types or out-of-range values (`validation_failed`, see `fields`); or the amount is not exactly what is due on the order (payment) or what was paid (refund) (`amount_mismatch`, with `amount_due` or `amount_refundable` and `currency`).")],
                ),
                "get": list("List payment records", "PaymentPage", payment_filters),
            },
            "/api/deliveries": {
                "post": command(
                    "Record a delivery step (DeliveryScheduled ... DeliveryDelivered, DeliveryFailed)",
                    "NewDelivery",
                    &[("404", "Unknown order id (`not_found`)."),
                      ("409", "Impossible step: unpaid, cancelled or refunded order, not scheduled first, going backwards, after delivered (`invalid_transition`).")],
                ),
                "get": list("List deliveries (one per order, by latest step)", "DeliveryPage", delivery_filters),
            },
            "/api/deliveries/{order_id}/timeline": {
                "get": {
                    "summary": "An order's delivery timeline, oldest step first",
                    "parameters": [path_order_id()],
                    "responses": {
                        "200": ok("The timeline (empty before the delivery is scheduled).", "Timeline"),
                        "404": error_response("Unknown order id (`not_found`)."),
                    }
                }
            },
            "/api/notifications": {
                "get": list("List the notifier's notifications (each once, newest first)", "NotificationPage", notification_filters),
            },
            "/api/stats": {
                "get": {
                    "summary": "Counts by status, revenue, payment success rate, delivery status mix and the per-minute series",
                    "responses": {"200": ok("The aggregates.", "Stats")}
                }
            },
            "/api/status": {
                "get": {
                    "summary": "Whether the shop is connected, its consumer groups and the offsets applied to the read model",
                    "responses": {"200": ok("The status.", "ShopStatus")}
                }
            },
            "/api/simulator": {
                "get": {
                    "summary": "The traffic generator's settings and counters",
                    "responses": {"200": ok("Its status.", "SimulatorStatus")}
                },
                "post": {
                    "summary": "Start, stop or change the traffic generator",
                    "requestBody": body("SimulatorSettings", true),
                    "responses": {
                        "200": ok("The new status.", "SimulatorStatus"),
                        "400": error_response("Not a JSON object."),
                        "422": error_response("`enabled` missing or not a boolean, `rate_per_sec` not in (0, 5000]."),
                        "503": error_response("The shop is still connecting to Kafka."),
                    }
                }
            },
            "/api/replay": {
                "get": {
                    "summary": "Progress of the last replay",
                    "responses": {"200": ok("Its status.", "ReplayStatus")}
                },
                "post": {
                    "summary": "Rebuild the read model from offset 0 of the topics into a new tree, then swap it in",
                    "parameters": [query("wait", "Answer only when the replay is finished.", json!({"type": "boolean", "default": false}))],
                    "responses": {
                        "200": ok("Finished (with `wait=true`).", "ReplayStatus"),
                        "202": ok("Started; poll GET /api/replay.", "ReplayStatus"),
                        "409": error_response("A replay is already running (`replay_running`)."),
                        "500": ok("Failed (with `wait=true`).", "ReplayStatus"),
                        "503": error_response("The shop is still connecting to Kafka."),
                    }
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3 JSON.", "content": {"application/json": {}}}}
                }
            },
            "/ws": {
                "get": {
                    "summary": "WebSocket push of every change (see the description above for the messages)",
                    "responses": {
                        "101": {"description": "Switching to the WebSocket protocol."},
                        "400": {"description": "Not a WebSocket upgrade request."}
                    }
                }
            }
        },
        // With `--http-auth` (docs/SECURITY.md, "HTTP"): a bearer token from
        // `sluice tokens add`, or the dashboard's session cookie from
        // POST /api/login (writes then need the X-CSRF-Token header from
        // GET /api/session). Without it, no credentials (the empty entry).
        "security": [{"bearerToken": []}, {"sessionCookie": []}, {}],
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `sluice tokens add NAME --role viewer|operator|admin` (needed with --http-auth). viewer: GET and /ws; operator: the shop's writes; admin: /api/replay and /api/simulator writes. 401 without valid credentials, 403 with a role too low."
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "sluice_session",
                    "description": "The dashboard's session (POST /api/login with {\"token\": ...}; POST /api/logout; GET /api/session gives the role and the CSRF token). Writes with it need the X-CSRF-Token header."
                }
            }
        }
    })
}

fn schemas() -> Value {
    let money = json!({"type": "number", "minimum": 0, "multipleOf": 0.01});
    let ts = json!({"type": "integer", "description": "Milliseconds since the Unix epoch."});
    let nullable_string = json!({"type": "string", "nullable": true});
    let counts = json!({"type": "object", "additionalProperties": {"type": "integer"}});
    let mut schemas = serde_json::Map::new();
    schemas.insert("Error".to_owned(), json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": ["invalid_json", "validation_failed", "invalid_query", "amount_mismatch", "not_found", "invalid_transition", "replay_running", "payload_too_large", "unavailable", "internal"]},
                    "message": {"type": "string"},
                    "amount_due": {"type": "number", "description": "`amount_mismatch` of a payment: what is still due on the order."},
                    "amount_due_cents": {"type": "integer"},
                    "amount_refundable": {"type": "number", "description": "`amount_mismatch` of a refund: what was paid (a refund returns exactly that)."},
                    "amount_refundable_cents": {"type": "integer"},
                    "currency": {"type": "string", "description": "`amount_mismatch`: the order's ISO 4217 currency."},
                    "fields": {"type": "object", "additionalProperties": {"type": "string"}, "description": "JSON path of each bad field (e.g. `items[0].price`) -> what is wrong."}
                }
            }}
        }));
    schemas.insert("Accepted".to_owned(), json!({
            "type": "object",
            "required": ["event_id", "type", "topic", "partition", "offset", "order_id", "timestamp"],
            "properties": {
                "event_id": {"type": "string", "format": "uuid"},
                "type": {"type": "string", "example": "OrderCreated"},
                "topic": enum_of(&["orders", "payments", "deliveries"]),
                "partition": {"type": "integer"},
                "offset": {"type": "integer", "format": "int64"},
                "order_id": {"type": "string"},
                "payment_id": {"type": "string", "description": "For payments."},
                "timestamp": ts,
            }
        }));
    schemas.insert(
        "LineItem".to_owned(),
        json!({
            "type": "object",
            "required": ["sku", "quantity", "price"],
            "properties": {
                "sku": {"type": "string", "minLength": 1, "maxLength": 200},
                "quantity": {"type": "integer", "minimum": 1, "maximum": 10000},
                "price": money,
            }
        }),
    );
    schemas.insert("NewOrder".to_owned(), json!({
            "type": "object",
            "required": ["customer", "items"],
            "properties": {
                "customer": {"type": "string", "minLength": 1, "maxLength": 200},
                "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/components/schemas/LineItem"}},
                "currency": {"type": "string", "enum": crate::app::domain::validation::CURRENCIES, "default": "EUR"},
            }
        }));
    schemas.insert(
        "Cancel".to_owned(),
        json!({
            "type": "object",
            "properties": {"reason": {"type": "string", "maxLength": 200}}
        }),
    );
    schemas.insert("NewPayment".to_owned(), json!({
            "type": "object",
            "required": ["order_id", "amount", "method"],
            "properties": {
                "order_id": {"type": "string"},
                "amount": money,
                "method": {"type": "string", "enum": crate::app::domain::validation::PAYMENT_METHODS},
                "status": {"type": "string", "enum": PAYMENT_STATUSES, "default": "authorized"},
                "reason": {"type": "string", "maxLength": 200, "description": "Why a payment failed."},
            }
        }));
    schemas.insert("NewDelivery".to_owned(), json!({
            "type": "object",
            "required": ["order_id", "status"],
            "properties": {
                "order_id": {"type": "string"},
                "status": enum_of(&DELIVERY_STATUSES),
                "carrier": {"type": "string", "maxLength": 200, "description": "Defaults to the carrier of the previous step."},
                "location": {"type": "string", "maxLength": 200},
            }
        }));
    schemas.insert(
        "OrderSummary".to_owned(),
        json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "customer": {"type": "string"},
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/LineItem"}},
                "currency": {"type": "string"},
                "total": money,
                "status": enum_of(&ORDER_STATUSES),
                "paid": {"type": "number", "description": "Authorized minus refunded."},
                "payment_status": {"type": "string", "nullable": true, "enum": PAYMENT_STATUSES},
                "delivery_status": {"type": "string", "nullable": true, "enum": DELIVERY_STATUSES},
                "carrier": nullable_string,
                "cancel_reason": nullable_string,
                "created_at": ts,
                "updated_at": ts,
            }
        }),
    );
    schemas.insert("OrderDetail".to_owned(), json!({
            "allOf": [
                {"$ref": "#/components/schemas/OrderSummary"},
                {"type": "object", "properties": {
                    "payments": {"type": "array", "items": {"$ref": "#/components/schemas/Payment"}},
                    "timeline": {"type": "array", "items": {"$ref": "#/components/schemas/TimelineStep"}},
                }}
            ]
        }));
    schemas.insert(
        "Payment".to_owned(),
        json!({
            "type": "object",
            "properties": {
                "payment_id": {"type": "string"},
                "order_id": {"type": "string"},
                "amount": money,
                "currency": {"type": "string"},
                "method": {"type": "string"},
                "status": enum_of(&PAYMENT_STATUSES),
                "reason": nullable_string,
                "timestamp": ts,
                "event_id": {"type": "string", "format": "uuid"},
            }
        }),
    );
    schemas.insert(
        "TimelineStep".to_owned(),
        json!({
            "type": "object",
            "properties": {
                "status": enum_of(&DELIVERY_STATUSES),
                "carrier": nullable_string,
                "location": nullable_string,
                "timestamp": ts,
                "event_id": {"type": "string", "format": "uuid"},
            }
        }),
    );
    schemas.insert(
        "Delivery".to_owned(),
        json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "status": enum_of(&DELIVERY_STATUSES),
                "carrier": nullable_string,
                "location": nullable_string,
                "customer": nullable_string,
                "created_at": ts,
                "updated_at": ts,
                "steps": {"type": "integer"},
                "step": {"$ref": "#/components/schemas/TimelineStep"},
            }
        }),
    );
    schemas.insert("Timeline".to_owned(), json!({
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "order_status": enum_of(&ORDER_STATUSES),
                "status": {"type": "string", "nullable": true, "enum": DELIVERY_STATUSES},
                "carrier": nullable_string,
                "timeline": {"type": "array", "items": {"$ref": "#/components/schemas/TimelineStep"}},
            }
        }));
    schemas.insert(
        "OrderPage".to_owned(),
        json!(page("orders", "OrderSummary")),
    );
    schemas.insert("PaymentPage".to_owned(), json!(page("payments", "Payment")));
    schemas.insert(
        "NotificationPage".to_owned(),
        json!(page("notifications", "Notification")),
    );
    schemas.insert(
        "DeliveryPage".to_owned(),
        json!(page("deliveries", "Delivery")),
    );
    schemas.insert("Stats".to_owned(), json!({
            "type": "object",
            "properties": {
                "orders": {"type": "object", "properties": {"total": {"type": "integer"}, "by_status": counts}},
                "revenue": {"type": "object", "additionalProperties": {"type": "number"}, "description": "Authorized minus refunded, per currency (ISO 4217 code -> amount); currencies are never added together."},
                "revenue_cents": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "The same in minor units."},
                "payments": {"type": "object", "properties": {
                    "total": {"type": "integer"},
                    "by_status": counts,
                    "success_rate": {"type": "number", "nullable": true, "description": "authorized / (authorized + failed)."},
                }},
                "deliveries": {"type": "object", "properties": {
                    "total": {"type": "integer", "description": "Orders with a delivery."},
                    "by_status": counts,
                    "events": {"type": "integer", "description": "Delivery steps."},
                }},
                "events": {"type": "object", "properties": {
                    "by_topic": counts,
                    "duplicates": {"type": "integer"},
                    "invalid": {"type": "integer"},
                }},
                "per_minute": {"type": "array", "description": "The last 60 minutes that had activity, oldest first.", "items": {
                    "type": "object",
                    "properties": {"minute": ts, "orders": {"type": "integer"}, "revenue": {"type": "object", "additionalProperties": {"type": "number"}, "description": "Per currency."}}
                }},
            }
        }));
    schemas.insert("Notification".to_owned(), json!({
            "type": "object",
            "properties": {
                "notification_id": {"type": "string"},
                "kind": enum_of(&["payment_failed", "payment_refunded", "delivered", "delivery_failed"]),
                "severity": enum_of(&["info", "success", "warning"]),
                "message": {"type": "string"},
                "order_id": {"type": "string"},
                "timestamp": ts,
                "source_event_id": {"type": "string", "format": "uuid"},
            }
        }));
    schemas.insert("Snapshot".to_owned(), json!({
            "type": "object",
            "description": "The `data` of the first WebSocket message (`event` = `snapshot`).",
            "properties": {
                "stats": {"$ref": "#/components/schemas/Stats"},
                "orders": {"type": "array", "maxItems": 50, "items": {"$ref": "#/components/schemas/OrderSummary"}},
                "payments": {"type": "array", "maxItems": 50, "items": {"$ref": "#/components/schemas/Payment"}},
                "deliveries": {"type": "array", "maxItems": 50, "items": {"$ref": "#/components/schemas/Delivery"}},
            }
        }));
    schemas.insert("SimulatorSettings".to_owned(), json!({
            "type": "object",
            "required": ["enabled"],
            "properties": {
                "enabled": {"type": "boolean"},
                "rate_per_sec": {"type": "number", "exclusiveMinimum": 0, "maximum": 5000, "description": "Events per second (orders, payments and delivery steps together); keeps the previous value when absent."},
            }
        }));
    schemas.insert(
        "SimulatorStatus".to_owned(),
        json!({
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean"},
                "rate_per_sec": {"type": "number"},
                "events_sent": {"type": "integer"},
                "errors": {"type": "integer"},
            }
        }),
    );
    schemas.insert("ReplayStatus".to_owned(), json!({
            "type": "object",
            "properties": {
                "state": enum_of(&["idle", "running", "swapping", "done", "failed"]),
                "from_generation": {"type": "integer"},
                "to_generation": {"type": "integer"},
                "events_applied": {"type": "integer"},
                "events_total": {"type": "integer", "description": "Records in the topics when the replay started."},
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "started_at": ts,
                "finished_at": ts,
                "duration_ms": {"type": "integer"},
                "error": nullable_string,
            }
        }));
    schemas.insert("ShopStatus".to_owned(), json!({
            "type": "object",
            "properties": {
                "ready": {"type": "boolean"},
                "bootstrap": {"type": "string"},
                "instance_id": {"type": "string"},
                "generation": {"type": "integer"},
                "topics": {"type": "array", "items": {"type": "string"}},
                "groups": {"type": "object", "properties": {"projector": {"type": "string"}, "notifier": {"type": "string"}}},
                "applied": {"type": "array", "items": {"type": "object", "properties": {
                    "topic": {"type": "string"}, "partition": {"type": "integer"}, "next_offset": {"type": "integer"}
                }}},
                "websocket_clients": {"type": "integer"},
            }
        }));
    Value::Object(schemas)
}

fn page(field: &str, schema: &str) -> Value {
    json!({
        "type": "object",
        "properties": {
            field: {"type": "array", "items": {"$ref": format!("#/components/schemas/{schema}")}},
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                schemas.contains_key(&name),
                "{name} is referenced but not defined"
            );
        }
    }
}
