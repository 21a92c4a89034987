//! Who a client is and what it may do: the principal a connection
//! authenticated as, and the node's security metadata (SCRAM credentials,
//! ACLs, client quotas) as one `SecurityState`, which also carries the
//! dynamic configs (group configs, dynamic broker configs: `configs.rs`) so
//! they are replicated, stored and restored the same way.
//!
//! The state is the same on every node. A single node applies a
//! `SecurityChange` itself and keeps the state in its database (the broker
//! stores it); in a cluster the change is a controller command, applied by
//! every node to its metadata image, whose state replaces the node's
//! (`Security::replace`). Readers take a snapshot (`Security::current`) and
//! never hold a lock while they work.
//!
//! Must never: do I/O, know the wire format or a listener. Locks: `state`,
//! held only to swap or clone the snapshot.

pub mod acls;
pub mod authorizer;
pub mod configs;
pub mod credentials;
pub mod quotas;
pub mod scram;

use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// An authenticated identity, as Kafka writes it: `User:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Principal {
    /// The principal type (`User`).
    pub kind: String,
    /// The name within the type.
    pub name: String,
}

#[allow(dead_code)] // used by the SASL, ACL and quota handlers (next)
impl Principal {
    /// A user principal.
    pub fn user(name: impl Into<String>) -> Self {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }

    /// Kafka's principal of a connection that did not authenticate
    /// (`User:ANONYMOUS`).
    pub fn anonymous() -> Self {
        Principal::user("ANONYMOUS")
    }

    /// Parse `Type:name` (the type is everything before the first colon).
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once(':')?;
        if kind.is_empty() {
            return None;
        }
        Some(Principal {
            kind: kind.into(),
            name: name.into(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// The node's security metadata, replicated as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityState {
    /// How many changes have been applied (a node waits for its local
    /// state to reach the version a committed change produced).
    #[serde(default)]
    pub version: u64,
    #[serde(default)]
    pub credentials: credentials::Credentials,
    #[serde(default)]
    pub acls: acls::Acls,
    #[serde(default)]
    pub quotas: quotas::Quotas,
    /// Group configs and dynamic broker configs.
    #[serde(default)]
    pub configs: configs::DynamicConfigs,
}

/// One change to the security metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum SecurityChange {
    Credential(credentials::CredentialChange),
    Acl(acls::AclChange),
    Quota(quotas::QuotaChange),
    Config(configs::ConfigChange),
}

/// Why a change was refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SecurityRejection {
    #[error("{0}")]
    Credential(String),
    #[error("{0}")]
    Acl(String),
    #[error("{0}")]
    Quota(String),
    #[error("{0}")]
    Config(String),
}

impl SecurityState {
    /// Apply one change; a refused change leaves the state as it was.
    pub fn apply(&mut self, change: &SecurityChange) -> Result<u64, SecurityRejection> {
        match change {
            SecurityChange::Credential(c) => self
                .credentials
                .apply(c)
                .map_err(SecurityRejection::Credential)?,
            SecurityChange::Acl(c) => self.acls.apply(c).map_err(SecurityRejection::Acl)?,
            SecurityChange::Quota(c) => self.quotas.apply(c).map_err(SecurityRejection::Quota)?,
            SecurityChange::Config(c) => {
                self.configs.apply(c).map_err(SecurityRejection::Config)?
            }
        }
        self.version += 1;
        Ok(self.version)
    }
}

/// A node's current security state, shared by its listeners.
#[derive(Debug, Default)]
pub struct Security {
    state: RwLock<Arc<SecurityState>>,
    changed: tokio::sync::Notify,
    /// This node's measured client byte rates (quotas are enforced per node).
    pub quota_meters: quotas::QuotaMeters,
}

#[allow(dead_code)] // used by the SASL, ACL and quota handlers (next)
impl Security {
    pub fn new(state: SecurityState) -> Self {
        Security {
            state: RwLock::new(Arc::new(state)),
            changed: tokio::sync::Notify::new(),
            quota_meters: quotas::QuotaMeters::default(),
        }
    }

    /// A snapshot of the state.
    pub fn current(&self) -> Arc<SecurityState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Apply `change` to a copy and swap it in; returns the new state (for
    /// the caller to store) or the refusal.
    pub fn apply(&self, change: &SecurityChange) -> Result<Arc<SecurityState>, SecurityRejection> {
        let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
        let mut next = SecurityState::clone(&guard);
        next.apply(change)?;
        let next = Arc::new(next);
        *guard = next.clone();
        drop(guard);
        self.changed.notify_waiters();
        Ok(next)
    }

    /// Replace the state (a cluster node, from its metadata image) when it
    /// differs; true when it did.
    pub fn replace(&self, state: &SecurityState) -> bool {
        let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
        if **guard == *state {
            return false;
        }
        *guard = Arc::new(state.clone());
        drop(guard);
        self.changed.notify_waiters();
        true
    }

    /// Wait until the state's version is at least `version` or `timeout`
    /// passes; true when it is.
    pub async fn wait_for_version(&self, version: u64, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.current().version >= version {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.current().version >= version;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_read_and_write_as_kafka_does() {
        let p = Principal::parse("User:alice").unwrap();
        assert_eq!(p, Principal::user("alice"));
        assert_eq!(p.to_string(), "User:alice");
        assert_eq!(Principal::parse("User:CN=a,O=b").unwrap().name, "CN=a,O=b");
        assert!(Principal::parse("alice").is_none());
        assert!(Principal::parse(":alice").is_none());
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
    }
}
