//! SASL on a connection: SaslHandshake (v0-1) and SaslAuthenticate (v0-2)
//! with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and the gate that keeps an
//! unauthenticated client of a SASL listener to ApiVersions and the SASL
//! APIs. KIP-368: a session lasts `--connections-max-reauth-ms`; the client
//! re-authenticates with a new handshake on the same connection, as the same
//! user, or the connection closes at its first request after the end.
//!
//! A v0 handshake (Kafka before 1.0) is followed by the SASL tokens as bare
//! size-prefixed frames; `raw_token` answers those.
//!
//! Must never: answer an API other than ApiVersions and the SASL ones on a
//! SASL listener before authentication, or tell a client why its
//! credentials failed beyond "invalid credentials". Locks: the connection's
//! `SaslState` mutex, held only while a token is checked (no await).

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};

use super::{code, str_bytes};
use crate::security::scram::{self, Mechanism, ScramServer};
use crate::security::SecurityState;

/// The mechanisms a SASL listener offers, in the handshake's list.
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// A mechanism chosen by a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            other => Mechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }

    fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }
}

/// Where a connection is in its SASL life.
#[derive(Debug)]
pub struct SaslState {
    /// The listener is SASL_PLAINTEXT or SASL_SSL.
    required: bool,
    /// When the connection must have authenticated by (a stalled exchange
    /// holds a connection slot; it is closed then).
    deadline: Instant,
    /// How long an authenticated session lasts (KIP-368), if limited.
    max_session: Option<Duration>,
    /// Chosen by the last handshake, until its exchange ends.
    mechanism: Option<SaslMechanism>,
    /// A v0 handshake: the tokens come as bare frames.
    raw_tokens: bool,
    /// A SCRAM exchange between its first and final messages.
    scram: Option<ScramServer>,
    /// The user the connection authenticated as, and when its session ends.
    authenticated: Option<(String, Option<Instant>)>,
    /// The connection closes after the reply just made (a failed exchange).
    close_after_reply: bool,
    /// A user that just authenticated, for the connection to take as principal.
    newly_authenticated: Option<String>,
}

/// What one SASL token led to.
enum Step {
    /// Send this challenge and wait for the next token.
    Continue(Vec<u8>),
    /// Authenticated; send the final bytes.
    Done(Vec<u8>),
    /// Refused, with the message for the client.
    Failed(String),
}

impl SaslState {
    pub fn new(required: bool, timeout: Duration, max_session: Option<Duration>) -> Self {
        SaslState {
            required,
            deadline: Instant::now() + timeout,
            max_session,
            mechanism: None,
            raw_tokens: false,
            scram: None,
            authenticated: None,
            close_after_reply: false,
            newly_authenticated: None,
        }
    }

    /// Whether a request of `api` may be served now. On a SASL listener:
    /// ApiVersions and the SASL APIs always, others only within an
    /// authenticated session that has not ended.
    pub fn admits(&self, api: ApiKey) -> bool {
        if !self.required
            || matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            )
        {
            return true;
        }
        match &self.authenticated {
            Some((_, None)) => true,
            Some((_, Some(end))) => Instant::now() < *end,
            None => false,
        }
    }

    /// When an unauthenticated connection of a SASL listener is closed.
    pub fn authentication_deadline(&self) -> Option<Instant> {
        (self.required && self.authenticated.is_none()).then_some(self.deadline)
    }

    /// Whether the next frame is a bare SASL token (after a v0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        self.raw_tokens && self.mechanism.is_some()
    }

    /// Whether the connection closes after the reply just made.
    pub fn closing(&self) -> bool {
        self.close_after_reply
    }

    /// The user that just authenticated, once.
    pub fn take_authenticated(&mut self) -> Option<String> {
        self.newly_authenticated.take()
    }

    /// Answer a SaslHandshake.
    pub fn handshake(&mut self, req: SaslHandshakeRequest, version: i16) -> SaslHandshakeResponse {
        let mut resp = SaslHandshakeResponse::default();
        resp.mechanisms = MECHANISMS.iter().map(|m| str_bytes(*m)).collect();
        if !self.required || self.mechanism.is_some() || self.scram.is_some() {
            resp.error_code = code::ILLEGAL_SASL_STATE;
            self.close_after_reply = true;
            return resp;
        }
        match SaslMechanism::parse(req.mechanism.as_str()) {
            Some(m) => {
                self.mechanism = Some(m);
                self.raw_tokens = version == 0;
                resp.error_code = code::NONE;
            }
            None => {
                resp.error_code = code::UNSUPPORTED_SASL_MECHANISM;
                self.close_after_reply = true;
            }
        }
        resp
    }

    /// Answer a SaslAuthenticate (after a v1 handshake).
    pub fn authenticate(
        &mut self,
        security: &SecurityState,
        req: SaslAuthenticateRequest,
        version: i16,
    ) -> SaslAuthenticateResponse {
        let mut resp = SaslAuthenticateResponse::default();
        let Some(mechanism) = self.mechanism.filter(|_| !self.raw_tokens) else {
            resp.error_code = code::ILLEGAL_SASL_STATE;
            resp.error_message = Some(str_bytes(
                "SaslAuthenticate before a SaslHandshake (v1) chose a mechanism",
            ));
            self.close_after_reply = true;
            return resp;
        };
        match self.step(mechanism, security, &req.auth_bytes) {
            Step::Continue(challenge) => resp.auth_bytes = Bytes::from(challenge),
            Step::Done(last) => {
                resp.auth_bytes = Bytes::from(last);
                if version >= 1 {
                    resp.session_lifetime_ms = self.max_session.map_or(0, |d| d.as_millis() as i64);
                }
            }
            Step::Failed(message) => {
                resp.error_code = code::SASL_AUTHENTICATION_FAILED;
                resp.error_message = Some(str_bytes(message));
                self.close_after_reply = true;
            }
        }
        resp
    }

    /// Answer a bare token (after a v0 handshake): the bytes to send back,
    /// or None to close the connection, as Kafka does on a failure there.
    pub fn raw_token(&mut self, security: &SecurityState, token: &[u8]) -> Option<Vec<u8>> {
        let mechanism = self.mechanism?;
        match self.step(mechanism, security, token) {
            Step::Continue(bytes) | Step::Done(bytes) => Some(bytes),
            Step::Failed(_) => None,
        }
    }

    fn step(&mut self, mechanism: SaslMechanism, security: &SecurityState, token: &[u8]) -> Step {
        let failed = || {
            Step::Failed(format!(
                "Authentication failed: invalid credentials with SASL mechanism {}",
                mechanism.name()
            ))
        };
        let user = match mechanism {
            SaslMechanism::Plain => {
                self.mechanism = None;
                let Some((user, password)) = scram::parse_plain(token) else {
                    return failed();
                };
                // PBKDF2 of the password with the stored salt, compared with
                // the stored key: no plain password is kept anywhere.
                let valid = Mechanism::ALL.into_iter().rev().any(|m| {
                    security
                        .credentials
                        .get(&user, m)
                        .is_some_and(|c| c.matches_password(m, &password))
                });
                if !valid {
                    return failed();
                }
                (user, Vec::new())
            }
            SaslMechanism::Scram(m) => match self.scram.take() {
                None => {
                    let started = scram::client_first_user(token).and_then(|user| {
                        let credential = security.credentials.get(&user, m).cloned();
                        ScramServer::start(m, token, credential)
                    });
                    return match started {
                        Ok((server, first)) => {
                            self.scram = Some(server);
                            Step::Continue(first)
                        }
                        Err(e) => {
                            self.mechanism = None;
                            Step::Failed(format!("Authentication failed: {e}"))
                        }
                    };
                }
                Some(server) => {
                    self.mechanism = None;
                    let user = server.user().to_string();
                    match server.finish(token) {
                        Ok(last) => (user, last),
                        Err(_) => return failed(),
                    }
                }
            },
        };
        let (user, last) = user;
        // KIP-368: a re-authentication must be the same user.
        if let Some((previous, _)) = &self.authenticated {
            if *previous != user {
                return Step::Failed(format!(
                    "Cannot change the principal from User:{previous} to User:{user} when re-authenticating"
                ));
            }
        }
        let end = self.max_session.map(|d| Instant::now() + d);
        self.authenticated = Some((user.clone(), end));
        self.newly_authenticated = Some(user);
        Step::Done(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::credentials::CredentialChange;
    use crate::security::scram::ScramCredential;
    use crate::security::SecurityChange;

    fn state_with(user: &str, password: &[u8]) -> SecurityState {
        let mut s = SecurityState::default();
        s.apply(&SecurityChange::Credential(CredentialChange::Upsert {
            user: user.into(),
            mechanism: Mechanism::ScramSha512,
            credential: ScramCredential::new(Mechanism::ScramSha512, password, 4096),
        }))
        .unwrap();
        s
    }

    fn handshake(sasl: &mut SaslState, mechanism: &str) -> i16 {
        let mut req = SaslHandshakeRequest::default();
        req.mechanism = str_bytes(mechanism);
        sasl.handshake(req, 1).error_code
    }

    fn plain(sasl: &mut SaslState, security: &SecurityState, token: &[u8]) -> i16 {
        let mut req = SaslAuthenticateRequest::default();
        req.auth_bytes = Bytes::copy_from_slice(token);
        sasl.authenticate(security, req, 2).error_code
    }

    #[test]
    fn only_the_sasl_apis_are_admitted_before_authentication() {
        let security = state_with("alice", b"pw");
        let mut sasl = SaslState::new(true, Duration::from_secs(10), None);
        assert!(sasl.admits(ApiKey::ApiVersions));
        assert!(!sasl.admits(ApiKey::Metadata));
        assert!(!sasl.admits(ApiKey::Produce));
        assert!(sasl.authentication_deadline().is_some());
        assert_eq!(handshake(&mut sasl, "PLAIN"), code::NONE);
        assert_eq!(plain(&mut sasl, &security, b"\0alice\0pw"), code::NONE);
        assert_eq!(sasl.take_authenticated().as_deref(), Some("alice"));
        assert!(sasl.admits(ApiKey::Produce));
        assert!(sasl.authentication_deadline().is_none());
        assert!(!sasl.closing());
    }

    #[test]
    fn a_wrong_password_fails_and_closes() {
        let security = state_with("alice", b"pw");
        let mut sasl = SaslState::new(true, Duration::from_secs(10), None);
        assert_eq!(handshake(&mut sasl, "PLAIN"), code::NONE);
        assert_eq!(
            plain(&mut sasl, &security, b"\0alice\0nope"),
            code::SASL_AUTHENTICATION_FAILED
        );
        assert!(sasl.closing());
        assert!(!sasl.admits(ApiKey::Metadata));
    }

    #[test]
    fn authenticate_before_handshake_is_an_illegal_state() {
        let security = SecurityState::default();
        let mut sasl = SaslState::new(true, Duration::from_secs(10), None);
        assert_eq!(
            plain(&mut sasl, &security, b"\0a\0b"),
            code::ILLEGAL_SASL_STATE
        );
        assert!(sasl.closing());
        let mut sasl = SaslState::new(true, Duration::from_secs(10), None);
        assert_eq!(
            handshake(&mut sasl, "GSSAPI"),
            code::UNSUPPORTED_SASL_MECHANISM
        );
        let mut plaintext = SaslState::new(false, Duration::from_secs(10), None);
        assert!(plaintext.admits(ApiKey::Produce));
        assert_eq!(handshake(&mut plaintext, "PLAIN"), code::ILLEGAL_SASL_STATE);
    }

    #[test]
    fn a_session_ends_and_reauthentication_keeps_the_user() {
        let mut security = state_with("alice", b"pw");
        security
            .apply(&SecurityChange::Credential(CredentialChange::Upsert {
                user: "bob".into(),
                mechanism: Mechanism::ScramSha256,
                credential: ScramCredential::new(Mechanism::ScramSha256, b"pw", 4096),
            }))
            .unwrap();
        let mut sasl = SaslState::new(true, Duration::from_secs(10), Some(Duration::ZERO));
        assert_eq!(handshake(&mut sasl, "PLAIN"), code::NONE);
        assert_eq!(plain(&mut sasl, &security, b"\0alice\0pw"), code::NONE);
        // A zero-length session has ended by the next request.
        assert!(!sasl.admits(ApiKey::Produce));
        assert!(sasl.admits(ApiKey::SaslHandshake));
        assert_eq!(handshake(&mut sasl, "PLAIN"), code::NONE);
        assert_eq!(
            plain(&mut sasl, &security, b"\0bob\0pw"),
            code::SASL_AUTHENTICATION_FAILED
        );
    }
}
