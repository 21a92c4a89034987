//! How a failed shop request is answered: the status of the `ApiError` and
//! its JSON body `{"error": {"code", "message", "fields"?}}`.
//!
//! Must never: decide which error a request gets (the domain and the read
//! model do); it only writes the response.

use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::app::domain::error::ApiError;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "shop request failed");
        }
        (self.status, Json(self.body())).into_response()
    }
}
