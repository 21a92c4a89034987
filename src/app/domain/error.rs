//! The JSON error body of every failed shop request:
//! `{"error": {"code", "message", "fields"?}}`, and the status codes used.
//!
//! | status | code | when |
//! | --- | --- | --- |
//! | 400 | `invalid_json` | the body is not JSON, or not a JSON object |
//! | 404 | `not_found` | unknown order id |
//! | 409 | `invalid_transition` | the order's state does not allow the change |
//! | 413 | `payload_too_large` | the body is larger than the limit |
//! | 422 | `amount_mismatch` | a payment is not what is due on the order, or a refund not what was paid (`amount_due` or `amount_refundable`, and `currency`, say what is expected) |
//! | 422 | `validation_failed` | missing fields, wrong types, out-of-range values (`fields` says which) |
//! | 422 | `invalid_query` | a query-string parameter is not understood |
//! | 503 | `unavailable` | the shop is still connecting to Kafka, or the log did not acknowledge |
//! | 500 | `internal` | a bug or a storage failure |
//!
//! Owns the error every command and query of the shop returns. Must never:
//! import anything of the shop but `money` (it is nearly a leaf); the HTTP layer turns it into a
//! response and the read model says how its own errors map onto it.

use std::collections::BTreeMap;

use axum::http::StatusCode;

use super::money::money;

/// A request that failed, ready to be answered.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// One human sentence.
    pub message: String,
    /// Per-field problems (JSON path -> what is wrong), for validation errors.
    pub fields: Option<BTreeMap<String, String>>,
    /// Further members of the error object (what an `amount_mismatch`
    /// expected).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: None,
            details: serde_json::Map::new(),
        }
    }

    /// 400: the body is not a JSON object.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    }

    /// 422: fields are missing, of the wrong type or out of range.
    pub fn validation(fields: BTreeMap<String, String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!(
                "invalid field{}: {}",
                if fields.len() == 1 { "" } else { "s" },
                fields.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
        e.fields = Some(fields);
        e
    }

    /// 422: a query-string parameter is not understood.
    pub fn invalid_query(name: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
            format!("query parameter {name}: {}", message.into()),
        );
        e.fields = Some(BTreeMap::from([(name.to_owned(), "invalid".to_owned())]));
        e
    }

    /// 404: no such order.
    pub fn order_not_found(order_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("order {order_id} does not exist"),
        )
    }

    /// 409: the change is impossible in the order's current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_transition", message)
    }

    /// 422: an amount is not the one expected: `expected_cents` of
    /// `currency`, named `what` in the body (`amount_due`, `amount_refundable`).
    pub fn amount_mismatch(
        message: impl Into<String>,
        what: &str,
        expected_cents: i64,
        currency: &str,
    ) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "amount_mismatch", message);
        e.details
            .insert(what.to_owned(), serde_json::json!(money(expected_cents)));
        e.details
            .insert(format!("{what}_cents"), serde_json::json!(expected_cents));
        e.details
            .insert("currency".to_owned(), serde_json::json!(currency));
        e
    }

    /// 503: the shop cannot serve this right now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500: something that should not happen.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(fields) = &self.fields {
            error["fields"] = serde_json::json!(fields);
        }
        for (key, value) in &self.details {
            error[key.as_str()] = value.clone();
        }
        serde_json::json!({ "error": error })
    }
}
