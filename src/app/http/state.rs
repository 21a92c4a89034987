//! What the shop's HTTP handlers share: one handle per role of the shop,
//! each with only what that role needs.
//!
//! Must never: hold state of its own; it only bundles the handles that
//! `app::Shop::open` builds.

use std::sync::Arc;

use super::hub::Hub;
use crate::app::commands::Commands;
use crate::app::kafka::KafkaLink;
use crate::app::read_model::ReadModel;
use crate::app::workers::replay::Replay;
use crate::app::workers::simulator;

/// The handle given to HTTP handlers (and to `app::run`, which starts the
/// workers over the same handles).
#[derive(Clone)]
pub struct AppState {
    /// The command side (`POST` routes, the simulator).
    pub(crate) commands: Arc<Commands>,
    /// The query side.
    pub(crate) read_model: Arc<ReadModel>,
    /// The link to Kafka: readiness, configuration.
    pub(crate) link: Arc<KafkaLink>,
    /// The WebSocket push.
    pub(crate) hub: Arc<Hub>,
    /// The traffic generator's settings and counters.
    pub(crate) simulator: Arc<simulator::Control>,
    /// The replay's status and its hand-over to the projector.
    pub(crate) replay: Arc<Replay>,
    /// Stable id of this node's shop, stored in `app:meta`; names its
    /// projector group so each node reads every partition.
    pub(crate) instance_id: Arc<str>,
}
