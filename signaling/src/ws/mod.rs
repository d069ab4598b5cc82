//! The signaling WebSocket (`GET /ws`): upgrade checks and the per-connection
//! loop. Each connection is one task that reads client messages, writes
//! what its room queues for it, and pings to notice dead peers.

mod connection;
pub mod protocol;
pub mod rate;
pub mod sessions;

use crate::auth::user_from_session;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use tower_sessions::Session;

/// Bytes read from the socket at a time, per connection.
const WS_READ_BUFFER: usize = 8 * 1024;
/// Bytes of outgoing frames gathered before writing, per connection.
const WS_WRITE_BUFFER: usize = 8 * 1024;

/// The largest `signal` message accepted: the SDP limit plus room for the
/// JSON around it (type, track labels, reference).
pub(crate) fn signal_limit(limits: &zync_config::LimitsConfig) -> usize {
    limits.max_sdp_bytes as usize + 16 * 1024
}

/// `GET /ws`: requires an allowed `Origin` (403) and a session (401).
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin.is_some_and(|o| {
        state
            .allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(o))
    }) {
        tracing::warn!(origin = ?origin, "WebSocket refused: origin not allowed");
        return Err(ApiError::Forbidden("origin not allowed"));
    }
    let user = user_from_session(&state, &session).await?;
    let max_sockets = state.config.limits.max_sockets_per_user as usize;
    let Some(slot) = state.user_limits.open_socket(user.id, max_sockets) else {
        return Err(ApiError::TooManyOpen(
            "too many open connections for this account (limits.max_sockets_per_user)",
        ));
    };
    let session_ended = session.id().map(|id| state.sockets.watch(&id.to_string()));
    let upgrade = upgrade.map_err(|e| ApiError::bad_request("not_websocket", e.body_text()))?;
    // Frames past the hard cap close the connection (tungstenite refuses to
    // buffer them); anything between the configured limit and the cap is
    // answered with an error and the connection stays open.
    let limits = &state.config.limits;
    let soft_limit = (limits.max_ws_message_bytes as usize).max(signal_limit(limits));
    let hard_cap = (soft_limit * 4).max(1 << 20);
    Ok(upgrade
        .max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        // tungstenite's default 128 KiB read buffer per connection was the
        // largest piece of a participant's memory; messages are small and
        // larger ones still arrive (the buffer is per read, not a limit).
        .read_buffer_size(WS_READ_BUFFER)
        // Written at once past this size; with the vendored tungstenite
        // patch, buffers a large message (an SDP for dozens of tracks) grew
        // are given back afterwards instead of kept per connection.
        .write_buffer_size(WS_WRITE_BUFFER)
        .on_upgrade(move |socket| connection::run(socket, state, user, session_ended, slot)))
}
