//! `GET /api/ice-servers`: the TURN servers a signed-in browser may use,
//! with short-lived credentials of the TURN REST API scheme
//! (draft-uberti-behave-turn-rest, what coturn's `use-auth-secret` checks):
//! the username is `EXPIRY:USER_ID` (a Unix time), the password
//! `base64(HMAC-SHA1(turn.secret, username))`. The TURN server needs only
//! the shared secret; nothing is stored, and a leaked credential stops
//! working at its expiry.

use crate::auth::CurrentUser;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct IceServer {
    /// `turn:` / `turns:` URLs sharing these credentials.
    pub urls: Vec<String>,
    /// `EXPIRY:USER_ID`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub credential: String,
}

/// Body of `GET /api/ice-servers`.
#[derive(Debug, Serialize)]
pub struct IceServers {
    /// Empty when no TURN server is configured: browsers then reach the
    /// SFU directly or not at all.
    pub ice_servers: Vec<IceServer>,
    /// Unix time at which the credentials stop working (0 without TURN);
    /// ask again before then.
    pub expires_at: u64,
}

/// `GET /api/ice-servers`.
pub async fn ice_servers(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Json<IceServers> {
    let turn = &state.config.turn;
    if !turn.enabled() {
        return Json(IceServers {
            ice_servers: Vec::new(),
            expires_at: 0,
        });
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires_at = now + u64::from(turn.credential_ttl_secs);
    Json(IceServers {
        ice_servers: vec![credentials(&turn.urls, &turn.secret, user.id, expires_at)],
        expires_at,
    })
}

/// The REST-API credentials for `user_id` until `expires_at`.
pub fn credentials(urls: &[String], secret: &str, user_id: i64, expires_at: u64) -> IceServer {
    let username = format!("{expires_at}:{user_id}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    IceServer {
        urls: urls.to_vec(),
        username,
        credential,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Expected value computed independently with Python's hmac module.
        let server = credentials(
            &["turn:127.0.0.1:3478".to_string()],
            "0123456789abcdef-secret",
            42,
            1_767_225_600,
        );
        assert_eq!(server.username, "1767225600:42");
        assert_eq!(server.credential, "iM778DAKatGKT1kNKwxY90Z+C9o=");
    }
}
