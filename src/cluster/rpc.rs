//! A small HTTP/1.1 JSON client for the cluster listener: one short-lived
//! connection per call (`Connection: close`), a deadline on the whole call,
//! and a bound on the response size. It is the one place a node sends
//! requests to its peers: it signs each with the cluster secret and checks
//! the answer's signature (`auth`), and speaks TLS with mutual TLS on (`tls`).
//!
//! Hand-written over a tokio `TcpStream` instead of adding reqwest or
//! hyper's client: the peers are our own axum listeners, the calls are few
//! (heartbeats, votes, a metadata proposal), and the whole protocol we need is
//! "POST a JSON body, read a JSON body". It must never be pointed at anything
//! but a Sluice cluster listener.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth::{PeerAuth, SIGNATURE_HEADER};

/// Path of a node's `RaftStatus` on the cluster listener (served by
/// `server`, probed by `controller` and at start).
pub const STATUS_PATH: &str = "/cluster/status";

/// Largest response body accepted (snapshots are sent in chunks well below it).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a cluster RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Nothing listens there (the peer is down): callers back off.
    #[error("cannot connect to {addr}: {source}")]
    Unreachable {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("I/O with {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("bad HTTP response from {addr}: {what}")]
    BadResponse { addr: String, what: String },
    #[error("TLS with {addr}: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
    /// The answer lacks a valid signature: not a member of this cluster.
    #[error("the answer from {addr} is not signed with the cluster secret")]
    Unauthenticated { addr: String },
    #[error("cannot encode or decode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// The client side of the cluster listener: signs requests with the shared
/// secret and checks the answers' signatures, speaks TLS to peers with
/// mutual TLS on. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RpcClient {
    auth: PeerAuth,
}

impl RpcClient {
    pub fn new(auth: PeerAuth) -> Self {
        RpcClient { auth }
    }

    /// POST `body` as JSON to `path` on node `node`'s listener at `addr`
    /// and decode the JSON answer.
    pub async fn post_json<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        node: u64,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let body = serde_json::to_vec(body)?;
        let bytes = self.call(node, addr, "POST", path, &body, timeout).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// GET `path` on node `node`'s listener at `addr` and decode the JSON answer.
    pub async fn get_json<Resp: DeserializeOwned>(
        &self,
        node: u64,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let bytes = self.call(node, addr, "GET", path, &[], timeout).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// One request and its answer's body, within `timeout` in all.
    async fn call(
        &self,
        node: u64,
        addr: &str,
        method: &str,
        path: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let exchange = async {
            let stream =
                TcpStream::connect(addr)
                    .await
                    .map_err(|source| RpcError::Unreachable {
                        addr: addr.to_string(),
                        source,
                    })?;
            let _ = stream.set_nodelay(true);
            let signed = self
                .auth
                .secret
                .as_ref()
                .map(|secret| secret.sign_request(method, path, node, body));
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in signed.iter().flat_map(|s| s.headers()) {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let response = match &self.auth.tls {
                Some(tls) => {
                    let stream =
                        tls.connect(addr, stream)
                            .await
                            .map_err(|source| RpcError::Tls {
                                addr: addr.to_string(),
                                source,
                            })?;
                    send(addr, stream, head.as_bytes(), body).await?
                }
                None => send(addr, stream, head.as_bytes(), body).await?,
            };
            let response = parse_response(addr, response)?;
            if let (Some(secret), Some(signed)) = (&self.auth.secret, &signed) {
                let verified = response.signature.as_deref().is_some_and(|signature| {
                    secret.verify_response(signed, response.status, &response.body, signature)
                });
                if !verified {
                    return Err(RpcError::Unauthenticated {
                        addr: addr.to_string(),
                    });
                }
            }
            Ok(response.body)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout {
                addr: addr.to_string(),
                timeout,
            }),
        }
    }
}

/// Write the request, read the whole `Connection: close` response.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    addr: &str,
    mut stream: S,
    head: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, RpcError> {
    let io = |source| RpcError::Io {
        addr: addr.to_string(),
        source,
    };
    stream.write_all(head).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut response = Vec::new();
    match (&mut stream)
        .take(MAX_RESPONSE_BYTES + 16 * 1024)
        .read_to_end(&mut response)
        .await
    {
        Ok(_) => {}
        // A TLS peer that closes without close_notify: the Content-Length
        // check below still catches a cut-off answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(io(e)),
    }
    Ok(response)
}

/// A response's parts that the client checks.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The `x-sluice-signature` header, if any.
    signature: Option<String>,
    body: Vec<u8>,
}

/// Split a complete `Connection: close` response into status and body; only
/// 200 with a `Content-Length` body (what axum's `Json` sends) is accepted.
fn parse_response(addr: &str, response: Vec<u8>) -> Result<Answer, RpcError> {
    let bad = |what: String| RpcError::BadResponse {
        addr: addr.to_string(),
        what,
    };
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers".into()))?;
    let head = std::str::from_utf8(&response[..head_end])
        .map_err(|_| bad("headers are not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("status line {status_line:?}")))?;
    let mut content_length = None;
    let mut signature = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case(SIGNATURE_HEADER) {
                signature = Some(value.trim().to_string());
            } else if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked responses are not expected".into()));
            }
        }
    }
    let body = &response[head_end + 4..];
    let body = match content_length {
        Some(n) if n <= body.len() => &body[..n],
        Some(n) => return Err(bad(format!("body shorter than Content-Length {n}"))),
        None => body,
    };
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(bad(format!("HTTP {status}: {text}")));
    }
    Ok(Answer {
        status,
        signature,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::auth::{authenticate, ClusterSecret, RequestGuard};
    use super::*;
    use std::sync::Arc;

    #[test]
    fn parses_content_length_body_and_rejects_errors() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n[1]\nextra".to_vec();
        assert_eq!(parse_response("a", ok).unwrap().body, b"[1]\n");
        let err = b"HTTP/1.1 500 Internal\r\ncontent-length: 3\r\n\r\nbad".to_vec();
        assert!(matches!(
            parse_response("a", err),
            Err(RpcError::BadResponse { .. })
        ));
        assert!(parse_response("a", b"garbage".to_vec()).is_err());
    }

    /// A listener on 127.0.0.1 answering `/echo` with its JSON body, with
    /// the secret's middleware when given one; its address.
    async fn echo_listener(secret: Option<Arc<ClusterSecret>>) -> String {
        use axum::routing::post;
        let mut app = axum::Router::new().route(
            "/echo",
            post(|axum::Json(v): axum::Json<serde_json::Value>| async move { axum::Json(v) }),
        );
        if let Some(secret) = secret {
            let guard = Arc::new(RequestGuard::new(secret, 7));
            app = app.layer(axum::middleware::from_fn_with_state(guard, authenticate));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn client(secret: &[u8]) -> (RpcClient, Arc<ClusterSecret>) {
        let secret = Arc::new(ClusterSecret::from_bytes(secret).unwrap());
        let auth = PeerAuth {
            secret: Some(secret.clone()),
            tls: None,
        };
        (RpcClient::new(auth), secret)
    }

    #[tokio::test]
    async fn members_talk_and_answers_not_signed_by_a_member_are_refused() {
        let timeout = Duration::from_secs(5);
        let (member, secret) = client(b"the-cluster-secret-16+");
        let signed = echo_listener(Some(secret)).await;
        let answer: u32 = member
            .post_json(7, &signed, "/echo", &42, timeout)
            .await
            .unwrap();
        assert_eq!(answer, 42);
        // Signed for node 7: node 8 (the same listener, as if misaddressed) refuses.
        let other = member.post_json::<_, u32>(8, &signed, "/echo", &42, timeout);
        assert!(matches!(other.await, Err(RpcError::BadResponse { .. })));
        // A listener with another secret refuses the request.
        let (outsider, _) = client(b"an-outsiders-secret-16+");
        let refused = outsider.post_json::<_, u32>(7, &signed, "/echo", &42, timeout);
        assert!(matches!(refused.await, Err(RpcError::BadResponse { .. })));
        // A listener without the secret answers, but the member does not believe it.
        let impostor = echo_listener(None).await;
        let unsigned = member.post_json::<_, u32>(7, &impostor, "/echo", &42, timeout);
        assert!(matches!(
            unsigned.await,
            Err(RpcError::Unauthenticated { .. })
        ));
    }

    #[tokio::test]
    async fn unreachable_peer_is_reported_as_unreachable() {
        // Bind then drop: nothing listens on that port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let result: Result<u8, _> = RpcClient::default()
            .get_json(1, &addr, "/", Duration::from_secs(2))
            .await;
        assert!(matches!(result, Err(RpcError::Unreachable { .. })));
    }
}
