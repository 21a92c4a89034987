//! Client quotas (byte rates) by user and client id.

use serde::{Deserialize, Serialize};

/// Every stored quota.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quotas {}

/// A change to the quotas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QuotaChange {}

impl Quotas {
    pub(super) fn apply(&mut self, change: &QuotaChange) -> Result<(), String> {
        match *change {}
    }
}
