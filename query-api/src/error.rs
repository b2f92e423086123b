//! Errors as docs/http-api.md shapes them: a status and `{"error": "...", "detail": ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, in a sentence.
    pub error: String,
    /// Machine-readable specifics (`null` when there are none).
    pub detail: Value,
    /// Seconds for a `Retry-After` header, when the client should come back.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// 400: the request is wrong.
    pub fn bad_request(error: impl Into<String>, detail: Value) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            detail,
            retry_after: None,
        }
    }

    /// 404: nothing there.
    pub fn not_found(error: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: error.into(),
            detail: Value::Null,
            retry_after: None,
        }
    }

    /// Any other status.
    pub fn new(status: StatusCode, error: impl Into<String>, detail: Value) -> Self {
        ApiError {
            status,
            error: error.into(),
            detail,
            retry_after: None,
        }
    }
}

impl ApiError {
    /// Adds `Retry-After: secs`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "detail": self.detail });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// A query parameter that must be a duration (`10s`, `5m`, `500ms`), in ms.
pub fn duration_param(name: &str, value: &str) -> Result<i64, ApiError> {
    let d = humantime::parse_duration(value).map_err(|e| {
        ApiError::bad_request(
            format!("{name} must be a duration such as 10s or 5m"),
            json!({ "parameter": name, "value": value, "reason": e.to_string() }),
        )
    })?;
    i64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                format!("{name} must be positive and not absurdly long"),
                json!({ "parameter": name, "value": value }),
            )
        })
}
