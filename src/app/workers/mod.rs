//! The shop's long-running tasks: the projector (topics -> read model), the
//! notifier (notable events -> `notifications`), the notification
//! dispatcher (`notifications` as a queue of a share group), the payment processor
//! (payment requests -> outcomes, exactly once, in Kafka transactions), the
//! traffic generator and the replay (rebuild the read model from offset 0).
//!
//! Must never: import HTTP. What a worker must tell the layer above goes
//! through a listener it registers (`projector::ModelListener`).

mod apply;
pub(crate) mod dispatcher;
pub(crate) mod notifier;
pub(crate) mod payment_processor;
pub(crate) mod projector;
pub(crate) mod replay;
pub(crate) mod simulator;
