//! The plain-HTTP listener of `http.redirect_bind`: every request is sent on
//! to the https origin with a permanent redirect, except ACME HTTP-01
//! challenges (`/.well-known/acme-challenge/TOKEN`), which are served from
//! `http.acme_webroot` when set, so `certbot --webroot` can renew while
//! Zync holds port 80.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::path::PathBuf;
use std::sync::Arc;

/// Longest ACME token accepted (Let's Encrypt's are 43 characters).
const MAX_TOKEN: usize = 128;

struct Redirect {
    /// `https://host[:port]`, no trailing slash.
    origin: String,
    webroot: Option<PathBuf>,
}

/// The redirect listener's routes: ACME challenges from `webroot` (if any),
/// a 308 to the same path and query under `origin` for everything else.
pub fn router(origin: String, webroot: Option<PathBuf>) -> Router {
    let state = Arc::new(Redirect { origin, webroot });
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(redirect)
        .with_state(state)
}

async fn redirect(State(to): State<Arc<Redirect>>, uri: Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    // The target is built from the configured origin, never from the
    // request's Host header, so this cannot redirect anywhere else.
    let location = format!("{}{path}", to.origin);
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn challenge(
    State(to): State<Arc<Redirect>>,
    Path(token): Path<String>,
    uri: Uri,
) -> Response {
    let Some(webroot) = &to.webroot else {
        return redirect(State(to.clone()), uri).await;
    };
    // Tokens are base64url; anything else (a `..`, a slash) is refused.
    let valid = !token.is_empty()
        && token.len() <= MAX_TOKEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return StatusCode::NOT_FOUND.into_response();
    }
    let file = webroot
        .join(".well-known")
        .join("acme-challenge")
        .join(&token);
    match tokio::fs::read(&file).await {
        Ok(body) if body.len() <= 4096 => (
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            body,
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
