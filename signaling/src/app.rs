//! The HTTP router: every route, and the layers around them.

use crate::error::ApiError;
use crate::state::AppState;
use crate::{auth, avatar, meetings, turn, ws};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post, put};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::cookie::time::Duration;
use tower_sessions::{Expiry, SessionManagerLayer};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "zync_session";
/// Largest JSON body the API reads (avatars have their own limit).
const JSON_BODY_LIMIT: usize = 64 * 1024;

/// Builds the router over `state` with the session store `sessions`.
pub fn router(state: AppState, sessions: crate::db::SessionStore) -> Router {
    let session_layer = SessionManagerLayer::new(sessions)
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.is_https())
        .with_expiry(Expiry::OnInactivity(Duration::days(
            state.config.auth.session_days.into(),
        )));

    let api = Router::new()
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(auth::me).patch(auth::update_me))
        .route("/me/avatar", put(avatar::upload))
        .route("/users/{id}/avatar", get(avatar::serve))
        .route("/meetings", post(meetings::create).get(meetings::list))
        .route("/meetings/{slug}", get(meetings::get))
        .route("/meetings/{slug}/messages", get(meetings::history))
        .route("/ice-servers", get(turn::ice_servers))
        .route("/cluster", get(crate::cluster::view))
        .fallback(|| async { ApiError::NotFound("no such API route") })
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));

    let hsts = state.config.http.tls_enabled().then(|| {
        // A year, the common choice; subdomains are left alone, since they
        // may be other services of the operator's that are not on https.
        SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        )
    });
    Router::new()
        .nest("/api", api)
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(health))
        .route("/metrics", get(crate::metrics::render))
        .fallback(get(crate::web::serve))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(session_layer)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(tower::util::option_layer(hsts))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `GET /healthz`: the process is up and the database answers.
async fn health(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<&'static str, ApiError> {
    state.db.ping().await?;
    Ok("ok")
}
