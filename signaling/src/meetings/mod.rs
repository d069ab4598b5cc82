//! Meetings: create, look up, list mine, and read chat history.

pub mod slug;
mod words;

use crate::auth::{CurrentUser, PublicUser};
use crate::client_ip::ClientIp;
use crate::db::{ChatMessage, Meeting, rfc3339};
use crate::error::{ApiError, ApiResult};
use crate::json::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

/// Longest meeting title, in characters.
const TITLE_MAX_CHARS: usize = 100;
/// Tries at drawing an unused slug before giving up (a collision among
/// 2^40 is already unlikely; five in a row means something else is wrong).
const SLUG_ATTEMPTS: usize = 5;
/// Meetings listed by `GET /api/meetings`.
const LIST_LIMIT: i64 = 50;
/// Default and largest page of chat history.
const HISTORY_DEFAULT: i64 = 50;
const HISTORY_MAX: i64 = 200;

/// A meeting as the API shows it.
#[derive(Debug, Serialize)]
pub struct MeetingView {
    slug: String,
    url: String,
    title: String,
    created_by: CreatorView,
    created_at: String,
    /// People in the meeting right now.
    participant_count: usize,
}

#[derive(Debug, Serialize)]
struct CreatorView {
    id: i64,
    display_name: String,
}

impl MeetingView {
    fn new(state: &AppState, m: Meeting) -> Self {
        MeetingView {
            url: format!("{}/{}", state.config.public_origin(), m.slug),
            participant_count: state.rooms.participant_count(&m.slug),
            slug: m.slug,
            title: m.title,
            created_by: CreatorView {
                id: m.created_by,
                display_name: m.created_by_name,
            },
            created_at: rfc3339(m.created_at),
        }
    }
}

/// A chat message as the API and the WebSocket show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatView {
    /// Message id, increasing.
    pub id: i64,
    /// The author.
    pub user: PublicUser,
    /// The text, to be rendered as text.
    pub text: String,
    /// RFC 3339 time it was stored.
    pub sent_at: String,
    /// A line the meeting recorded about a host action (`user` is the
    /// host), not a message someone wrote. Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
}

impl From<&ChatMessage> for ChatView {
    fn from(m: &ChatMessage) -> Self {
        ChatView {
            id: m.id,
            user: PublicUser {
                id: m.user_id,
                display_name: m.display_name.clone(),
                avatar_url: format!("/api/users/{}/avatar?v={}", m.user_id, m.avatar_version),
            },
            text: m.text.clone(),
            sent_at: rfc3339(m.sent_at),
            system: m.system,
        }
    }
}

/// Body of `POST /api/meetings`.
#[derive(Deserialize, Default)]
pub struct CreateMeeting {
    title: Option<String>,
}

/// `POST /api/meetings`: creates a meeting with a fresh slug.
pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<CreateMeeting>,
) -> ApiResult<(StatusCode, Json<MeetingView>)> {
    state
        .meeting_creations
        .take(ip)
        .map_err(ApiError::TooManyRequests)?;
    let title = body.title.unwrap_or_default();
    let title = title.trim();
    if title.chars().count() > TITLE_MAX_CHARS || title.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_title",
            format!(
                "title must be at most {TITLE_MAX_CHARS} characters, without control characters"
            ),
        ));
    }
    for _ in 0..SLUG_ATTEMPTS {
        let slug = slug::generate();
        if let Some(meeting) = state.db.create_meeting(&slug, title, user.id).await? {
            tracing::info!(user_id = user.id, slug = %meeting.slug, "meeting created");
            return Ok((StatusCode::CREATED, Json(MeetingView::new(&state, meeting))));
        }
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "could not draw an unused slug"
    )))
}

/// Looks up a meeting by slug, answering 404 for anything unknown.
pub async fn find(state: &AppState, slug: &str) -> ApiResult<Meeting> {
    if !slug::looks_valid(slug) {
        return Err(ApiError::NotFound("no such meeting"));
    }
    state
        .db
        .meeting_by_slug(slug)
        .await?
        .ok_or(ApiError::NotFound("no such meeting"))
}

/// `GET /api/meetings/{slug}`.
pub async fn get(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(slug): Path<String>,
) -> ApiResult<Json<MeetingView>> {
    let meeting = find(&state, &slug).await?;
    Ok(Json(MeetingView::new(&state, meeting)))
}

/// Response of `GET /api/meetings`.
#[derive(Serialize)]
pub struct MeetingList {
    meetings: Vec<MeetingView>,
}

/// `GET /api/meetings`: meetings I created or joined, most recent first.
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Json<MeetingList>> {
    let meetings = state.db.meetings_of(user.id, LIST_LIMIT).await?;
    let meetings = meetings
        .into_iter()
        .map(|m| MeetingView::new(&state, m))
        .collect();
    Ok(Json(MeetingList { meetings }))
}

/// Query of the history endpoint.
#[derive(Deserialize)]
pub struct HistoryQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

/// Response of the history endpoint.
#[derive(Serialize)]
pub struct HistoryPage {
    messages: Vec<ChatView>,
    /// Whether older messages exist (ask again with `before` = last id).
    has_more: bool,
}

/// `GET /api/meetings/{slug}/messages?before=ID&limit=N`: newest first.
pub async fn history(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(slug): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<HistoryPage>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(HISTORY_DEFAULT);
    if !(1..=HISTORY_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {HISTORY_MAX}"),
        ));
    }
    let meeting = find(&state, &slug).await?;
    let page = state.db.chat_page(meeting.id, query.before, limit).await?;
    Ok(Json(HistoryPage {
        messages: page.messages.iter().map(ChatView::from).collect(),
        has_more: page.has_more,
    }))
}
