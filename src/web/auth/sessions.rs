//! Dashboard sessions: made by `POST /api/login` from a valid token, kept
//! in this process's memory (a restart logs everyone out), each with an
//! absolute expiry and its own CSRF token.
//!
//! A session remembers the digest of the token it came from, so removing
//! that token ends it too (the auth layer checks on every request).
//! Must never: hold a token itself. Locks: `sessions` only, never across
//! an await.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::tokens::{random_secret, Role, TokenRecord};

/// How long a session lasts after login.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Most sessions at once; a login beyond it replaces the one closest to expiry.
const MAX_SESSIONS: usize = 10_000;

/// One logged-in dashboard.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Digest of the token the session was made from.
    pub token_digest: [u8; 32],
    pub name: String,
    pub role: Role,
    /// Must accompany every write made with this session (`X-CSRF-Token`).
    pub csrf_token: String,
    expires: Instant,
}

/// The live sessions, by session id (the cookie's value).
#[derive(Default)]
pub(crate) struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `record`; returns its id and the session.
    pub(crate) fn create(&self, record: &TokenRecord, token_digest: [u8; 32]) -> (String, Session) {
        let id = random_secret(32);
        let session = Session {
            token_digest,
            name: record.name.clone(),
            role: record.role,
            csrf_token: random_secret(32),
            expires: Instant::now() + SESSION_TTL,
        };
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session `id`, if any (an expired one is dropped).
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// End session `id`.
    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the map leaves it consistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_have_distinct_ids_and_csrf_tokens_and_can_end() {
        let sessions = Sessions::default();
        let record = TokenRecord {
            name: "ops".into(),
            role: Role::Operator,
            created_ms: 0,
        };
        let (a, sa) = sessions.create(&record, [1; 32]);
        let (b, sb) = sessions.create(&record, [1; 32]);
        assert_ne!(a, b);
        assert_ne!(sa.csrf_token, sb.csrf_token);
        assert_eq!(sessions.get(&a).unwrap().role, Role::Operator);
        sessions.remove(&a);
        assert!(sessions.get(&a).is_none());
        assert!(sessions.get(&b).is_some());
    }
}
