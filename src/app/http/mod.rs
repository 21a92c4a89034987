//! The shop over HTTP: the REST API under `/api` (`api`), the WebSocket push
//! at `/ws` (`ws`, `hub`), the OpenAPI document (`openapi`) and the JSON
//! shapes of everything it answers (`views`).
//!
//! The top of the shop: it may call the command side, the read model, the
//! workers' controls and the domain. Must never: touch sled or Kafka itself.

mod api;
mod error;
pub(crate) mod hub;
mod openapi;
mod state;
mod views;
pub(crate) mod ws;

pub(crate) use api::routes;
pub(crate) use openapi::document as openapi_document;
pub use state::AppState;
