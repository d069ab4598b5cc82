//! Accounts: register, login, logout, the current user, and the extractor
//! that guards every other route.

mod password;
mod throttle;

pub use password::Passwords;
pub use throttle::{AddressQuota, LoginThrottle};

use crate::client_ip::ClientIp;
use crate::db::{NewUser, User, rfc3339};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

/// Session key holding the logged-in user's id.
const USER_ID_KEY: &str = "user_id";

/// Bounds on account fields.
const USERNAME_LEN: std::ops::RangeInclusive<usize> = 3..=32;
const DISPLAY_NAME_MAX_CHARS: usize = 64;
const PASSWORD_MIN_CHARS: usize = 8;
/// Hashing cost grows with length; refuse absurd passwords up front.
const PASSWORD_MAX_BYTES: usize = 1024;

/// The logged-in user, as the API shows it to themselves.
#[derive(Debug, Serialize)]
pub struct Me {
    id: i64,
    username: String,
    display_name: String,
    avatar_url: String,
    created_at: String,
}

impl From<&User> for Me {
    fn from(u: &User) -> Self {
        Me {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            avatar_url: u.avatar_url(),
            created_at: rfc3339(u.created_at),
        }
    }
}

/// How a user appears to others (participants, chat authors, creators).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PublicUser {
    /// User id.
    pub id: i64,
    /// Shown name.
    pub display_name: String,
    /// Where to fetch the avatar.
    pub avatar_url: String,
}

impl From<&User> for PublicUser {
    fn from(u: &User) -> Self {
        PublicUser {
            id: u.id,
            display_name: u.display_name.clone(),
            avatar_url: u.avatar_url(),
        }
    }
}

/// The user behind the request's session; rejects with 401 when there is
/// none. Put it in a handler's arguments to require a login.
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("session layer missing")))?;
        user_from_session(state, &session).await.map(CurrentUser)
    }
}

/// The user logged in on `session`, or 401.
pub async fn user_from_session(state: &AppState, session: &Session) -> ApiResult<User> {
    let id: Option<i64> = session.get(USER_ID_KEY).await?;
    let Some(id) = id else {
        return Err(ApiError::Unauthorized("not logged in"));
    };
    match state.db.user_by_id(id).await? {
        Some(user) => Ok(user),
        None => {
            // The account is gone; the session is worthless.
            session.flush().await?;
            Err(ApiError::Unauthorized("not logged in"))
        }
    }
}

/// Body of `POST /api/auth/register`.
#[derive(Deserialize)]
pub struct RegisterRequest {
    username: String,
    display_name: String,
    password: String,
}

/// Body of `POST /api/auth/login`.
#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

fn validate_username(username: &str) -> ApiResult<()> {
    let ok_chars = username
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let ok_start = username
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    if !USERNAME_LEN.contains(&username.len()) || !ok_chars || !ok_start {
        return Err(ApiError::bad_request(
            "invalid_username",
            "username must be 3 to 32 characters: letters, digits, '.', '_' or '-', starting with a letter or digit",
        ));
    }
    Ok(())
}

/// Trims and checks a display name; returns the cleaned name.
pub fn clean_display_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > DISPLAY_NAME_MAX_CHARS {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            format!("display name must be 1 to {DISPLAY_NAME_MAX_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "display name must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

fn validate_password(password: &str) -> ApiResult<()> {
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(ApiError::bad_request(
            "weak_password",
            format!("password must be at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(ApiError::bad_request(
            "invalid_password",
            "password is too long",
        ));
    }
    Ok(())
}

/// Starts a fresh session for `user`; a new id defeats session fixation.
async fn log_in(session: &Session, user: &User) -> ApiResult<()> {
    session.cycle_id().await?;
    session.insert(USER_ID_KEY, user.id).await?;
    Ok(())
}

/// `POST /api/auth/register`: creates an account and logs it in.
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    let username = req.username.trim();
    validate_username(username)?;
    let display_name = clean_display_name(&req.display_name)?;
    validate_password(&req.password)?;
    // Counted once the request is valid (before the costly hash).
    state
        .registrations
        .take(ip)
        .map_err(ApiError::TooManyRequests)?;
    let taken = || ApiError::Conflict {
        code: "username_taken",
        message: "that username is taken".into(),
    };
    // Cheap early answer; the unique index below is what really decides.
    if state.db.user_by_username(username).await?.is_some() {
        return Err(taken());
    }
    let hash = state.passwords.hash(req.password).await?;
    let user = state
        .db
        .create_user(NewUser {
            username,
            display_name: &display_name,
            password_hash: &hash,
        })
        .await?
        .ok_or_else(taken)?;
    log_in(&session, &user).await?;
    tracing::info!(user_id = user.id, "account registered");
    Ok((StatusCode::CREATED, Json(Me::from(&user))))
}

/// `POST /api/auth/login`: checks credentials (throttled) and logs in.
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    session: Session,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<Me>> {
    let username = req.username.trim();
    if let Some(wait) = state.throttle.check(username, ip) {
        return Err(ApiError::TooManyRequests(wait));
    }
    // Guessing at one account from many addresses slows every attempt at
    // it down; nobody is locked out of their own account.
    let slowdown = state.throttle.slowdown(username);
    if !slowdown.is_zero() {
        tokio::time::sleep(slowdown).await;
    }
    let user = if username.len() <= *USERNAME_LEN.end() && req.password.len() <= PASSWORD_MAX_BYTES
    {
        state.db.user_by_username(username).await?
    } else {
        None
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let ok = state.passwords.verify(req.password, hash).await?;
    match user {
        Some(user) if ok => {
            state.throttle.succeeded(username, ip);
            log_in(&session, &user).await?;
            Ok(Json(Me::from(&user)))
        }
        _ => {
            state.throttle.failed(username, ip);
            tracing::info!(%ip, "failed login");
            // Same answer for unknown user and wrong password.
            Err(ApiError::Unauthorized("wrong username or password"))
        }
    }
}

/// `POST /api/auth/logout`: destroys the session server-side and closes its
/// WebSockets.
pub async fn logout(State(state): State<AppState>, session: Session) -> ApiResult<StatusCode> {
    let id = session.id();
    session.flush().await?;
    // The session's open WebSockets close with it.
    if let Some(id) = id {
        state.sockets.end(&id.to_string());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/me`.
pub async fn me(CurrentUser(user): CurrentUser) -> Json<Me> {
    Json(Me::from(&user))
}

/// Body of `PATCH /api/me`.
#[derive(Deserialize)]
pub struct UpdateMe {
    display_name: Option<String>,
}

/// `PATCH /api/me`: changes the display name.
pub async fn update_me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(req): ApiJson<UpdateMe>,
) -> ApiResult<Json<Me>> {
    let Some(name) = req.display_name else {
        return Ok(Json(Me::from(&user)));
    };
    let name = clean_display_name(&name)?;
    state.db.set_display_name(user.id, &name).await?;
    let user = state
        .db
        .user_by_id(user.id)
        .await?
        .ok_or(ApiError::Unauthorized("not logged in"))?;
    Ok(Json(Me::from(&user)))
}
