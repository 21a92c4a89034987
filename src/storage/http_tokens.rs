//! The HTTP listener's API tokens in the node's database: tree
//! `http_tokens`, SHA-256 digest of the token -> the token's record (JSON
//! written by `web::auth::tokens`). The token itself is never stored.
//!
//! Owns the key layout of that tree. Must never: interpret a record (the web
//! layer owns its format). Locks: none of its own (sled's).

use super::{Storage, StorageError};

/// Tree holding the HTTP API tokens: token digest -> record.
const HTTP_TOKENS_TREE: &str = "http_tokens";

/// One stored token: its digest and its record.
pub type HttpTokenEntry = (Vec<u8>, Vec<u8>);

impl Storage {
    /// The record of the token whose digest is `digest`, if one is stored.
    pub fn http_token(&self, digest: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .tree(HTTP_TOKENS_TREE)?
            .get(digest)?
            .map(|v| v.to_vec()))
    }

    /// Every stored token, as (digest, record).
    pub fn http_tokens(&self) -> Result<Vec<HttpTokenEntry>, StorageError> {
        self.tree(HTTP_TOKENS_TREE)?
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// Store the record of the token whose digest is `digest`.
    pub fn put_http_token(&self, digest: &[u8], record: Vec<u8>) -> Result<(), StorageError> {
        self.tree(HTTP_TOKENS_TREE)?.insert(digest, record)?;
        Ok(())
    }

    /// Remove the token whose digest is `digest`.
    pub fn remove_http_token(&self, digest: &[u8]) -> Result<(), StorageError> {
        self.tree(HTTP_TOKENS_TREE)?.remove(digest)?;
        Ok(())
    }
}
