//! Readiness: whether this node can serve clients, as `GET /readyz` answers
//! it. Each part of the node that must be up first (the Kafka listener, its
//! place in the cluster, the shop) registers a `Component` and reports its
//! own state into it; the node is ready while every component is `READY`.
//! `/healthz` (liveness) does not read this.
//!
//! Owns: the table of components and their states, and the log lines when
//! the node becomes ready (with the time since start) or stops being ready.
//! Must never: decide a component's state (each part reports its own),
//! wait, or import anything of the node.
//!
//! Locks: one mutex over the table, held only to read or change it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The state of a component that can serve.
pub const READY: &str = "ready";

/// The readiness table of one node. Cheap to clone.
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

struct Inner {
    /// When the node started: the log line "node ready" gives the time since.
    started: Instant,
    /// Each component's name and state, in registration order.
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    components: Vec<(&'static str, &'static str)>,
    /// Whether the node was ready at the last change (to log transitions).
    ready: bool,
}

/// One component's handle: it reports its state through it. Cheap to clone.
#[derive(Clone)]
pub struct Component {
    readiness: Readiness,
    index: usize,
}

/// What `/readyz` shows: each component's state and whether all are ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub ready: bool,
    pub components: Vec<(&'static str, &'static str)>,
}

impl Readiness {
    /// An empty table (ready, with nothing to wait for) started now.
    pub fn new() -> Self {
        Readiness {
            inner: Arc::new(Inner {
                started: Instant::now(),
                table: Mutex::new(Table {
                    components: Vec::new(),
                    ready: true,
                }),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register component `name` in `state`. Register every component
    /// before `/readyz` is served, so none is missing from its answer.
    pub fn component(&self, name: &'static str, state: &'static str) -> Component {
        let mut table = self.table();
        table.components.push((name, state));
        table.ready = table.components.iter().all(|(_, s)| *s == READY);
        Component {
            readiness: self.clone(),
            index: table.components.len() - 1,
        }
    }

    /// Every component's state now.
    pub fn snapshot(&self) -> Snapshot {
        let table = self.table();
        Snapshot {
            ready: table.ready,
            components: table.components.clone(),
        }
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Component {
    /// Report this component's state (`READY` or a word saying what it waits for).
    pub fn set(&self, state: &'static str) {
        let (name, became) = {
            let mut table = self.readiness.table();
            let entry = &mut table.components[self.index];
            if entry.1 == state {
                return;
            }
            entry.1 = state;
            let name = entry.0;
            let ready = table.components.iter().all(|(_, s)| *s == READY);
            let became = (ready != table.ready).then_some(ready);
            table.ready = ready;
            (name, became)
        };
        tracing::debug!(component = name, state, "readiness changed");
        match became {
            Some(true) => tracing::info!(
                "node ready ready_ms={}",
                self.readiness.inner.started.elapsed().as_millis()
            ),
            Some(false) => tracing::info!(component = name, state, "node not ready"),
            None => {}
        }
    }

    /// Report this component ready.
    pub fn set_ready(&self) {
        self.set(READY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_every_component_is_ready() {
        let readiness = Readiness::new();
        assert!(readiness.snapshot().ready, "nothing to wait for");
        let kafka = readiness.component("kafka", "starting");
        let shop = readiness.component("shop", "connecting");
        assert!(!readiness.snapshot().ready);
        kafka.set_ready();
        assert!(!readiness.snapshot().ready);
        shop.set_ready();
        assert_eq!(
            readiness.snapshot(),
            Snapshot {
                ready: true,
                components: vec![("kafka", READY), ("shop", READY)],
            }
        );
        kafka.set("stopping");
        let snapshot = readiness.snapshot();
        assert!(!snapshot.ready);
        assert_eq!(snapshot.components[0], ("kafka", "stopping"));
    }
}
