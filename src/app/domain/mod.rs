//! The shop's domain: its events, the order and its derived status, money,
//! validation of commands, the aggregates behind the statistics, and the
//! error every command and query answers with.
//!
//! Everything here is pure: no sled, no Kafka, no HTTP routing, no tasks.
//! Must never: import the read model, the command side, the workers or the
//! HTTP layer (they all build on this).

pub(crate) mod analytics;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod money;
pub(crate) mod order;
pub(crate) mod status;
pub(crate) mod time;
pub(crate) mod validation;
