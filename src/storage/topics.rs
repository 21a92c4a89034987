//! The broker's own records in the node's database: the cluster id (tree
//! `meta`) and one record per topic (tree `topics`, name -> JSON).
//!
//! Owns the key layout of those two trees. Must never: interpret a topic
//! record (the broker owns its format). Locks: none of its own (sled's).

use super::{Storage, StorageError, TOPICS_TREE};

/// Tree of node-wide values.
const META_TREE: &str = "meta";
/// Key of the cluster id in `META_TREE`.
const CLUSTER_ID_KEY: &str = "cluster_id";

impl Storage {
    /// The stored cluster id, or `new()` stored as the cluster id.
    pub fn cluster_id_or_init(&self, new: impl FnOnce() -> String) -> Result<String, StorageError> {
        let meta = self.tree(META_TREE)?;
        match meta.get(CLUSTER_ID_KEY)? {
            Some(v) => Ok(String::from_utf8_lossy(&v).into_owned()),
            None => {
                let id = new();
                meta.insert(CLUSTER_ID_KEY, id.as_bytes())?;
                Ok(id)
            }
        }
    }

    /// Every stored topic record, as (topic name, record bytes), by name.
    pub fn topic_records(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.tree(TOPICS_TREE)?
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    /// Store (or replace) the record of topic `name`.
    pub fn put_topic_record(&self, name: &str, record: Vec<u8>) -> Result<(), StorageError> {
        self.tree(TOPICS_TREE)?.insert(name.as_bytes(), record)?;
        Ok(())
    }

    /// Remove the record of topic `name`.
    pub fn remove_topic_record(&self, name: &str) -> Result<(), StorageError> {
        self.tree(TOPICS_TREE)?.remove(name.as_bytes())?;
        Ok(())
    }
}
