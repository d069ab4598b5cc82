//! Avatars: upload (`PUT /api/me/avatar`) and serving
//! (`GET /api/users/{id}/avatar`).

mod initials;
mod process;

pub use process::{AVATAR_SIZE, AvatarError, MAX_DIMENSION, make_avatar};

use crate::auth::{CurrentUser, Me};
use crate::db::Avatar;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::hash::{Hash, Hasher};

/// `PUT /api/me/avatar`: the body is the image file itself.
pub async fn upload(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Me>> {
    let limit = usize::try_from(state.config.limits.max_upload_bytes).unwrap_or(usize::MAX);
    let too_large = || ApiError::TooLarge {
        code: "upload_too_large",
        message: format!("uploads are limited to {limit} bytes"),
    };
    // Refuse early when the client announces an oversized body.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty_upload",
            "the request body is empty",
        ));
    }
    let jpeg = state
        .cpu
        .run(move || process::make_avatar(&bytes))
        .await?
        .map_err(|e| match e {
            AvatarError::NotAnImage => ApiError::UnsupportedMediaType(e.to_string()),
            AvatarError::TooLarge => ApiError::TooLarge {
                code: "image_too_large",
                message: e.to_string(),
            },
            AvatarError::Corrupt => ApiError::bad_request("corrupt_image", e.to_string()),
            AvatarError::Encode(m) => ApiError::Internal(anyhow::anyhow!(m)),
        })?;
    let avatar = Avatar {
        content_type: "image/jpeg".into(),
        etag: etag(&jpeg),
        data: jpeg,
    };
    state.db.set_avatar(user.id, &avatar).await?;
    let user = state
        .db
        .user_by_id(user.id)
        .await?
        .ok_or(ApiError::Unauthorized("not logged in"))?;
    tracing::info!(
        user_id = user.id,
        bytes = avatar.data.len(),
        "avatar updated"
    );
    Ok(Json(Me::from(&user)))
}

/// Query of the avatar URL: `v` is the avatar version the link was made for.
#[derive(Deserialize)]
pub struct AvatarQuery {
    v: Option<i64>,
}

/// `GET /api/users/{id}/avatar`: the uploaded JPEG, or generated initials.
pub async fn serve(
    State(state): State<AppState>,
    _viewer: CurrentUser,
    Path(user_id): Path<i64>,
    Query(query): Query<AvatarQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let user = state
        .db
        .user_by_id(user_id)
        .await?
        .ok_or(ApiError::NotFound("no such user"))?;
    let (content_type, body, tag) = match state.db.avatar(user_id).await? {
        Some(a) => (a.content_type, a.data, a.etag),
        None => {
            let svg = initials::svg(user.id, &user.display_name).into_bytes();
            let tag = etag(&svg);
            ("image/svg+xml".to_string(), svg, tag)
        }
    };
    // A URL naming the current version never changes content; others may.
    let cache = if query.v == Some(user.avatar_version) {
        "private, max-age=31536000, immutable"
    } else {
        "private, no-cache"
    };
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).map_err(anyhow::Error::from)?,
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&tag).map_err(anyhow::Error::from)?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    // An SVG opened directly must not run anything.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    );
    Ok(response)
}

/// A strong validator: a hash of the exact bytes served.
fn etag(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("\"{:016x}-{:x}\"", h.finish(), bytes.len())
}
