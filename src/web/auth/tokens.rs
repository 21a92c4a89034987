//! HTTP API tokens: generation (32 bytes from the OS CSPRNG, base64url,
//! with a `sluice_` prefix that secret scanners can match), their digest,
//! and the records kept under that digest in the node's database.
//!
//! Only the SHA-256 digest of a token is stored. A token carries 256 bits
//! of randomness, so its digest cannot be reversed or guessed: no salt or
//! slow KDF is needed (those protect low-entropy passwords), and a fast,
//! unsalted digest lets every request find its token with one lookup.
//!
//! Must never: store, log or list a token itself (only `add` returns it,
//! once). Locks: none (sled's).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::storage::{Storage, StorageError};

/// What every token starts with.
pub(crate) const TOKEN_PREFIX: &str = "sluice_";
/// Longest token name.
const MAX_NAME_LEN: usize = 64;

/// What a caller may do, each role including the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads (GET) and the WebSocket.
    Viewer,
    /// The shop's writes: orders, payments, deliveries, cancellations.
    Operator,
    /// Replay, the simulator, cluster and topic administration.
    Admin,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (viewer, operator or admin)"
            )),
        }
    }
}

/// What is stored for one token (under its digest).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    /// When it was added (ms since the epoch).
    pub created_ms: i64,
}

/// Errors of the token store.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("corrupt token record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("a token named {0:?} exists already")]
    NameTaken(String),
    #[error("a token name is 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -, not {0:?}")]
    BadName(String),
}

/// `n` bytes from the OS CSPRNG, base64url without padding.
pub(crate) fn random_secret(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 digest a token is stored under.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The tokens of one node's database.
#[derive(Clone)]
pub struct TokenStore {
    storage: Storage,
}

impl TokenStore {
    pub fn new(storage: Storage) -> Self {
        TokenStore { storage }
    }

    /// Add a token named `name` with `role`; returns the token, which is
    /// stored nowhere and cannot be shown again.
    pub fn add(&self, name: &str, role: Role, now_ms: i64) -> Result<String, TokenError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(TokenError::BadName(name.to_owned()));
        }
        if self.list()?.iter().any(|r| r.name == name) {
            return Err(TokenError::NameTaken(name.to_owned()));
        }
        let token = format!("{TOKEN_PREFIX}{}", random_secret(32));
        let record = TokenRecord {
            name: name.to_owned(),
            role,
            created_ms: now_ms,
        };
        self.storage
            .put_http_token(&digest(&token), serde_json::to_vec(&record)?)?;
        self.storage.flush_sync()?;
        Ok(token)
    }

    /// Remove the token named `name`; false when there is none.
    pub fn remove(&self, name: &str) -> Result<bool, TokenError> {
        let mut removed = false;
        for (key, value) in self.storage.http_tokens()? {
            let record: TokenRecord = serde_json::from_slice(&value)?;
            if record.name == name {
                self.storage.remove_http_token(&key)?;
                removed = true;
            }
        }
        self.storage.flush_sync()?;
        Ok(removed)
    }

    /// Every token's record, by name.
    pub fn list(&self) -> Result<Vec<TokenRecord>, TokenError> {
        let mut records = self
            .storage
            .http_tokens()?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice::<TokenRecord>(&v))
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// The record of the token with digest `digest`, read from the database
    /// on every call (no cache that could outlive a removal).
    pub(crate) fn find(&self, digest: &[u8; 32]) -> Result<Option<TokenRecord>, TokenError> {
        match self.storage.http_token(digest)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_token_is_found_by_its_digest_and_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), 0, 1 << 20).unwrap();
        let store = TokenStore::new(storage.clone());
        let token = store.add("ci", Role::Operator, 7).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 43);
        let found = store.find(&digest(&token)).unwrap().unwrap();
        assert_eq!((found.name.as_str(), found.role), ("ci", Role::Operator));
        for (key, value) in storage.http_tokens().unwrap() {
            assert!(!String::from_utf8_lossy(&key).contains(&token));
            assert!(!String::from_utf8_lossy(&value).contains(&token));
        }
        assert!(matches!(
            store.add("ci", Role::Admin, 8),
            Err(TokenError::NameTaken(_))
        ));
        assert!(matches!(
            store.add("a b", Role::Admin, 8),
            Err(TokenError::BadName(_))
        ));
        assert!(store.remove("ci").unwrap());
        assert!(store.find(&digest(&token)).unwrap().is_none());
        assert!(!store.remove("ci").unwrap());
    }

    #[test]
    fn roles_are_ordered_viewer_operator_admin() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
    }
}
