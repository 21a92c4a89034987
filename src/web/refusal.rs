//! How the HTTP listener's own checks refuse a request: the status and the
//! shop's error shape `{"error": {"code", "message"}}`, so a client reads
//! one format whichever layer answered.
//!
//! Must never: decide whether to refuse (the guard and the auth layer do).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A refusal with `status`, a stable machine-readable `code` and a sentence.
pub(crate) fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}
