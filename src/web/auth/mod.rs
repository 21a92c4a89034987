//! Authentication and authorization of the HTTP listener (`--http-auth`):
//! who a request comes from (a bearer token, or a dashboard session cookie
//! whose writes carry its CSRF token) and whether that role may make it.
//!
//! Public without credentials: the dashboard's static files, `/healthz`,
//! `/readyz` and the login endpoints (`login`). Everything else needs at
//! least `viewer` (reads, the WebSocket); writes need `operator` (the
//! shop) or `admin` (replay, simulator, cluster and topic routes). A
//! refused request never reaches a handler: 401 without valid credentials,
//! 403 with a role too low or a session write without its CSRF token.
//!
//! Tokens are read from the database on every request (`tokens`): a token
//! removed or added in the database takes effect at once, and a session
//! ends with its token. Must never: log a token, a session id or a CSRF
//! token.

pub(crate) mod login;
pub(crate) mod sessions;
pub(crate) mod tokens;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use self::sessions::{Session, Sessions};
use self::tokens::{Role, TokenRecord, TokenStore};
use super::refusal::refuse;

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "sluice_session";
/// Header carrying the session's CSRF token on writes.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Routes whose writes need `admin` (a path is one of them or below one).
const ADMIN_ROUTES: &[&str] = &[
    "/api/replay",
    "/api/simulator",
    "/api/cluster",
    "/api/raft",
    "/api/replicas",
    "/api/topics",
];

/// Routes that need `admin` for reads too: the console's API reads records
/// and group offsets of every topic.
const ADMIN_ONLY_ROUTES: &[&str] = &["/api/admin"];

/// Routes anyone may call: health, readiness and the login endpoints.
const PUBLIC_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/api/login",
    "/api/logout",
    "/api/session",
];

/// A request's marker that it arrived over TLS (set by a TLS listener), so
/// the session cookie gets `Secure`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServedOverTls;

/// The auth layer's state.
#[derive(Clone)]
pub(crate) struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    /// `--http-auth`: without it every request passes.
    enabled: bool,
    tokens: TokenStore,
    sessions: Sessions,
}

/// Who made a request.
pub(crate) enum Caller {
    /// A bearer token.
    Token(TokenRecord),
    /// A dashboard session.
    Session(Session),
}

impl Caller {
    pub(crate) fn role(&self) -> Role {
        match self {
            Caller::Token(r) => r.role,
            Caller::Session(s) => s.role,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Caller::Token(r) => &r.name,
            Caller::Session(s) => &s.name,
        }
    }
}

/// Why a request carries no usable identity.
pub(crate) enum Unidentified {
    /// No credentials, or ones that are not (or no longer) valid.
    Missing(&'static str),
    /// The token store could not be read.
    Failed(tokens::TokenError),
}

impl Auth {
    pub(crate) fn new(enabled: bool, tokens: TokenStore) -> Self {
        Auth {
            inner: Arc::new(AuthInner {
                enabled,
                tokens,
                sessions: Sessions::default(),
            }),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.inner.enabled
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// The record of `token`, if it is a stored token.
    pub(crate) fn token(&self, token: &str) -> Result<Option<TokenRecord>, tokens::TokenError> {
        self.inner.tokens.find(&tokens::digest(token))
    }

    /// Who sent `headers`: the bearer token if there is an `Authorization`
    /// header (a wrong one is not retried as a cookie), else the session
    /// cookie, whose token must still exist.
    pub(crate) fn identify(&self, headers: &HeaderMap) -> Result<Caller, Unidentified> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(Unidentified::Missing(
                    "the Authorization header is not `Bearer <token>`",
                ))?;
            return match self.token(token) {
                Ok(Some(record)) => Ok(Caller::Token(record)),
                Ok(None) => Err(Unidentified::Missing("unknown token")),
                Err(e) => Err(Unidentified::Failed(e)),
            };
        }
        let id = cookie(headers, SESSION_COOKIE).ok_or(Unidentified::Missing(
            "log in, or send `Authorization: Bearer <token>`",
        ))?;
        let session = self
            .inner
            .sessions
            .get(&id)
            .ok_or(Unidentified::Missing("the session has ended; log in again"))?;
        match self.inner.tokens.find(&session.token_digest) {
            Ok(Some(_)) => Ok(Caller::Session(session)),
            Ok(None) => {
                self.inner.sessions.remove(&id);
                Err(Unidentified::Missing(
                    "the session's token was removed; log in again",
                ))
            }
            Err(e) => Err(Unidentified::Failed(e)),
        }
    }
}

/// The answer when the token store cannot be read.
pub(crate) fn store_failed(e: &tokens::TokenError) -> Response {
    tracing::warn!(error = %e, "cannot read the HTTP tokens");
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "cannot check credentials",
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Reads: they change nothing and need `viewer`.
pub(crate) fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// True when `path` is `route` or below it.
fn under(path: &str, route: &str) -> bool {
    path.strip_prefix(route)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The role a request needs; None for a public one.
pub(crate) fn required_role(method: &Method, path: &str) -> Option<Role> {
    if PUBLIC_ROUTES.contains(&path) || (is_read(method) && super::assets::is_asset_path(path)) {
        return None;
    }
    if ADMIN_ONLY_ROUTES.iter().any(|r| under(path, r)) {
        Some(Role::Admin)
    } else if is_read(method) {
        Some(Role::Viewer)
    } else if ADMIN_ROUTES.iter().any(|r| under(path, r)) {
        Some(Role::Admin)
    } else {
        Some(Role::Operator)
    }
}

/// The auth layer: refuses what the caller may not do, before any handler.
pub(crate) async fn authorize(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if !auth.enabled() {
        return next.run(req).await;
    }
    let Some(needed) = required_role(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let caller = match auth.identify(req.headers()) {
        Ok(caller) => caller,
        Err(Unidentified::Missing(why)) => {
            let mut response = refuse(StatusCode::UNAUTHORIZED, "unauthorized", why);
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
            return response;
        }
        Err(Unidentified::Failed(e)) => return store_failed(&e),
    };
    if let Caller::Session(session) = &caller {
        if !is_read(req.method()) && !csrf_matches(req.headers(), &session.csrf_token) {
            return refuse(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "a write with a session cookie needs its X-CSRF-Token header (from GET /api/session)",
            );
        }
    }
    if caller.role() < needed {
        return refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "{} has role {}; this request needs {}",
                caller.name(),
                caller.role(),
                needed
            ),
        );
    }
    next.run(req).await
}

/// The request's `X-CSRF-Token` equals `expected` (compared in constant time).
fn csrf_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CSRF_HEADER)
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_its_role() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(required_role(&get, "/"), None);
        assert_eq!(required_role(&get, "/assets/app.js"), None);
        assert_eq!(required_role(&get, "/healthz"), None);
        assert_eq!(required_role(&post, "/api/login"), None);
        assert_eq!(required_role(&get, "/api/orders"), Some(Role::Viewer));
        assert_eq!(required_role(&get, "/ws"), Some(Role::Viewer));
        assert_eq!(required_role(&get, "/api/replay"), Some(Role::Viewer));
        assert_eq!(required_role(&post, "/api/orders"), Some(Role::Operator));
        assert_eq!(
            required_role(&post, "/api/orders/x/cancel"),
            Some(Role::Operator)
        );
        assert_eq!(required_role(&post, "/api/replay"), Some(Role::Admin));
        assert_eq!(required_role(&post, "/api/simulator"), Some(Role::Admin));
        assert_eq!(
            required_role(&Method::DELETE, "/api/topics/t"),
            Some(Role::Admin)
        );
        assert_eq!(required_role(&get, "/api/admin/topics"), Some(Role::Admin));
        assert_eq!(
            required_role(&post, "/api/admin/groups/g/reset-offsets"),
            Some(Role::Admin)
        );
        assert_eq!(required_role(&get, "/api/administer"), Some(Role::Viewer));
        assert_eq!(required_role(&post, "/api/replayx"), Some(Role::Operator));
        assert_eq!(required_role(&post, "/"), Some(Role::Operator));
        assert_eq!(
            required_role(&Method::OPTIONS, "/api/orders"),
            Some(Role::Operator)
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; sluice_session=abc; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
