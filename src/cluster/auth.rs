//! Who may use the cluster listener. `PeerAuth` holds what this node proves
//! its membership with and checks others' by: the shared secret
//! (`--cluster-secret-file`), mutual TLS (`--cluster-tls-*`, in `tls`), both,
//! or neither (then the listener may bind only to loopback addresses).
//!
//! With the secret, every request carries an HMAC-SHA256 over a version
//! label, its method, path, the node it is meant for, a timestamp, a random
//! nonce and its body (`sign_request`). The listener's `authenticate`
//! middleware, wrapped around the whole router, refuses with 401 (before any
//! handler runs) a request whose MAC does not verify (compared in constant
//! time), that names another node, whose timestamp is more than
//! `CLOCK_WINDOW` away from this node's clock, or whose nonce it has already
//! seen within that window (a replay). Every answer to an authenticated
//! request carries an HMAC over the request's nonce, its status and its body,
//! which the client (`rpc`) checks, so a node also knows it heard a member.
//!
//! Must never: log or print the secret, or let a request through to a
//! handler before its MAC and nonce are checked.
//!
//! Lock order: `RequestGuard::seen` is a leaf lock, held for a map update.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::tls::{ClusterTls, TlsSetupError};

/// The node a request is meant for (its node id).
pub const NODE_HEADER: &str = "x-sluice-node";
/// When the request was signed, in milliseconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "x-sluice-timestamp";
/// 16 random bytes in hex, never used twice by a signer.
pub const NONCE_HEADER: &str = "x-sluice-nonce";
/// The HMAC-SHA256 in hex: of the request (on a request), of the answer (on a response).
pub const SIGNATURE_HEADER: &str = "x-sluice-signature";

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// How far a request's timestamp may be from the receiver's clock.
pub const CLOCK_WINDOW: Duration = Duration::from_secs(30);
/// Most nonces remembered at once; beyond it requests are refused (only
/// members, whose requests verify, can fill it).
const MAX_REMEMBERED_NONCES: usize = 1_000_000;
/// Largest request body read to check its MAC (the router's own limit).
const MAX_SIGNED_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Refused requests are logged at most this often (with a count).
const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;
/// The first line of every MAC input: the scheme's name and version.
const REQUEST_LABEL: &str = "sluice-cluster-v1 request";
const RESPONSE_LABEL: &str = "sluice-cluster-v1 response";

type HmacSha256 = hmac::Hmac<Sha256>;

/// Why the cluster listener's authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the cluster secret file {path}: {source}")]
    ReadSecret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the cluster secret file {path} holds {len} bytes; it needs at least {MIN_SECRET_BYTES} \
         (e.g. `openssl rand -hex 32 > {path}`)"
    )]
    ShortSecret { path: PathBuf, len: usize },
    #[error("cluster TLS: {0}")]
    Tls(#[from] TlsSetupError),
    #[error(
        "the cluster listener {addr} is not a loopback address and no --cluster-secret-file \
         or --cluster-tls-cert/--cluster-tls-key/--cluster-tls-ca is given: anyone who can reach \
         it could change the cluster"
    )]
    Unauthenticated { addr: SocketAddr },
}

/// The cluster's shared secret. Its `Debug` never shows the bytes.
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret({} bytes)", self.0.len())
    }
}

/// The headers that sign one request, and the nonce its answer is signed with.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub node: u64,
    pub timestamp_ms: u64,
    pub nonce: String,
    pub signature: String,
}

impl SignedRequest {
    /// The four headers, as `name: value` pairs.
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (NODE_HEADER, self.node.to_string()),
            (TIMESTAMP_HEADER, self.timestamp_ms.to_string()),
            (NONCE_HEADER, self.nonce.clone()),
            (SIGNATURE_HEADER, self.signature.clone()),
        ]
    }
}

impl ClusterSecret {
    /// The secret in `path`, without surrounding whitespace (so a file
    /// written by `echo` or `openssl rand -hex 32` works).
    pub fn read(path: &Path) -> Result<Self, AuthError> {
        let bytes = std::fs::read(path).map_err(|source| AuthError::ReadSecret {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).ok_or_else(|| AuthError::ShortSecret {
            path: path.to_path_buf(),
            len: bytes.trim_ascii().len(),
        })
    }

    /// The secret `bytes` (trimmed), or None when shorter than `MIN_SECRET_BYTES`.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let trimmed = bytes.trim_ascii();
        (trimmed.len() >= MIN_SECRET_BYTES).then(|| ClusterSecret(trimmed.to_vec()))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    fn request_mac(
        &self,
        method: &str,
        path: &str,
        node: u64,
        timestamp_ms: u64,
        nonce: &str,
        body: &[u8],
    ) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(
            format!("{REQUEST_LABEL}\n{method}\n{path}\n{node}\n{timestamp_ms}\n{nonce}\n")
                .as_bytes(),
        );
        mac.update(body);
        mac
    }

    fn response_mac(&self, node: u64, nonce: &str, status: u16, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(format!("{RESPONSE_LABEL}\n{node}\n{nonce}\n{status}\n").as_bytes());
        mac.update(body);
        mac
    }

    /// Sign a request to node `node` now, with a fresh nonce.
    pub fn sign_request(&self, method: &str, path: &str, node: u64, body: &[u8]) -> SignedRequest {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let nonce = hex(&nonce);
        let timestamp_ms = unix_millis();
        let signature = hex(&self
            .request_mac(method, path, node, timestamp_ms, &nonce, body)
            .finalize()
            .into_bytes());
        SignedRequest {
            node,
            timestamp_ms,
            nonce,
            signature,
        }
    }

    /// The signature of node `node`'s answer (`status`, `body`) to the
    /// request with `nonce`.
    pub fn sign_response(&self, node: u64, nonce: &str, status: u16, body: &[u8]) -> String {
        hex(&self
            .response_mac(node, nonce, status, body)
            .finalize()
            .into_bytes())
    }

    /// True when `signature` (hex) is node `node`'s answer to `request`;
    /// compared in constant time.
    pub fn verify_response(
        &self,
        request: &SignedRequest,
        status: u16,
        body: &[u8],
        signature: &str,
    ) -> bool {
        unhex(signature).is_some_and(|tag| {
            self.response_mac(request.node, &request.nonce, status, body)
                .verify_slice(&tag)
                .is_ok()
        })
    }
}

/// How this node authenticates on the cluster listener, as a server and as
/// a client of its peers. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PeerAuth {
    /// `--cluster-secret-file`: every request and answer is signed.
    pub secret: Option<Arc<ClusterSecret>>,
    /// `--cluster-tls-*`: peers speak HTTPS with client certificates.
    pub tls: Option<Arc<ClusterTls>>,
}

impl PeerAuth {
    /// From the flags: reads and checks the secret file and the PEM files.
    pub fn from_flags(flags: &crate::config::ClusterAuthFlags) -> Result<Self, AuthError> {
        let secret = match &flags.cluster_secret_file {
            Some(path) => Some(Arc::new(ClusterSecret::read(path)?)),
            None => None,
        };
        let tls = match (
            &flags.cluster_tls_cert,
            &flags.cluster_tls_key,
            &flags.cluster_tls_ca,
        ) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(Arc::new(ClusterTls::load(cert, key, ca)?)),
            _ => {
                return Err(AuthError::Tls(TlsSetupError(
                    "--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together".into(),
                )))
            }
        };
        Ok(PeerAuth { secret, tls })
    }

    /// True when peers must prove their membership (secret or mTLS).
    pub fn is_on(&self) -> bool {
        self.secret.is_some() || self.tls.is_some()
    }

    /// Refuse to listen unauthenticated on anything but loopback; warn when
    /// listening unauthenticated at all.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), AuthError> {
        if self.is_on() {
            return Ok(());
        }
        if !addr.ip().is_loopback() {
            return Err(AuthError::Unauthenticated { addr });
        }
        tracing::warn!(
            cluster_addr = %addr,
            "the cluster listener is unauthenticated (no --cluster-secret-file or \
             --cluster-tls-*): any local process can change the cluster"
        );
        Ok(())
    }
}

/// Why a request was refused (said in the 401's body and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    #[error("the request is meant for another node")]
    OtherNode,
    #[error("the timestamp is outside the allowed clock window")]
    Stale,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the nonce was already used")]
    Replayed,
    #[error("too many recent requests to remember")]
    Full,
    #[error("the body could not be read")]
    Body,
}

/// The listener's side: checks requests to node `node_id` and remembers
/// their nonces for the clock window.
pub struct RequestGuard {
    secret: Arc<ClusterSecret>,
    node_id: u64,
    /// Nonce -> until when (ms since the epoch) it must be refused.
    seen: Mutex<NonceCache>,
    /// Refusals since the last log line, and when that was (ms).
    refused: AtomicU64,
    last_logged_ms: AtomicU64,
}

#[derive(Default)]
struct NonceCache {
    until: HashMap<String, u64>,
    last_prune_ms: u64,
}

/// The parsed headers of a request, before its MAC is checked.
struct Claims {
    timestamp_ms: u64,
    nonce: String,
    signature: Vec<u8>,
}

impl RequestGuard {
    pub fn new(secret: Arc<ClusterSecret>, node_id: u64) -> Self {
        RequestGuard {
            secret,
            node_id,
            seen: Mutex::default(),
            refused: AtomicU64::new(0),
            last_logged_ms: AtomicU64::new(0),
        }
    }

    /// The cheap checks, before the body is read: headers present and well
    /// formed, meant for this node, within the clock window.
    fn claims(&self, headers: &HeaderMap, now_ms: u64) -> Result<Claims, Refusal> {
        let text = |name: &'static str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(Refusal::Header(name))
        };
        let node: u64 = text(NODE_HEADER)?
            .parse()
            .map_err(|_| Refusal::Header(NODE_HEADER))?;
        let timestamp_ms: u64 = text(TIMESTAMP_HEADER)?
            .parse()
            .map_err(|_| Refusal::Header(TIMESTAMP_HEADER))?;
        let nonce = text(NONCE_HEADER)?;
        if nonce.len() != 32 || unhex(nonce).is_none() {
            return Err(Refusal::Header(NONCE_HEADER));
        }
        let signature = unhex(text(SIGNATURE_HEADER)?).ok_or(Refusal::Header(SIGNATURE_HEADER))?;
        if node != self.node_id {
            return Err(Refusal::OtherNode);
        }
        if now_ms.abs_diff(timestamp_ms) > CLOCK_WINDOW.as_millis() as u64 {
            return Err(Refusal::Stale);
        }
        Ok(Claims {
            timestamp_ms,
            nonce: nonce.to_ascii_lowercase(),
            signature,
        })
    }

    /// The MAC over the whole request, then the nonce (remembered only
    /// once the MAC verifies, so non-members cannot fill the cache).
    fn verify(
        &self,
        claims: &Claims,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<(), Refusal> {
        self.secret
            .request_mac(
                method,
                path,
                self.node_id,
                claims.timestamp_ms,
                &claims.nonce,
                body,
            )
            .verify_slice(&claims.signature)
            .map_err(|_| Refusal::BadSignature)?;
        let window = CLOCK_WINDOW.as_millis() as u64;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms.saturating_sub(seen.last_prune_ms) >= 1_000 {
            seen.until.retain(|_, until| *until >= now_ms);
            seen.last_prune_ms = now_ms;
        }
        if seen.until.contains_key(&claims.nonce) {
            return Err(Refusal::Replayed);
        }
        if seen.until.len() >= MAX_REMEMBERED_NONCES {
            return Err(Refusal::Full);
        }
        seen.until
            .insert(claims.nonce.clone(), claims.timestamp_ms + window);
        Ok(())
    }

    fn refuse(&self, why: Refusal) -> Response {
        let count = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = unix_millis();
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= REFUSAL_LOG_INTERVAL_MS
            && self
                .last_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.refused.store(0, Ordering::Relaxed);
            tracing::warn!(reason = %why, refused = count, "cluster listener refused unauthenticated requests");
        }
        (StatusCode::UNAUTHORIZED, why.to_string()).into_response()
    }
}

/// The middleware around the whole cluster router: a request reaches a
/// handler only once it is authenticated; its answer is signed.
pub async fn authenticate(
    State(guard): State<Arc<RequestGuard>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let claims = match guard.claims(&parts.headers, unix_millis()) {
        Ok(claims) => claims,
        Err(why) => return guard.refuse(why),
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_SIGNED_BODY_BYTES).await else {
        return guard.refuse(Refusal::Body);
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if let Err(why) = guard.verify(&claims, parts.method.as_str(), path, &body, unix_millis()) {
        return guard.refuse(why);
    }
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (mut parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let signature =
        guard
            .secret
            .sign_response(guard.node_id, &claims.nonce, parts.status.as_u16(), &body);
    if let Ok(value) = HeaderValue::from_str(&signature) {
        parts.headers.insert(SIGNATURE_HEADER, value);
    }
    Response::from_parts(parts, Body::from(body))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    fn secret() -> Arc<ClusterSecret> {
        Arc::new(ClusterSecret::from_bytes(b"0123456789abcdef-cluster-secret").unwrap())
    }

    /// A router with one route that counts the requests reaching it.
    fn guarded(node_id: u64) -> (Router, Arc<AtomicU64>) {
        let reached = Arc::new(AtomicU64::new(0));
        let counter = reached.clone();
        let routes = Router::new()
            .route(
                "/cluster/propose",
                post(move |body: String| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        format!("ok {body}")
                    }
                }),
            )
            .route("/cluster/status", get(|| async { "status" }));
        let guard = Arc::new(RequestGuard::new(secret(), node_id));
        let router = routes.layer(axum::middleware::from_fn_with_state(guard, authenticate));
        (router, reached)
    }

    fn request(signed: Option<&SignedRequest>, path: &str, body: &str) -> Request {
        let mut builder = Request::builder().method("POST").uri(path);
        if let Some(signed) = signed {
            for (name, value) in signed.headers() {
                builder = builder.header(name, value);
            }
        }
        builder.body(Body::from(body.to_string())).unwrap()
    }

    async fn send(router: &Router, request: Request) -> (u16, Option<String>, Vec<u8>) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let signature = response
            .headers()
            .get(SIGNATURE_HEADER)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, signature, body.to_vec())
    }

    const BODY: &str = r#"{"DeleteTopic":{"name":"t"}}"#;

    #[tokio::test]
    async fn signed_request_passes_and_its_answer_is_signed() {
        let (router, reached) = guarded(1);
        let signed = secret().sign_request("POST", "/cluster/propose", 1, BODY.as_bytes());
        let (status, signature, body) =
            send(&router, request(Some(&signed), "/cluster/propose", BODY)).await;
        assert_eq!(status, 200);
        assert_eq!(reached.load(Ordering::SeqCst), 1);
        assert!(secret().verify_response(&signed, 200, &body, &signature.clone().unwrap()));
        // The same answer does not verify for another request or another body.
        let other = secret().sign_request("POST", "/cluster/propose", 1, BODY.as_bytes());
        assert!(!secret().verify_response(&other, 200, &body, &signature.clone().unwrap()));
        assert!(!secret().verify_response(&signed, 200, b"forged", &signature.unwrap()));
    }

    #[tokio::test]
    async fn unsigned_forged_replayed_and_misdirected_requests_are_refused() {
        let (router, reached) = guarded(1);
        let refused = |(status, signature, _): (u16, Option<String>, Vec<u8>)| {
            assert_eq!(status, 401);
            assert!(signature.is_none());
        };
        refused(send(&router, request(None, "/cluster/propose", BODY)).await);
        refused(send(&router, request(None, "/cluster/status", "")).await);

        let wrong = ClusterSecret::from_bytes(b"another-secret-of-enough-bytes").unwrap();
        let forged = wrong.sign_request("POST", "/cluster/propose", 1, BODY.as_bytes());
        refused(send(&router, request(Some(&forged), "/cluster/propose", BODY)).await);

        // Signed for another node, another path or another body.
        let for_two = secret().sign_request("POST", "/cluster/propose", 2, BODY.as_bytes());
        refused(send(&router, request(Some(&for_two), "/cluster/propose", BODY)).await);
        let harmless = secret().sign_request("POST", "/cluster/status", 1, b"");
        refused(send(&router, request(Some(&harmless), "/cluster/propose", BODY)).await);
        let other_body = secret().sign_request("POST", "/cluster/propose", 1, b"{}");
        refused(
            send(
                &router,
                request(Some(&other_body), "/cluster/propose", BODY),
            )
            .await,
        );

        // Outside the clock window, though correctly signed.
        let mut old = secret().sign_request("POST", "/cluster/propose", 1, BODY.as_bytes());
        old.timestamp_ms -= CLOCK_WINDOW.as_millis() as u64 + 1_000;
        old.signature = hex(&secret()
            .request_mac(
                "POST",
                "/cluster/propose",
                1,
                old.timestamp_ms,
                &old.nonce,
                BODY.as_bytes(),
            )
            .finalize()
            .into_bytes());
        refused(send(&router, request(Some(&old), "/cluster/propose", BODY)).await);
        assert_eq!(reached.load(Ordering::SeqCst), 0);

        // Valid once, refused when replayed.
        let valid = secret().sign_request("POST", "/cluster/propose", 1, BODY.as_bytes());
        let (status, _, _) = send(&router, request(Some(&valid), "/cluster/propose", BODY)).await;
        assert_eq!(status, 200);
        refused(send(&router, request(Some(&valid), "/cluster/propose", BODY)).await);
        assert_eq!(reached.load(Ordering::SeqCst), 1);

        // Routes that are not known are refused too, before any 404.
        refused(send(&router, request(None, "/no/such/route", "")).await);
    }

    #[test]
    fn short_or_empty_secrets_are_refused() {
        assert!(ClusterSecret::from_bytes(b"").is_none());
        assert!(ClusterSecret::from_bytes(b"   short secret \n").is_none());
        assert!(ClusterSecret::from_bytes(b"sixteen-bytes-ok\n").is_some());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "too short\n").unwrap();
        assert!(matches!(
            ClusterSecret::read(&path),
            Err(AuthError::ShortSecret { len: 9, .. })
        ));
        assert!(!format!("{:?}", secret()).contains("0123"));
    }

    #[test]
    fn unauthenticated_listener_binds_only_to_loopback() {
        let none = PeerAuth::default();
        assert!(none.check_bind("127.0.0.1:7001".parse().unwrap()).is_ok());
        assert!(none.check_bind("[::1]:7001".parse().unwrap()).is_ok());
        assert!(none.check_bind("0.0.0.0:7001".parse().unwrap()).is_err());
        assert!(none.check_bind("10.0.0.2:7001".parse().unwrap()).is_err());
        let with_secret = PeerAuth {
            secret: Some(secret()),
            tls: None,
        };
        assert!(with_secret
            .check_bind("0.0.0.0:7001".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn nonces_are_forgotten_after_the_window() {
        let guard = RequestGuard::new(secret(), 1);
        let signed = secret().sign_request("GET", "/cluster/status", 1, b"");
        let claims = Claims {
            timestamp_ms: signed.timestamp_ms,
            nonce: signed.nonce.clone(),
            signature: unhex(&signed.signature).unwrap(),
        };
        let now = signed.timestamp_ms;
        assert_eq!(
            guard.verify(&claims, "GET", "/cluster/status", b"", now),
            Ok(())
        );
        assert_eq!(
            guard.verify(&claims, "GET", "/cluster/status", b"", now + 1_000),
            Err(Refusal::Replayed)
        );
        let later = now + CLOCK_WINDOW.as_millis() as u64 + 2_000;
        let _ = guard.verify(&claims, "GET", "/cluster/status", b"", later);
        assert!(guard.seen.lock().unwrap().until.len() <= 1);
    }
}
