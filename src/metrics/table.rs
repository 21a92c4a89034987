//! A labelled set of counters: one entry per label value, found under a
//! read lock and added under the write lock the first time a value is seen.
//!
//! Must never: hold its lock across a call out of `with`'s closure or
//! `snapshot`'s. Locks: its own RwLock only.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

/// Entries `V` (atomics) by label `K`.
#[derive(Debug)]
pub struct Table<K, V> {
    entries: RwLock<HashMap<K, V>>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            entries: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V: Default> Table<K, V> {
    /// Run `f` on the entry of `key`, adding it first if it is new.
    pub fn with<Q>(&self, key: &Q, f: impl FnOnce(&V))
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = entries.get(key) {
                f(v);
                return;
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        f(entries.entry(key.to_owned()).or_default());
    }

    /// Every entry, mapped by `f`.
    pub fn snapshot<T>(&self, f: impl Fn(&K, &V) -> T) -> Vec<T> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.iter().map(|(k, v)| f(k, v)).collect()
    }
}
