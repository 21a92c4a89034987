//! The share groups' tree (`share_state`): each share-partition's stored
//! state under its key, read back when the node starts.
//!
//! Owns the tree's name and nothing of its layout: the share coordinator
//! (`group::share`) encodes keys and values. Must never: interpret a value.
//! Locks: none of its own (sled's).

use super::{Storage, StorageError};

/// The tree's name in the node's database.
const SHARE_STATE_TREE: &str = "share_state";

/// One stored (key, value).
pub type Entry = (Vec<u8>, Vec<u8>);

/// The tree of share-partition states.
#[derive(Clone)]
pub struct ShareStateTree(sled::Tree);

impl ShareStateTree {
    /// Every stored (key, value).
    pub fn entries(&self) -> Result<Vec<Entry>, StorageError> {
        self.0
            .iter()
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StorageError::from)
            })
            .collect()
    }

    /// Replace the value of `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.0.insert(key, value)?;
        Ok(())
    }

    /// Remove `key`.
    pub fn remove(&self, key: &[u8]) -> Result<(), StorageError> {
        self.0.remove(key)?;
        Ok(())
    }
}

impl Storage {
    /// Open (or create) the share groups' tree.
    pub fn share_state_tree(&self) -> Result<ShareStateTree, StorageError> {
        Ok(ShareStateTree(self.db.open_tree(SHARE_STATE_TREE)?))
    }
}
