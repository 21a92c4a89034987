//! The node's security metadata (credentials, ACLs, quotas) as one record
//! (tree `security`, key `state`). On a single node it is the state itself;
//! a cluster node keeps it too but replaces it from the metadata image.
//!
//! Owns the key layout of that tree. Must never: interpret the record (the
//! security module owns its format). Locks: none of its own (sled's).

use super::{Storage, StorageError};

const SECURITY_TREE: &str = "security";
const STATE_KEY: &str = "state";
/// Changes made on the stopped node (`sluice users`) that a cluster node
/// still has to propose to the controller.
const PENDING_KEY: &str = "pending";

impl Storage {
    /// The stored security record, if any.
    pub fn security_record(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .tree(SECURITY_TREE)?
            .get(STATE_KEY)?
            .map(|v| v.to_vec()))
    }

    /// The record of changes made offline and not yet proposed, if any.
    pub fn pending_security_record(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .tree(SECURITY_TREE)?
            .get(PENDING_KEY)?
            .map(|v| v.to_vec()))
    }

    /// Store (or, with None, remove) the record of changes made offline.
    pub fn put_pending_security_record(&self, record: Option<Vec<u8>>) -> Result<(), StorageError> {
        let tree = self.tree(SECURITY_TREE)?;
        match record {
            Some(r) => tree.insert(PENDING_KEY, r)?,
            None => tree.remove(PENDING_KEY)?,
        };
        self.flush_sync()
    }

    /// Store (or replace) the security record and flush it to disk.
    pub fn put_security_record(&self, record: Vec<u8>) -> Result<(), StorageError> {
        self.tree(SECURITY_TREE)?.insert(STATE_KEY, record)?;
        self.flush_sync()
    }
}
