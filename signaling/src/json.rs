//! JSON request bodies whose rejections use the API's error format.

use crate::error::ApiError;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;

/// Like `axum::Json`, but a malformed body answers
/// `{"error": {"code": "invalid_json", ...}}` instead of plain text.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected a JSON body with Content-Type: application/json".into(),
            ),
            other => ApiError::bad_request("invalid_json", other.body_text()),
        }
    }
}
