//! The embedded web dashboard: `/` and `/assets/...` served from the binary.
//!
//! `build.rs` puts the dashboard's own files and the needed Bootstrap and
//! Chart.js dist files into `$OUT_DIR/web`, each text file with a gzip and a
//! brotli twin; `rust-embed` embeds that folder (in debug builds too), so the
//! binary runs from any directory and the first paint needs nothing else.
//!
//! Caching: vendor files live under `/assets/vendor/<versions>/` and never
//! change at a given URL (a year, immutable); the dashboard's own files are
//! revalidated on every load (`no-cache`) against a content-hash ETag.
//! This module never reads the file system and never compresses at run time.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

/// Everything `build.rs` wrote into `$OUT_DIR/web`.
#[derive(rust_embed::Embed)]
#[folder = "$OUT_DIR/web"]
struct Dashboard;

/// Cache policy of versioned third-party files.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of the dashboard's own files: always revalidate (cheap with the ETag).
const REVALIDATE: &str = "no-cache";

/// The dashboard's pages, each also a plain path that redirects to its hash route.
const PAGES: [&str; 6] = [
    "orders",
    "payments",
    "deliveries",
    "notifications",
    "cluster",
    "dashboard",
];

/// True for the paths `router` serves (public with `--http-auth` too).
pub(crate) fn is_asset_path(path: &str) -> bool {
    matches!(path, "/" | "/index.html" | "/favicon.ico")
        || path.starts_with("/assets/")
        || path
            .strip_prefix('/')
            .is_some_and(|page| PAGES.contains(&page))
}

/// The dashboard's routes. Pages use hash routing (`/#/orders`); the plain paths
/// redirect there so a typed URL works too.
pub fn router() -> Router {
    let mut router = Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/favicon.ico", get(favicon))
        .route("/assets/{*path}", get(asset))
        .route("/api/docs", get(api_docs));
    for page in PAGES {
        router = router.route(
            &format!("/{page}"),
            get(move || async move { Redirect::to(&format!("/#/{page}")) }),
        );
    }
    router
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// The API reference (Swagger UI over `/api/openapi.json`).
async fn api_docs(headers: HeaderMap) -> Response {
    serve("api-docs.html", &headers)
}

async fn favicon(headers: HeaderMap) -> Response {
    serve("favicon.svg", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // The compressed twins are an internal detail, chosen by Accept-Encoding.
    if path.ends_with(".gz") || path.ends_with(".br") {
        return not_found();
    }
    serve(&path, &headers)
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// The response for embedded file `path`: 304 when the client's copy is
/// current, else the best encoding the client accepts.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Dashboard::get(path) else {
        return not_found();
    };
    let cache = if path.starts_with("vendor/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let hash = file.metadata.sha256_hash();
    let tag = format!(
        "\"{}\"",
        hash[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let compressible = has_twins(path);

    let mut response = if if_none_match(headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let accepted = accepted_encodings(headers);
        let twin = |suffix: &str| Dashboard::get(&format!("{path}{suffix}")).map(|f| f.data);
        let (data, encoding) = match (compressible, accepted) {
            (true, Accepted { br: true, .. }) if twin(".br").is_some() => (twin(".br"), Some("br")),
            (true, Accepted { gzip: true, .. }) if twin(".gz").is_some() => {
                (twin(".gz"), Some("gzip"))
            }
            _ => (None, None),
        };
        let data = data.unwrap_or(file.data);
        let mut response = Response::new(Body::from(to_bytes(data)));
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        if let Some(encoding) = encoding {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        response
    };
    let h = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if compressible {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn to_bytes(data: Cow<'static, [u8]>) -> Bytes {
    match data {
        Cow::Borrowed(b) => Bytes::from_static(b),
        Cow::Owned(v) => Bytes::from(v),
    }
}

/// Whether `build.rs` wrote `.gz`/`.br` twins for this kind of file.
fn has_twins(path: &str) -> bool {
    matches!(
        extension(path),
        "html" | "css" | "js" | "svg" | "json" | "txt"
    )
}

fn extension(path: &str) -> &str {
    path.rsplit_once('.').map(|(_, e)| e).unwrap_or("")
}

fn content_type(path: &str) -> &'static str {
    match extension(path) {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// True when an `If-None-Match` header lists `tag` (or `*`).
fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

/// Which content codings the client takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Accepted {
    br: bool,
    gzip: bool,
}

/// Parse `Accept-Encoding` (RFC 9110 §12.5.3): a coding is accepted when it is
/// listed (or covered by `*`) with a non-zero q-value.
fn accepted_encodings(headers: &HeaderMap) -> Accepted {
    let mut listed_br = None;
    let mut listed_gzip = None;
    let mut star = None;
    for value in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            let ok = q > 0.0;
            match coding.as_str() {
                "br" => listed_br = Some(ok),
                "gzip" | "x-gzip" => listed_gzip = Some(ok),
                "*" => star = Some(ok),
                _ => {}
            }
        }
    }
    Accepted {
        br: listed_br.or(star).unwrap_or(false),
        gzip: listed_gzip.or(star).unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn accept_encoding_honours_q_zero_and_star() {
        let a = |v| accepted_encodings(&headers(&[("accept-encoding", v)]));
        let both = Accepted {
            br: true,
            gzip: true,
        };
        let gzip_only = Accepted {
            br: false,
            gzip: true,
        };
        assert_eq!(a("gzip, deflate, br"), both);
        assert_eq!(a("gzip;q=1.0, br;q=0"), gzip_only);
        assert_eq!(a("*"), both);
        assert_eq!(a("*;q=0, gzip"), gzip_only);
        assert_eq!(a("identity"), Accepted::default());
        assert_eq!(accepted_encodings(&HeaderMap::new()), Accepted::default());
    }

    async fn get(path: &str, extra: &[(&'static str, &'static str)]) -> Response {
        let mut request = Request::get(path);
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        router()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    fn vendor_path(name: &str) -> String {
        let path = Dashboard::iter()
            .find(|p| p.starts_with("vendor/") && p.ends_with(name))
            .expect("vendor file embedded");
        format!("/assets/{path}")
    }

    #[tokio::test]
    async fn index_is_html_revalidated_and_brotli_when_accepted() {
        let plain = get("/", &[]).await;
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(
            plain.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let tag = plain.headers()[header::ETAG]
            .to_str()
            .expect("ascii")
            .to_string();

        let br = get("/", &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(br.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(br.headers()[header::VARY], "accept-encoding");

        let gz = get("/", &[("accept-encoding", "gzip")]).await;
        assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");

        let mut request = Request::get("/");
        request = request.header("if-none-match", tag.as_str());
        let cached = router()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn vendor_files_are_versioned_and_immutable() {
        for name in [
            "bootstrap.min.css",
            "bootstrap.bundle.min.js",
            "chart.umd.min.js",
        ] {
            let response = get(&vendor_path(name), &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(
                response.headers()[header::CACHE_CONTROL],
                IMMUTABLE,
                "{name}"
            );
        }
        let css = get(&vendor_path("bootstrap.min.css"), &[]).await;
        assert_eq!(
            css.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn index_references_only_embedded_files() {
        let body = axum::body::to_bytes(get("/", &[]).await.into_body(), 1 << 20)
            .await
            .expect("body");
        let html = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(!html.contains("%VENDOR%"));
        assert!(!html.contains("http://") && !html.contains("https://"));
        for piece in html.split("/assets/").skip(1) {
            let path = piece.split('"').next().expect("quoted");
            assert!(Dashboard::get(path).is_some(), "{path} is not embedded");
        }
    }

    #[tokio::test]
    async fn unknown_files_and_compressed_twins_are_not_found() {
        assert_eq!(
            get("/assets/nope.js", &[]).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/assets/app.js.br", &[]).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
