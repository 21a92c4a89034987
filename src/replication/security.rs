//! Security changes in a cluster: proposed to the controller as one
//! command, and the image's security state copied into the local broker
//! whenever it changes (also before this node's registration is applied,
//! so a restarted node enforces the cluster's ACLs from its first request).
//!
//! Must never: decide what a change means (the security module does).
//! Locks: none held across an await.

use std::sync::Arc;
use std::time::Duration;

use super::ReplicaManager;
use crate::broker::SecurityError;
use crate::cluster::image::{Command, CommandResponse, Rejection};
use crate::cluster::PROPOSE_TIMEOUT;
use crate::security::SecurityChange;

/// How long a committed change may take to reach this node's broker.
#[allow(dead_code)] // used by the SASL, ACL and quota handlers (next)
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl ReplicaManager {
    /// Commit `change` through the controller; returns once this node
    /// applied it, with the state's new version.
    #[allow(dead_code)] // used by the SASL, ACL and quota handlers (next)
    pub async fn change_security(&self, change: SecurityChange) -> Result<u64, SecurityError> {
        let proposed = self
            .unless_stopping(
                self.cluster()
                    .propose(Command::Security { change }, PROPOSE_TIMEOUT),
            )
            .await
            .ok_or_else(|| SecurityError::Unavailable("this node is stopping".into()))?;
        let version = match proposed {
            Ok(CommandResponse::SecurityApplied { version }) => version,
            Ok(CommandResponse::Rejected(Rejection::Security(r))) => {
                return Err(SecurityError::Rejected(r))
            }
            Ok(other) => {
                return Err(SecurityError::Unavailable(format!(
                    "unexpected answer {other:?}"
                )))
            }
            Err(e) => return Err(SecurityError::Unavailable(e.to_string())),
        };
        let security = &self.broker().security;
        if !security.wait_for_version(version, APPLY_TIMEOUT).await {
            return Err(SecurityError::Unavailable(
                "the change is committed but not applied on this node yet".into(),
            ));
        }
        Ok(version)
    }

    /// Copy the image's security state into the broker on every change,
    /// until shutdown.
    /// Propose the security changes made while this node was stopped
    /// (`sluice users` on its data dir), in order, retrying until the
    /// controller commits them; a change the cluster's state refuses (a user
    /// removed that does not exist) is skipped.
    pub(super) async fn propose_pending_security(self: Arc<Self>) {
        let pending = match self.broker().pending_security() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the pending security changes");
                return;
            }
        };
        if pending.is_empty() {
            return;
        }
        let mut shutdown = self.shutdown.clone();
        for change in pending {
            loop {
                match self.change_security(change.clone()).await {
                    Ok(_) => break,
                    Err(SecurityError::Rejected(r)) => {
                        tracing::warn!(reason = %r, "an offline security change was refused");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "offline security change not committed yet")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
        match self.broker().clear_pending_security() {
            Ok(()) => tracing::info!("security changes made offline are committed to the cluster"),
            Err(e) => tracing::error!(error = %e, "cannot clear the pending security changes"),
        }
    }

    pub(super) async fn follow_security(self: Arc<Self>) {
        let mut changes = self.cluster().subscribe();
        let mut shutdown = self.shutdown.clone();
        loop {
            let state = self.cluster().read_image(|image| image.security.clone());
            if let Err(e) = self.broker().replace_security(&state) {
                tracing::error!(error = %e, "cannot store the cluster's security state");
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
