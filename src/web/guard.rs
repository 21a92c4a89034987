//! The HTTP listener's protections, in every mode: the layers `protect`
//! wraps around the whole router.
//!
//! From the outside in:
//! 1. CORS (tower-http): closed unless `--cors-origins` lists origins; then
//!    their preflights are answered and their responses carry
//!    `Access-Control-Allow-Origin` (no credentials: cross-origin callers
//!    use bearer tokens).
//! 2. Security headers on every response (nosniff, no framing, no
//!    referrer, a Content-Security-Policy that allows only the node's own
//!    scripts, styles and connections).
//! 3. `check`: a write must declare `Content-Type: application/json` when
//!    it has a body or any content type (415: a cross-site form or
//!    `text/plain` post cannot), and a write or WebSocket upgrade whose
//!    `Origin` is neither the served host nor a listed origin is refused
//!    (403); API responses get `Cache-Control: no-store`.
//! 4. Authentication and roles (`auth`, only with `--http-auth`).
//!
//! Must never: look at a request's body, or let a refused request reach a
//! handler.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use super::auth::tokens::TokenStore;
use super::auth::{self, Auth, CSRF_HEADER};
use super::refusal::refuse;
use crate::config::NodeConfig;
use crate::storage::Storage;

/// The dashboard's policy: its own files only, no inline script or style,
/// `data:` images (Bootstrap's icons), connections (REST, WebSocket) to
/// the node itself, never inside a frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Wrap `router` in the listener's protections (see the module comment);
/// adds the login endpoints.
pub(crate) fn protect(router: Router, config: &NodeConfig, storage: Storage) -> Router {
    let tokens = TokenStore::new(storage);
    if config.http_auth {
        match tokens.list() {
            Ok(list) if list.is_empty() => tracing::warn!(
                "--http-auth is on and no HTTP token exists: only static files, /healthz and \
                 /readyz answer; add one with `sluice tokens add NAME --role admin --data-dir DIR`"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the HTTP tokens"),
        }
    } else if !config.http_addr.ip().is_loopback() {
        tracing::warn!(
            http_addr = %config.http_addr,
            "the HTTP listener is reachable beyond this host without --http-auth: \
             anyone who reaches it may place orders, replay and run the simulator"
        );
    }
    let auth = Auth::new(config.http_auth, tokens);
    let origins = Origins::new(&config.cors_origins);
    let mut router = router
        .merge(auth::login::router(auth.clone()))
        .layer(middleware::from_fn_with_state(auth, auth::authorize))
        .layer(middleware::from_fn_with_state(origins.clone(), check));
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    ] {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    match origins.cors_layer() {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The origins allowed to call the API from a browser: the served host
/// itself, and the `--cors-origins` list.
#[derive(Clone)]
struct Origins {
    listed: std::sync::Arc<Vec<String>>,
}

impl Origins {
    fn new(configured: &[String]) -> Self {
        let listed = configured
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| {
                let valid = o.contains("://") && HeaderValue::from_str(o).is_ok();
                if !valid {
                    tracing::warn!(origin = %o, "ignoring a --cors-origins entry that is not scheme://host[:port]");
                }
                valid
            })
            .collect();
        Origins {
            listed: std::sync::Arc::new(listed),
        }
    }

    /// `origin` is the host the request was sent to, or a listed origin.
    fn allows(&self, origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self.listed.iter().any(|o| o == origin) {
            return true;
        }
        let authority = origin.split_once("://").map(|(_, a)| a);
        match (authority, host.and_then(|h| h.to_str().ok())) {
            (Some(a), Some(h)) => a.eq_ignore_ascii_case(h),
            _ => false,
        }
    }

    /// The CORS layer for the listed origins; None when none are listed
    /// (no CORS header is ever sent).
    fn cors_layer(&self) -> Option<CorsLayer> {
        if self.listed.is_empty() {
            return None;
        }
        let origins: Vec<HeaderValue> = self
            .listed
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    HeaderName::from_static(CSRF_HEADER),
                ])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// Content type and origin of writes and upgrades; `no-store` on the API.
async fn check(State(origins): State<Origins>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write && !declares_json_or_nothing(headers) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a write must be sent with Content-Type: application/json",
        );
    }
    if write || is_websocket_upgrade(headers) {
        if let Some(origin) = headers.get(header::ORIGIN) {
            if !origins.allows(origin, headers.get(header::HOST)) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "cross_origin",
                    "requests from this origin are not allowed (see --cors-origins)",
                );
            }
        }
    }
    let api = req.uri().path().starts_with("/api/");
    let mut response = next.run(req).await;
    if api {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `Content-Type: application/json` (any parameters), or no content type
/// and no body.
fn declares_json_or_nothing(headers: &HeaderMap) -> bool {
    match headers.get(header::CONTENT_TYPE) {
        Some(value) => value.to_str().is_ok_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
        }),
        None => {
            let length = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            length == 0 && !headers.contains_key(header::TRANSFER_ENCODING)
        }
    }
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_json_or_an_empty_body_without_type_may_write() {
        use header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
        assert!(declares_json_or_nothing(&headers(&[(
            CONTENT_TYPE,
            "application/json"
        )])));
        assert!(declares_json_or_nothing(&headers(&[(
            CONTENT_TYPE,
            "Application/JSON; charset=utf-8"
        )])));
        assert!(declares_json_or_nothing(&headers(&[])));
        assert!(declares_json_or_nothing(&headers(&[(CONTENT_LENGTH, "0")])));
        assert!(!declares_json_or_nothing(&headers(&[(
            CONTENT_TYPE,
            "text/plain"
        )])));
        assert!(!declares_json_or_nothing(&headers(&[(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded"
        )])));
        assert!(!declares_json_or_nothing(&headers(&[(
            CONTENT_TYPE,
            "multipart/form-data; boundary=x"
        )])));
        assert!(!declares_json_or_nothing(&headers(&[(
            CONTENT_LENGTH,
            "5"
        )])));
        assert!(!declares_json_or_nothing(&headers(&[(
            TRANSFER_ENCODING,
            "chunked"
        )])));
    }

    #[test]
    fn origins_are_the_served_host_or_listed() {
        let origins = Origins::new(&["https://shop.example".into(), "not an origin".into()]);
        let host = HeaderValue::from_static("127.0.0.1:8080");
        let allows = |o: &'static str| origins.allows(&HeaderValue::from_static(o), Some(&host));
        assert!(allows("http://127.0.0.1:8080"));
        assert!(allows("https://shop.example"));
        assert!(!allows("http://127.0.0.1:8081"));
        assert!(!allows("https://evil.example"));
        assert!(!allows("null"));
        assert_eq!(origins.listed.len(), 1);
    }
}
