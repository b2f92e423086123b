//! `GET /` and its assets: the live dashboard, a plain HTML, CSS and JavaScript page compiled
//! into the binary (no build step, no outside request), fed by `GET /stream`.
//!
//! For work on the page itself, `EMOFLOW_DASHBOARD_DIR=query-api/assets` serves the files from
//! that folder on every request instead, so a reload shows an edit without a rebuild.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One embedded file: its name under `/assets/`, its type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("../assets/index.html"),
};

const ASSETS: [Asset; 2] = [
    Asset {
        name: "dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/dashboard.css"),
    },
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/dashboard.js"),
    },
];

/// What the pages may load: only this service, and no framing by another site.
pub const PAGE_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The environment variable naming a folder to serve the page from instead.
pub const DEV_DIR_VAR: &str = "EMOFLOW_DASHBOARD_DIR";

fn respond(asset: &Asset) -> Response {
    let body = std::env::var_os(DEV_DIR_VAR)
        .and_then(|dir| std::fs::read_to_string(std::path::Path::new(&dir).join(asset.name)).ok())
        .unwrap_or_else(|| asset.body.to_owned());
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The page's buttons write with the user's token: no other site may frame it.
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the dashboard.
#[utoipa::path(
    get,
    path = "/",
    tag = "service",
    summary = "The live dashboard (HTML, fed by `GET /stream`)",
    responses((status = 200, description = "The page", body = String, content_type = "text/html"))
)]
pub async fn index() -> Response {
    respond(&INDEX)
}

/// `GET /assets/{name}`: the dashboard's stylesheet and script.
#[utoipa::path(
    get,
    path = "/assets/{name}",
    tag = "service",
    summary = "The dashboard's stylesheet and script",
    params(("name" = String, Path, description = "`dashboard.css` or `dashboard.js`")),
    responses((status = 200, description = "The file", body = String, content_type = "text/plain"), (status = 404, description = "No such asset", body = crate::api_doc::ErrorBody))
)]
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => respond(a),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no asset named {name:?}"),
            serde_json::Value::Null,
        )
        .into_response(),
    }
}
