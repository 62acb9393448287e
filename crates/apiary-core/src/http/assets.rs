//! The dashboard's static files (`dashboard/` at the repository root), embedded in the binary
//! with `include_bytes!`: plain HTML, CSS and JavaScript, no bundler, nothing fetched at build
//! or run time.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &[u8] = include_bytes!("../../../../dashboard/index.html");

/// Every file under `/assets/`: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../../../dashboard/app.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../../../dashboard/style.css")),
    (
        "world.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../../dashboard/world.js"),
    ),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../../../dashboard/favicon.svg")),
];

/// Only our own scripts and styles run; attacker strings shown on the pages are text, and this
/// policy stops them even if a rendering bug ever let one through as markup.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
                   form-action 'self'";

fn with_headers(body: &'static [u8], content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

pub(crate) async fn index() -> Response {
    with_headers(INDEX, "text/html; charset=utf-8")
}

pub(crate) async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => with_headers(body, ct),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
