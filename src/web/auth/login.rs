//! The login endpoints of the dashboard: `POST /api/login` (a token in,
//! a session cookie and a CSRF token out), `POST /api/logout` and
//! `GET /api/session` (who is logged in, with which role, and the CSRF
//! token the dashboard sends on writes). Without `--http-auth`,
//! `/api/session` says so and gives the dashboard every control.
//!
//! The cookie is `HttpOnly` (scripts cannot read it), `SameSite=Strict`
//! (no other site's page sends it), `Path=/`, and `Secure` when the request
//! came over TLS. Must never: log a token, a session id or a CSRF token.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::sessions::SESSION_TTL;
use super::tokens::{self, Role};
use super::{cookie, store_failed, Auth, Caller, ServedOverTls, Unidentified, SESSION_COOKIE};
use crate::web::refusal::refuse;

/// The login endpoints.
pub(crate) fn router(auth: Auth) -> Router {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session))
        .with_state(auth)
}

/// `Set-Cookie` for a session: `id` for `max_age_s` seconds (0 ends it).
fn session_cookie(id: &str, max_age_s: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"
    ))
    .ok()
}

/// Whether the request came over TLS (a TLS listener marks it; a proxy in
/// front says so with `X-Forwarded-Proto`, which can only add `Secure`).
fn over_tls(req: &Request) -> bool {
    req.extensions().get::<ServedOverTls>().is_some()
        || req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

fn disabled() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        "auth_disabled",
        "this node runs without --http-auth",
    )
}

/// `POST /api/login` with `{"token": "..."}`.
async fn login(State(auth): State<Auth>, req: Request) -> Response {
    if !auth.enabled() {
        return disabled();
    }
    let secure = over_tls(&req);
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024).await {
        Ok(b) => b,
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "invalid_json", "body too large"),
    };
    let Some(token) = token_of(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be {\"token\": \"...\"}",
        );
    };
    let record = match auth.token(&token) {
        Ok(Some(record)) => record,
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"),
        Err(e) => return store_failed(&e),
    };
    let (id, session) = auth.sessions().create(&record, tokens::digest(&token));
    tracing::info!(name = %record.name, role = %record.role, "dashboard login");
    let mut response = Json(json!({
        "auth": true,
        "name": session.name,
        "role": session.role,
        "csrf_token": session.csrf_token,
        "expires_in_s": SESSION_TTL.as_secs(),
    }))
    .into_response();
    if let Some(cookie) = session_cookie(&id, SESSION_TTL.as_secs(), secure) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

fn token_of(body: &Bytes) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("token")?.as_str().map(|t| t.trim().to_owned())
}

/// `POST /api/logout`: ends the session and clears the cookie.
async fn logout(State(auth): State<Auth>, req: Request) -> Response {
    if let Some(id) = cookie(req.headers(), SESSION_COOKIE) {
        auth.sessions().remove(&id);
    }
    let mut response = Json(json!({"auth": auth.enabled(), "logged_out": true})).into_response();
    if let Some(cookie) = session_cookie("", 0, over_tls(&req)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /api/session`: the caller's name, role and CSRF token.
async fn session(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    if !auth.enabled() {
        return Json(json!({"auth": false, "name": null, "role": Role::Admin, "csrf_token": null}))
            .into_response();
    }
    match auth.identify(&headers) {
        Ok(caller) => {
            let csrf = match &caller {
                Caller::Session(s) => Some(s.csrf_token.clone()),
                Caller::Token(_) => None,
            };
            Json(json!({
                "auth": true,
                "name": caller.name(),
                "role": caller.role(),
                "csrf_token": csrf,
            }))
            .into_response()
        }
        Err(Unidentified::Missing(why)) => refuse(StatusCode::UNAUTHORIZED, "unauthorized", why),
        Err(Unidentified::Failed(e)) => store_failed(&e),
    }
}
