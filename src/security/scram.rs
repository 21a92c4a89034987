//! SCRAM (RFC 5802, with SHA-256 and SHA-512 as RFC 7677 and Kafka's
//! KIP-84 use them): the salted keys a credential keeps, and the server side
//! of one exchange (client-first, server-first, client-final, server-final).
//! PLAIN is checked against the same keys, so no password is ever stored.
//!
//! Must never: do I/O, keep a password, or compare secrets in variable time.
//! Locks: none.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Fewest PBKDF2 iterations a credential may have (Kafka's minimum).
pub const MIN_ITERATIONS: i32 = 4096;
/// Most PBKDF2 iterations a credential may have (Kafka's maximum).
pub const MAX_ITERATIONS: i32 = 16384;
/// Bytes of a salt made here.
const SALT_BYTES: usize = 24;
/// Iterations of credentials made by `sluice users add`.
pub const DEFAULT_ITERATIONS: i32 = 8192;

/// A SCRAM mechanism, with Kafka's wire numbers (`ScramMechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// The SASL name (`SCRAM-SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's number for it (DescribeUserScramCredentials, AlterUserScramCredentials).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    fn hmac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
            Mechanism::ScramSha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
                mac.update(message);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
            Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, iterations)`: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let rounds = iterations.max(1) as u32;
        match self {
            Mechanism::ScramSha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out);
                out
            }
            Mechanism::ScramSha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out);
                out
            }
        }
    }
}

/// What the server keeps of one user's password for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: i32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// The credential of a salted password (what AlterUserScramCredentials sends).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salt: Vec<u8>,
        iterations: i32,
        salted: &[u8],
    ) -> Self {
        let client_key = mechanism.hmac(salted, b"Client Key");
        ScramCredential {
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// A credential for `password` with a fresh random salt.
    pub fn new(mechanism: Mechanism, password: &[u8], iterations: i32) -> Self {
        let mut salt = vec![0u8; SALT_BYTES];
        rand::thread_rng().fill_bytes(&mut salt);
        let salted = mechanism.salted_password(password, &salt, iterations);
        Self::from_salted_password(mechanism, salt, iterations, &salted)
    }

    /// Whether `password` is this credential's (SASL/PLAIN), in constant time.
    pub fn matches_password(&self, mechanism: Mechanism, password: &[u8]) -> bool {
        let salted = mechanism.salted_password(password, &self.salt, self.iterations);
        let candidate = Self::from_salted_password(mechanism, Vec::new(), 0, &salted);
        bool::from(candidate.stored_key.ct_eq(&self.stored_key))
    }
}

/// Why an exchange failed. The client is told only that it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("the nonce does not match")]
    Nonce,
    #[error("invalid credentials")]
    Credentials,
}

/// The server side of one SCRAM exchange, between client-first and client-final.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: Mechanism,
    user: String,
    /// None when the user has no credential for this mechanism: the exchange
    /// goes on with a made-up salt and fails at the proof, so the answer does
    /// not tell which users exist.
    credential: Option<ScramCredential>,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// The user name a client-first message names, to look its credential up.
pub fn client_first_user(client_first: &[u8]) -> Result<String, ScramError> {
    parse_client_first(client_first).map(|p| p.user)
}

struct ClientFirst {
    gs2_header: String,
    bare: String,
    user: String,
    nonce: String,
}

fn parse_client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut parts = text.splitn(3, ',');
    let cb = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
    let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
    let bare = parts
        .next()
        .ok_or(ScramError::Malformed("no client-first-bare"))?;
    match cb {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad channel binding flag")),
    }
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err(ScramError::Malformed("bad authzid"));
    }
    let mut user = None;
    let mut nonce = None;
    for attr in bare.split(',') {
        if let Some(v) = attr.strip_prefix("n=") {
            user = Some(decode_saslname(v)?);
        } else if let Some(v) = attr.strip_prefix("r=") {
            nonce = Some(v.to_string());
        } else if attr.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension"));
        }
    }
    let user = user.ok_or(ScramError::Malformed("no user name"))?;
    let nonce = nonce.ok_or(ScramError::Malformed("no nonce"))?;
    if nonce.is_empty() || user.is_empty() {
        return Err(ScramError::Malformed("empty user or nonce"));
    }
    Ok(ClientFirst {
        gs2_header: format!("{cb},{authzid},"),
        bare: bare.to_string(),
        user,
        nonce,
    })
}

/// `=2C` is a comma and `=3D` an equals sign in a SCRAM user name.
fn decode_saslname(v: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3);
        match code {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ScramServer {
    /// Take the client-first message; `credential` is the named user's for
    /// this mechanism, if any. Returns the exchange and the server-first message.
    pub fn start(
        mechanism: Mechanism,
        client_first: &[u8],
        credential: Option<ScramCredential>,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        let mut server_nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut server_nonce);
        Self::start_with_nonce(
            mechanism,
            client_first,
            credential,
            &B64.encode(server_nonce),
        )
    }

    /// `start` with a given server nonce (the tests and the fuzz target,
    /// which must reproduce an exchange).
    pub(crate) fn start_with_nonce(
        mechanism: Mechanism,
        client_first: &[u8],
        credential: Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        let first = parse_client_first(client_first)?;
        let nonce = format!("{}{server_nonce}", first.nonce);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => {
                let mut salt = vec![0u8; SALT_BYTES];
                rand::thread_rng().fill_bytes(&mut salt);
                (salt, MIN_ITERATIONS)
            }
        };
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        let reply = server_first.clone().into_bytes();
        Ok((
            ScramServer {
                mechanism,
                user: first.user,
                credential,
                gs2_header: first.gs2_header,
                client_first_bare: first.bare,
                server_first,
                nonce,
            },
            reply,
        ))
    }

    /// The user this exchange authenticates.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Take the client-final message: check the proof and return the
    /// server-final message (`v=ServerSignature`).
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                binding = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let binding = binding.ok_or(ScramError::Malformed("no channel binding"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::ChannelBinding);
        }
        // Kafka accepts a final nonce that ends with the server-first one:
        // librdkafka before 2.1 sends its client nonce twice.
        if !nonce.is_some_and(|n| n.ends_with(self.nonce.as_str())) {
            return Err(ScramError::Nonce);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let credential = self.credential.ok_or(ScramError::Credentials)?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_signature = self
            .mechanism
            .hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::Credentials);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored_key = self.mechanism.hash(&client_key);
        if !bool::from(stored_key.ct_eq(&credential.stored_key)) {
            return Err(ScramError::Credentials);
        }
        let server_signature = self
            .mechanism
            .hmac(&credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// A SASL/PLAIN message: `authzid NUL authcid NUL password`. Returns the
/// user and password; an authorization id other than the user is refused.
pub fn parse_plain(message: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut parts = message.splitn(3, |b| *b == 0);
    let authzid = parts.next()?;
    let user = std::str::from_utf8(parts.next()?).ok()?;
    let password = parts.next()?;
    // RFC 4616: no NUL in the password. HMAC pads a short key with zero
    // bytes, so "p" and "p\0" would otherwise both log in as "p".
    if user.is_empty()
        || (!authzid.is_empty() && authzid != user.as_bytes())
        || password.contains(&0)
    {
        return None;
    }
    Some((user.to_string(), password.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_password_with_a_nul_byte_is_malformed() {
        assert_eq!(parse_plain(b"\0u\0p"), Some(("u".into(), b"p".to_vec())));
        assert_eq!(parse_plain(b"\0u\0p\0\0\0\0"), None);
        assert_eq!(parse_plain(b"\0u\0p\0"), None);
    }

    /// A client side of the exchange, as the tests drive it.
    fn client_final(
        mechanism: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        client_final_with(mechanism, password, client_first_bare, server_first, "")
    }

    /// As `client_final`, with `prefix` before the nonce of the final message.
    fn client_final_with(
        mechanism: Mechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        prefix: &str,
    ) -> (String, Vec<u8>) {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iterations: i32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={prefix}{nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let server_signature = mechanism.hmac(&server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            format!("v={}", B64.encode(server_signature)).into_bytes(),
        )
    }

    /// RFC 7677 section 3: user "user", password "pencil", salt
    /// W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations, the nonces given there.
    #[test]
    fn rfc7677_test_vector() {
        let m = Mechanism::ScramSha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let credential = ScramCredential::from_salted_password(m, salt, 4096, &salted);
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (server, server_first) = ScramServer::start_with_nonce(
            m,
            client_first,
            Some(credential),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        assert_eq!(server.user(), "user");
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let server_final = server.finish(client_final).unwrap();
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn sha512_exchange_accepts_the_password_and_refuses_another() {
        let m = Mechanism::ScramSha512;
        let credential = ScramCredential::new(m, b"s3cret", MIN_ITERATIONS);
        for (password, ok) in [("s3cret", true), ("wrong", false)] {
            let bare = "n=alice,r=abcdef";
            let (server, first) =
                ScramServer::start(m, format!("n,,{bare}").as_bytes(), Some(credential.clone()))
                    .unwrap();
            let first = String::from_utf8(first).unwrap();
            let (final_msg, expected) = client_final(m, password, bare, &first);
            match server.finish(final_msg.as_bytes()) {
                Ok(v) => {
                    assert!(ok);
                    assert_eq!(v, expected);
                }
                Err(e) => {
                    assert!(!ok);
                    assert_eq!(e, ScramError::Credentials);
                }
            }
        }
    }

    #[test]
    fn an_unknown_user_fails_only_at_the_proof() {
        let m = Mechanism::ScramSha256;
        let bare = "n=nobody,r=xyz";
        let (server, first) = ScramServer::start(m, format!("n,,{bare}").as_bytes(), None).unwrap();
        let first = String::from_utf8(first).unwrap();
        assert!(first.contains(",i=4096"));
        let (final_msg, _) = client_final(m, "x", bare, &first);
        assert_eq!(
            server.finish(final_msg.as_bytes()),
            Err(ScramError::Credentials)
        );
    }

    #[test]
    fn a_replayed_or_altered_nonce_is_refused() {
        let m = Mechanism::ScramSha256;
        let credential = ScramCredential::new(m, b"pw", MIN_ITERATIONS);
        let bare = "n=u,r=abc";
        let (server, first) =
            ScramServer::start(m, format!("n,,{bare}").as_bytes(), Some(credential)).unwrap();
        let first = String::from_utf8(first).unwrap().replace("r=abc", "r=abd");
        let (final_msg, _) = client_final(m, "pw", bare, &first);
        assert_eq!(server.finish(final_msg.as_bytes()), Err(ScramError::Nonce));
    }

    #[test]
    fn a_final_nonce_ending_with_the_servers_is_accepted_as_kafka_does() {
        let m = Mechanism::ScramSha512;
        let credential = ScramCredential::new(m, b"pw", MIN_ITERATIONS);
        let bare = "n=u,r=abc";
        let (server, first) =
            ScramServer::start(m, format!("n,,{bare}").as_bytes(), Some(credential)).unwrap();
        let first = String::from_utf8(first).unwrap();
        // librdkafka 2.0 sends its client nonce twice.
        let (final_msg, expected) = client_final_with(m, "pw", bare, &first, "abc");
        assert_eq!(server.finish(final_msg.as_bytes()).unwrap(), expected);
    }

    #[test]
    fn client_first_messages_are_parsed_strictly() {
        assert_eq!(client_first_user(b"n,,n=a=2Cb=3Dc,r=x").unwrap(), "a,b=c");
        assert_eq!(
            client_first_user(b"p=tls-unique,,n=a,r=x"),
            Err(ScramError::ChannelBinding)
        );
        assert!(client_first_user(b"n,,n=a").is_err());
        assert!(client_first_user(b"n,,r=x").is_err());
        assert!(client_first_user(b"n,,n=a=ZZ,r=x").is_err());
        assert!(client_first_user(b"garbage").is_err());
        assert!(client_first_user(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn plain_is_checked_against_the_scram_keys() {
        let m = Mechanism::ScramSha512;
        let credential = ScramCredential::new(m, b"pw", MIN_ITERATIONS);
        assert!(credential.matches_password(m, b"pw"));
        assert!(!credential.matches_password(m, b"pw2"));
        assert_eq!(
            parse_plain(b"\0alice\0pw"),
            Some(("alice".into(), b"pw".to_vec()))
        );
        assert_eq!(
            parse_plain(b"alice\0alice\0pw"),
            Some(("alice".into(), b"pw".to_vec()))
        );
        assert_eq!(parse_plain(b"bob\0alice\0pw"), None);
        assert_eq!(parse_plain(b"\0\0pw"), None);
        assert_eq!(parse_plain(b"nopassword"), None);
    }
}
