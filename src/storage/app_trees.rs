//! The shop's trees in the node's database (`app:*`): opening, dropping and
//! listing them by name, reads, reverse prefix scans, and transactions over
//! one tree, without naming sled to the shop.
//!
//! Owns no key layout: the shop's read model (`app::read_model`) gives the
//! keys and values their meaning. Must never: interpret a value.
//! Locks: none of its own (sled's).

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::{Storage, StorageError};

/// One of the shop's trees.
#[derive(Clone)]
pub struct AppTree(sled::Tree);

/// A failure inside a transaction: a conflict (the transaction is retried)
/// or a storage error; carried out of the closure with `?`.
pub struct TxFailure(UnabortableTransactionError);

/// Why a transaction's closure stopped: the store failed, or the caller aborted with `E`.
pub enum TxStop<E> {
    Store(TxFailure),
    Abort(E),
}

impl<E> From<TxFailure> for TxStop<E> {
    fn from(f: TxFailure) -> Self {
        TxStop::Store(f)
    }
}

/// A transaction's view of one tree.
pub struct AppTx<'a>(&'a TransactionalTree);

impl AppTx<'_> {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, TxFailure> {
        self.0
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(TxFailure)
    }

    /// Set `key` to `value`.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), TxFailure> {
        self.0.insert(key, value).map(|_| ()).map_err(TxFailure)
    }

    /// Remove `key`.
    pub fn remove(&self, key: &[u8]) -> Result<(), TxFailure> {
        self.0.remove(key).map(|_| ()).map_err(TxFailure)
    }
}

/// Why a transaction failed.
pub enum TxError<E> {
    Store(StorageError),
    Abort(E),
}

impl AppTree {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0.get(key)?.map(|v| v.to_vec()))
    }

    /// Set `key` to `value` (outside a transaction).
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.0.insert(key, value)?;
        Ok(())
    }

    /// Every entry whose key starts with `prefix`, last key first.
    pub fn scan_prefix_rev(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StorageError>> {
        self.0.scan_prefix(prefix).rev().map(|item| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(StorageError::from)
        })
    }

    /// Run `f` as one atomic transaction over the tree (retried on conflict,
    /// so `f` must not have side effects outside the tree).
    pub fn transaction<T, E>(
        &self,
        f: impl Fn(&AppTx<'_>) -> Result<T, TxStop<E>>,
    ) -> Result<T, TxError<E>> {
        self.0
            .transaction(|tx| match f(&AppTx(tx)) {
                Ok(v) => Ok(v),
                Err(TxStop::Store(TxFailure(e))) => Err(e.into()),
                Err(TxStop::Abort(e)) => Err(ConflictableTransactionError::Abort(e)),
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => TxError::Abort(e),
                TransactionError::Storage(e) => TxError::Store(e.into()),
            })
    }
}

impl Storage {
    /// Open (or create) the shop's tree `name` (an `app:` name).
    pub fn app_tree(&self, name: &str) -> Result<AppTree, StorageError> {
        Ok(AppTree(self.db.open_tree(name)?))
    }

    /// The names of the trees that start with `prefix`.
    pub fn tree_names_with(&self, prefix: &str) -> Vec<String> {
        self.db
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }
}
