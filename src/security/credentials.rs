//! SCRAM credentials by user and mechanism: salted, never a password.

use serde::{Deserialize, Serialize};

/// Every stored credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {}

/// A change to the stored credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialChange {}

impl Credentials {
    pub(super) fn apply(&mut self, change: &CredentialChange) -> Result<(), String> {
        match *change {}
    }
}
