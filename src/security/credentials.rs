//! SCRAM credentials by user and mechanism: salted, never a password.
//!
//! Must never: hold a password or a salted password. Locks: none (the
//! state is copied on write by `Security`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::scram::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};

/// Every stored credential: user -> mechanism -> credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub users: BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>,
}

/// A change to the stored credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum CredentialChange {
    /// Create or replace `user`'s credential for `mechanism`.
    Upsert {
        user: String,
        mechanism: Mechanism,
        credential: ScramCredential,
    },
    /// Remove `user`'s credential for `mechanism`, or every one of its
    /// credentials when `mechanism` is None.
    Delete {
        user: String,
        mechanism: Option<Mechanism>,
    },
}

impl Credentials {
    pub(super) fn apply(&mut self, change: &CredentialChange) -> Result<(), String> {
        match change {
            CredentialChange::Upsert {
                user,
                mechanism,
                credential,
            } => {
                check_upsert(user, credential)?;
                self.users
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            CredentialChange::Delete { user, mechanism } => {
                let Some(by_mechanism) = self.users.get_mut(user) else {
                    return Err(format!("user {user} has no credentials"));
                };
                match mechanism {
                    Some(m) => {
                        if by_mechanism.remove(m).is_none() {
                            return Err(format!("user {user} has no {} credential", m.name()));
                        }
                    }
                    None => by_mechanism.clear(),
                }
                if by_mechanism.is_empty() {
                    self.users.remove(user);
                }
            }
        }
        Ok(())
    }

    /// `user`'s credential for `mechanism`.
    pub fn get(&self, user: &str, mechanism: Mechanism) -> Option<&ScramCredential> {
        self.users.get(user)?.get(&mechanism)
    }
}

/// Why a credential cannot be stored (Kafka's UNACCEPTABLE_CREDENTIAL cases).
pub fn check_upsert(user: &str, credential: &ScramCredential) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&credential.iterations) {
        return Err(format!(
            "iterations must be within {MIN_ITERATIONS}..={MAX_ITERATIONS}, not {}",
            credential.iterations
        ));
    }
    if credential.salt.is_empty() {
        return Err("the salt is empty".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_and_delete_by_mechanism() {
        let mut c = Credentials::default();
        let cred = ScramCredential::new(Mechanism::ScramSha256, b"pw", MIN_ITERATIONS);
        let upsert = |m| CredentialChange::Upsert {
            user: "alice".into(),
            mechanism: m,
            credential: cred.clone(),
        };
        c.apply(&upsert(Mechanism::ScramSha256)).unwrap();
        c.apply(&upsert(Mechanism::ScramSha512)).unwrap();
        assert!(c.get("alice", Mechanism::ScramSha512).is_some());
        c.apply(&CredentialChange::Delete {
            user: "alice".into(),
            mechanism: Some(Mechanism::ScramSha512),
        })
        .unwrap();
        assert!(c.get("alice", Mechanism::ScramSha512).is_none());
        assert!(c
            .apply(&CredentialChange::Delete {
                user: "alice".into(),
                mechanism: Some(Mechanism::ScramSha512),
            })
            .is_err());
        c.apply(&CredentialChange::Delete {
            user: "alice".into(),
            mechanism: None,
        })
        .unwrap();
        assert!(c.users.is_empty());
        let mut weak = cred.clone();
        weak.iterations = 10;
        assert!(c
            .apply(&CredentialChange::Upsert {
                user: "bob".into(),
                mechanism: Mechanism::ScramSha256,
                credential: weak,
            })
            .is_err());
    }
}
