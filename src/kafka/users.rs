//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
//! which SCRAM mechanisms and iterations each user has, and upserting or
//! deleting them. A client sends the salted password, never the password;
//! the broker keeps only the stored and server keys derived from it. Each
//! change is committed through `Partitions::change_security`.
//!
//! Must never: return a salt or a key. Locks: none of its own.

use std::collections::HashSet;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::errors::credential_error_code;
use super::{code, str_bytes};
use crate::partition::Partitions;
use crate::security::credentials::{check_upsert, CredentialChange};
use crate::security::scram::{Mechanism, ScramCredential};
use crate::security::SecurityChange;

/// Answer a DescribeUserScramCredentials: every user when none is named.
pub fn describe(
    partitions: &Partitions,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let state = partitions.broker().security.current();
    let users = &state.credentials.users;
    let mut resp = DescribeUserScramCredentialsResponse::default();
    let info = |name: &str| -> Vec<CredentialInfo> {
        users
            .get(name)
            .map(|by_mechanism| {
                by_mechanism
                    .iter()
                    .map(|(m, c)| {
                        let mut i = CredentialInfo::default();
                        i.mechanism = m.kafka_type();
                        i.iterations = c.iterations;
                        i
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let named: Vec<String> = req
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.name.to_string())
        .collect();
    if named.is_empty() {
        resp.results = users
            .keys()
            .map(|name| {
                let mut r = DescribeUserScramCredentialsResult::default();
                r.user = str_bytes(name.clone());
                r.credential_infos = info(name);
                r
            })
            .collect();
        return resp;
    }
    let mut seen = HashSet::new();
    let duplicates: HashSet<&String> = named.iter().filter(|n| !seen.insert(*n)).collect();
    let mut reported = HashSet::new();
    for name in &named {
        if !reported.insert(name) {
            continue;
        }
        let mut r = DescribeUserScramCredentialsResult::default();
        r.user = str_bytes(name.clone());
        if duplicates.contains(name) {
            r.error_code = code::DUPLICATE_RESOURCE;
            r.error_message = Some(str_bytes(format!("user {name} is named twice")));
        } else if users.contains_key(name) {
            r.credential_infos = info(name);
        } else {
            r.error_code = code::RESOURCE_NOT_FOUND;
            r.error_message = Some(str_bytes(format!(
                "Attempt to describe nonexistent user credentials for {name}"
            )));
        }
        resp.results.push(r);
    }
    resp
}

/// A DescribeUserScramCredentials from a principal without DESCRIBE on the cluster.
pub fn describe_refused() -> DescribeUserScramCredentialsResponse {
    let mut resp = DescribeUserScramCredentialsResponse::default();
    resp.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
    resp.error_message = Some(str_bytes("DESCRIBE on the cluster is required"));
    resp
}

/// An AlterUserScramCredentials from a principal without ALTER on the
/// cluster: every named user is refused, nothing changes.
pub fn alter_refused(req: AlterUserScramCredentialsRequest) -> AlterUserScramCredentialsResponse {
    let mut names: Vec<String> = req
        .deletions
        .iter()
        .map(|d| d.name.to_string())
        .chain(req.upsertions.iter().map(|u| u.name.to_string()))
        .collect();
    names.sort();
    names.dedup();
    let mut resp = AlterUserScramCredentialsResponse::default();
    resp.results = names
        .into_iter()
        .map(|name| {
            let mut r = AlterUserScramCredentialsResult::default();
            r.user = str_bytes(name);
            r.error_code = code::CLUSTER_AUTHORIZATION_FAILED;
            r.error_message = Some(str_bytes("ALTER on the cluster is required"));
            r
        })
        .collect();
    resp
}

/// One user's outcome in an AlterUserScramCredentials.
type Outcome = Result<(), (i16, String)>;

/// Answer an AlterUserScramCredentials: check every change, then commit
/// the valid ones one by one. A user's result is its first failure.
pub async fn alter(
    partitions: &Partitions,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut order: Vec<String> = Vec::new();
    let mut outcomes: std::collections::HashMap<String, Outcome> = Default::default();
    let mut changes: Vec<(String, CredentialChange)> = Vec::new();
    let mut seen_pairs = HashSet::new();
    let state = partitions.broker().security.current();
    let mut note = |user: &str, outcome: Outcome| {
        if !outcomes.contains_key(user) {
            order.push(user.to_string());
            outcomes.insert(user.to_string(), outcome);
        } else if let (Some(Ok(())), Err(e)) = (outcomes.get(user), &outcome) {
            outcomes.insert(user.to_string(), Err(e.clone()));
        }
    };
    let deletions = req
        .deletions
        .into_iter()
        .map(|d| (d.name, d.mechanism, None));
    let upsertions = req.upsertions.into_iter().map(|u| {
        (
            u.name,
            u.mechanism,
            Some((u.salt, u.iterations, u.salted_password)),
        )
    });
    for (name, mechanism_type, upsert) in deletions.chain(upsertions) {
        let user = name.to_string();
        let Some(mechanism) = Mechanism::from_kafka_type(mechanism_type) else {
            note(
                &user,
                Err((
                    code::UNSUPPORTED_SASL_MECHANISM,
                    format!("unknown SCRAM mechanism {mechanism_type}"),
                )),
            );
            continue;
        };
        if !seen_pairs.insert((user.clone(), mechanism)) {
            note(
                &user,
                Err((
                    code::DUPLICATE_RESOURCE,
                    format!("{} of user {user} is named twice", mechanism.name()),
                )),
            );
            continue;
        }
        let change = match upsert {
            None => {
                if state.credentials.get(&user, mechanism).is_none() {
                    note(
                        &user,
                        Err((
                            code::RESOURCE_NOT_FOUND,
                            format!(
                                "Attempt to delete a user credential that does not exist: {user} {}",
                                mechanism.name()
                            ),
                        )),
                    );
                    continue;
                }
                CredentialChange::Delete {
                    user: user.clone(),
                    mechanism: Some(mechanism),
                }
            }
            Some((salt, iterations, salted)) => {
                let credential = ScramCredential::from_salted_password(
                    mechanism,
                    salt.to_vec(),
                    iterations,
                    &salted,
                );
                if salted.is_empty() {
                    note(
                        &user,
                        Err((
                            code::UNACCEPTABLE_CREDENTIAL,
                            "empty salted password".into(),
                        )),
                    );
                    continue;
                }
                if let Err(reason) = check_upsert(&user, &credential) {
                    note(&user, Err((code::UNACCEPTABLE_CREDENTIAL, reason)));
                    continue;
                }
                CredentialChange::Upsert {
                    user: user.clone(),
                    mechanism,
                    credential,
                }
            }
        };
        note(&user, Ok(()));
        changes.push((user, change));
    }
    for (user, change) in changes {
        if matches!(outcomes.get(&user), Some(Err(_))) {
            continue;
        }
        if let Err(e) = partitions
            .change_security(SecurityChange::Credential(change))
            .await
        {
            outcomes.insert(user, Err((credential_error_code(&e), e.to_string())));
        }
    }
    let mut resp = AlterUserScramCredentialsResponse::default();
    resp.results = order
        .into_iter()
        .map(|user| {
            let mut r = AlterUserScramCredentialsResult::default();
            if let Some(Err((error, message))) = outcomes.get(&user) {
                r.error_code = *error;
                r.error_message = Some(str_bytes(message.clone()));
            }
            r.user = str_bytes(user);
            r
        })
        .collect();
    resp
}
