//! This node's place in the cluster, as its readiness reports it: ready once
//! Metadata from this node would list this broker and a controller that
//! clients can reach. That is: the Raft log exists, a leader (the
//! controller) is known, this run's registration is committed and applied
//! here with this broker not fenced, and the controller is a live broker in
//! the applied image. Before that, Metadata lists no brokers or controller
//! -1, and an admin client waits for a controller until its time-out.
//!
//! Owns: the `cluster` component's state. Must never: change the image or
//! Raft, or wait on anything but their change notifications.

use tokio::sync::watch;

use super::ClusterHandle;
use crate::readiness::{Component, READY};

/// What this node waits for before it can serve clients, or `READY`.
/// `registered`: the liveness epoch of this run's registration, once committed.
pub fn serving_state(handle: &ClusterHandle, registered: Option<u64>) -> &'static str {
    let status = handle.status();
    if !status.initialized {
        return "joining";
    }
    let Some(controller) = status.leader else {
        return "electing";
    };
    let Some(epoch) = registered else {
        return "registering";
    };
    let me = handle.node_id() as i32;
    handle.read_image(|image| match image.brokers.get(&me) {
        Some(b) if b.liveness_epoch == epoch => {
            if b.fenced {
                "fenced"
            } else if !image.is_live(controller as i32) {
                "awaiting_controller"
            } else {
                READY
            }
        }
        // Committed, not yet applied here (or the previous run's entry).
        _ => "applying",
    })
}

/// Report `serving_state` into `component` on every change of the Raft
/// metrics, the applied image or the registration, until shutdown.
pub async fn report(
    handle: ClusterHandle,
    component: Component,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut metrics = handle.raft().metrics();
    let mut image = handle.subscribe();
    let mut registered = handle.registered_epoch();
    loop {
        let epoch = *registered.borrow_and_update();
        metrics.borrow_and_update();
        image.borrow_and_update();
        component.set(serving_state(&handle, epoch));
        // Each `changed()` fails once its sender is gone (Raft stopped):
        // then stop reporting rather than wake in a loop.
        let alive = tokio::select! {
            r = metrics.changed() => r.is_ok(),
            r = image.changed() => r.is_ok(),
            r = registered.changed() => r.is_ok(),
            _ = shutdown.wait_for(|s| *s) => false,
        };
        if !alive {
            component.set("stopped");
            return;
        }
    }
}
