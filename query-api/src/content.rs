//! What a request body must declare: the content types each write route takes, and the errors
//! every route gives alike (415 for any other type, one message for an empty body).

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::json;

use crate::error::ApiError;

/// How a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON value (an object, or for batches an array of objects).
    Json,
    /// One JSON object a line.
    Ndjson,
}

/// The media types read as NDJSON.
pub const NDJSON_TYPES: [&str; 4] = [
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
];

/// Which framings a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// `application/json` only.
    Json,
    /// `application/json` or one of [`NDJSON_TYPES`].
    JsonOrNdjson,
}

impl Accepts {
    fn expected(self) -> &'static str {
        match self {
            Accepts::Json => "Content-Type: application/json",
            Accepts::JsonOrNdjson => {
                "Content-Type: application/json (one event or an array) or application/x-ndjson (one event a line)"
            }
        }
    }
}

/// The framing `headers` declare, or 415 naming what the route takes. A missing type is
/// refused too: `curl -d` sends a form type unless told otherwise, and guessing would hide the
/// mistake.
pub fn framing(headers: &HeaderMap, accepts: Accepts) -> Result<Framing, ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase());
    let mime = declared
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    let framing = match mime {
        "application/json" => Some(Framing::Json),
        m if accepts == Accepts::JsonOrNdjson && NDJSON_TYPES.contains(&m) => Some(Framing::Ndjson),
        _ => None,
    };
    framing.ok_or_else(|| {
        let error = match &declared {
            None => format!(
                "the request has no Content-Type; send {}",
                accepts.expected()
            ),
            Some(_) => format!("{mime:?} is not taken here; send {}", accepts.expected()),
        };
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error,
            json!({ "content_type": declared }),
        )
    })
}

/// The 400 for a body with nothing in it, the same on every ingest route.
pub fn empty_body() -> ApiError {
    ApiError::bad_request(
        "the body is empty: send one JSON event, a JSON array of events, or NDJSON (one event a line); nothing was produced",
        json!({ "reason": "empty_body" }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(ct: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        h
    }

    #[test]
    fn json_and_ndjson_are_taken_and_the_rest_gets_415() {
        let ok = framing(
            &with(Some("application/json; charset=utf-8")),
            Accepts::Json,
        );
        assert_eq!(ok.unwrap(), Framing::Json);
        let nd = framing(&with(Some("Application/X-NDJSON")), Accepts::JsonOrNdjson);
        assert_eq!(nd.unwrap(), Framing::Ndjson);
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/octet-stream"),
            Some(""),
        ] {
            let e = framing(&with(ct), Accepts::JsonOrNdjson).unwrap_err();
            assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
            assert!(e.error.contains("application/json"), "{}", e.error);
        }
        let e = framing(&with(Some("application/x-ndjson")), Accepts::Json).unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
