//! Access control lists in Kafka's model.

use serde::{Deserialize, Serialize};

/// Every stored ACL binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acls {}

/// A change to the ACLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclChange {}

impl Acls {
    pub(super) fn apply(&mut self, change: &AclChange) -> Result<(), String> {
        match *change {}
    }
}
