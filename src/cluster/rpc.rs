//! A small HTTP/1.1 JSON client for the cluster listener: one short-lived
//! connection per call (`Connection: close`), a deadline on the whole call,
//! and a bound on the response size.
//!
//! Hand-written over a tokio `TcpStream` instead of adding reqwest or
//! hyper's client: the peers are our own axum listeners, the calls are few
//! (heartbeats, votes, a metadata proposal), and the whole protocol we need is
//! "POST a JSON body, read a JSON body". It must never be pointed at anything
//! but a Sluice cluster listener.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    #[error("cannot encode or decode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// POST `body` as JSON to `http://{addr}{path}` and decode the JSON answer.
pub async fn post_json<Req: Serialize, Resp: DeserializeOwned>(
    addr: &str,
    path: &str,
    body: &Req,
    timeout: Duration,
) -> Result<Resp, RpcError> {
    let body = serde_json::to_vec(body)?;
    let bytes = call(addr, "POST", path, &body, timeout).await?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// GET `http://{addr}{path}` and decode the JSON answer.
pub async fn get_json<Resp: DeserializeOwned>(
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Result<Resp, RpcError> {
    let bytes = call(addr, "GET", path, &[], timeout).await?;
    Ok(serde_json::from_slice(&bytes)?)
}

async fn call(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, RpcError> {
    match tokio::time::timeout(timeout, exchange(addr, method, path, body)).await {
        Ok(result) => result,
        Err(_) => Err(RpcError::Timeout {
            addr: addr.to_string(),
            timeout,
        }),
    }
}

async fn exchange(addr: &str, method: &str, path: &str, body: &[u8]) -> Result<Vec<u8>, RpcError> {
    let io = |source| RpcError::Io {
        addr: addr.to_string(),
        source,
    };
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| RpcError::Unreachable {
            addr: addr.to_string(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE_BYTES + 16 * 1024)
        .read_to_end(&mut response)
        .await
        .map_err(io)?;
    parse_response(addr, response)
}

/// Split a complete `Connection: close` response into status and body; only
/// 200 with a `Content-Length` body (what axum's `Json` sends) is accepted.
fn parse_response(addr: &str, response: Vec<u8>) -> Result<Vec<u8>, RpcError> {
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
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
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
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_body_and_rejects_errors() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n[1]\nextra".to_vec();
        assert_eq!(parse_response("a", ok).unwrap(), b"[1]\n");
        let err = b"HTTP/1.1 500 Internal\r\ncontent-length: 3\r\n\r\nbad".to_vec();
        assert!(matches!(
            parse_response("a", err),
            Err(RpcError::BadResponse { .. })
        ));
        assert!(parse_response("a", b"garbage".to_vec()).is_err());
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
        let result: Result<u8, _> = get_json(&addr, "/", Duration::from_secs(2)).await;
        assert!(matches!(result, Err(RpcError::Unreachable { .. })));
    }
}
