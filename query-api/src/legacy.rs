//! The older emoji-broadcast API, mapped onto filters so its clients work unchanged:
//! `POST /register` makes a filter for a client (from the filter fields it sends, every event
//! without any), `DELETE /deregister` deletes it, `GET /clients` lists them, and the client's
//! broadcast is `GET /clients/{client_id}/stream`.

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::filter_store::StoredFilter;
use crate::filters::{filters_of, json_object, spec_of, wait_for_backfill, Filters};
use crate::state::AppState;

/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// The filter fields a registration may carry (anything else the older clients send is
/// ignored).
const FILTER_FIELDS: [&str; 6] = [
    "event_types",
    "emojis",
    "tiers",
    "user_ids",
    "min_amount",
    "max_amount",
];

fn client_id(fields: &Map<String, Value>) -> Result<String, ApiError> {
    match fields.get("client_id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_CLIENT_ID_BYTES => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(ApiError::bad_request(
            format!("client_id must be a string of 1..={MAX_CLIENT_ID_BYTES} bytes"),
            json!({ "field": "client_id", "value": other }),
        )),
        None => Err(ApiError::bad_request(
            "client_id is required",
            json!({ "field": "client_id" }),
        )),
    }
}

/// The filter fields of a registration: at the top level, or in a `filters` (or `filter`)
/// object.
fn filter_fields(fields: &Map<String, Value>) -> Map<String, Value> {
    let nested = ["filters", "filter"]
        .iter()
        .find_map(|k| fields.get(*k).and_then(Value::as_object));
    let source = nested.unwrap_or(fields);
    source
        .iter()
        .filter(|(k, _)| FILTER_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn client_view(f: &StoredFilter, filters: &Filters) -> Value {
    json!({
        "client_id": f.client_id,
        "filter_id": f.id,
        "filter": f.spec,
        "registered_ms": f.created_ms,
        "connected": filters.hub().subscribers_of(&f.id),
        "stream": format!("/clients/{}/stream", f.client_id.as_deref().unwrap_or_default()),
    })
}

/// `POST /register`: `{"client_id", ...filter fields}` -> 201 (200 when the client was
/// registered already: its filter is replaced).
#[utoipa::path(
    post,
    path = "/register",
    tag = "older API",
    summary = "Registers a client of the older broadcast API with a filter (its fields at the top level or under `filters`)",
    request_body(content = crate::api_doc::RegisterRequest, content_type = "application/json"),
    responses((status = 201, description = "Registered", body = crate::api_doc::ClientDoc), (status = 200, description = "Registered again: its filter replaced", body = crate::api_doc::ClientDoc), (status = 400, description = "A field is wrong (named in `detail.field`)", body = crate::api_doc::ErrorBody), (status = 401, description = "A token is set and none was given", body = crate::api_doc::ErrorBody), (status = 403, description = "The token is wrong", body = crate::api_doc::ErrorBody), (status = 415, description = "The body is not declared `application/json`", body = crate::api_doc::ErrorBody), (status = 503, description = "This service has no filters", body = crate::api_doc::ErrorBody))
)]
pub async fn register(
    State(app): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    app.authorize(&headers)?;
    let filters = filters_of(&app)?;
    let fields = json_object(request).await?;
    let client = client_id(&fields)?;
    let spec = spec_of(filter_fields(&fields))?;
    let existing = filters.of_client(&client).await?;
    if let Some(old) = &existing {
        filters.delete(&old.id).await?;
    }
    let filter = filters
        .create(None, None, spec, Some(client.clone()))
        .await?;
    wait_for_backfill(&app, filters, &filter.id).await;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut body = client_view(&filter, filters);
    if let Value::Object(map) = &mut body {
        map.insert("status".into(), "registered".into());
    }
    Ok((status, Json(body)).into_response())
}

/// `?client_id=` of `DELETE /deregister`.
#[derive(Debug, Default, Deserialize)]
pub struct DeregisterParams {
    /// The client.
    pub client_id: Option<String>,
}

/// `DELETE /deregister`: the client from the query (`?client_id=`) or a JSON body.
#[utoipa::path(
    delete,
    path = "/deregister",
    tag = "older API",
    summary = "Removes a client (`?client_id=` or a JSON body `{\"client_id\"}`)",
    params(("client_id" = Option<String>, Query, description = "The client (else in the body)")),
    responses((status = 200, description = "Removed", body = crate::api_doc::DeregisteredDoc), (status = 400, description = "No client named", body = crate::api_doc::ErrorBody), (status = 401, description = "A token is set and none was given", body = crate::api_doc::ErrorBody), (status = 403, description = "The token is wrong", body = crate::api_doc::ErrorBody), (status = 404, description = "No such client", body = crate::api_doc::ErrorBody), (status = 415, description = "The body is not declared `application/json`", body = crate::api_doc::ErrorBody), (status = 503, description = "This service has no filters", body = crate::api_doc::ErrorBody))
)]
pub async fn deregister(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<DeregisterParams>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    app.authorize(&headers)?;
    let filters = filters_of(&app)?;
    let has_body = request
        .headers()
        .contains_key(axum::http::header::CONTENT_TYPE)
        || request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let client = match params.client_id {
        Some(c) => c,
        None if has_body => client_id(&json_object(request).await?)?,
        None => {
            return Err(ApiError::bad_request(
                "client_id is required: ?client_id= or a JSON body {\"client_id\"}",
                json!({ "field": "client_id" }),
            ))
        }
    };
    let Some(filter) = filters.of_client(&client).await? else {
        return Err(ApiError::not_found(format!(
            "no registered client {client:?}"
        )));
    };
    filters.delete(&filter.id).await?;
    Ok(Json(
        json!({ "status": "deregistered", "client_id": client }),
    ))
}

/// `GET /clients`: the registered clients.
#[utoipa::path(
    get,
    path = "/clients",
    tag = "older API",
    summary = "The registered clients",
    responses((status = 200, description = "The clients", body = crate::api_doc::ClientListDoc), (status = 503, description = "This service has no filters", body = crate::api_doc::ErrorBody))
)]
pub async fn clients(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let filters = filters_of(&app)?;
    let all: Vec<Value> = filters
        .list()
        .await?
        .iter()
        .filter(|f| f.client_id.is_some())
        .map(|f| client_view(f, filters))
        .collect();
    Ok(Json(json!({ "total": all.len(), "clients": all })))
}
