//! Filters as data: the routes `POST/GET/DELETE /filters` and `GET /filters/{id}/matches`
//! over the service's [`Filters`] (kept, counted and delivered as one).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use emoflow_dataflow::FilterSpec;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::content::{self, Accepts};
use crate::error::ApiError;
pub use crate::filter_service::{check_id, Filters, DEFAULT_MAX_FILTERS, MAX_ID_BYTES};
use crate::filter_store::StoredFilter;
use crate::state::AppState;

/// Largest body of a filter request.
const FILTER_BODY_LIMIT: usize = 1 << 20;

/// How long `POST /filters` waits for the new filter's back-fill before answering without it.
pub const BACKFILL_WAIT: Duration = Duration::from_secs(10);

/// The service's filters; 503 for a service without them (filters, push and clients).
pub(crate) fn filters_of(app: &AppState) -> Result<&Filters, ApiError> {
    app.filters().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "filters, live push and clients are not available in this service",
            Value::Null,
        )
    })
}

/// Reads a JSON object body of at most 1 MiB, declared as `application/json`.
pub async fn json_object(request: Request) -> Result<Map<String, Value>, ApiError> {
    content::framing(request.headers(), Accepts::Json)?;
    let bytes = axum::body::to_bytes(request.into_body(), FILTER_BODY_LIMIT)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {FILTER_BODY_LIMIT} bytes"),
                Value::Null,
            )
        })?;
    if bytes.trim_ascii().is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty: send one JSON object",
            json!({ "reason": "empty_body" }),
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "the body must be a JSON object",
            Value::Null,
        )),
        Err(e) => Err(ApiError::bad_request(
            "the body is not JSON",
            json!({ "reason": e.to_string() }),
        )),
    }
}

/// Reads a filter's predicates, answering 400 naming the field at fault.
pub fn spec_of(fields: Map<String, Value>) -> Result<FilterSpec, ApiError> {
    FilterSpec::from_fields(fields).map_err(|e| {
        ApiError::bad_request(
            format!("{}: {}", e.field, e.message),
            json!({ "field": e.field, "reason": e.message }),
        )
    })
}

fn take_text(fields: &mut Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(other) => Err(ApiError::bad_request(
            format!("{name} must be a string"),
            json!({ "field": name, "value": other }),
        )),
    }
}

/// `POST /filters`: 201 with the filter, once its back-fill is in the views (or after
/// [`BACKFILL_WAIT`], with `"backfill_done": false`).
#[utoipa::path(
    post,
    path = "/filters",
    tag = "filters",
    summary = "Creates a filter, kept in SQLite; it is back-filled over the retained history (the answer waits up to 10 s for that)",
    request_body(content = crate::api_doc::FilterRequest, content_type = "application/json"),
    responses((status = 201, description = "Created (`Location` names it)", body = crate::api_doc::FilterDoc), (status = 400, description = "A field is wrong (named in `detail.field`), or `--max-filters` filters exist already", body = crate::api_doc::ErrorBody), (status = 401, description = "A token is set and none was given", body = crate::api_doc::ErrorBody), (status = 403, description = "The token is wrong", body = crate::api_doc::ErrorBody), (status = 409, description = "The id is taken", body = crate::api_doc::ErrorBody), (status = 415, description = "The body is not declared `application/json`", body = crate::api_doc::ErrorBody), (status = 503, description = "This service has no filters", body = crate::api_doc::ErrorBody))
)]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    app.authorize(&headers)?;
    let filters = filters_of(&app)?;
    let mut fields = json_object(request).await?;
    let id = take_text(&mut fields, "id")?;
    if let Some(id) = &id {
        check_id(id)?;
    }
    let name = take_text(&mut fields, "name")?;
    let spec = spec_of(fields)?;
    let filter = filters.create(id, name, spec, None).await?;
    let done = wait_for_backfill(&app, filters, &filter.id).await;
    Ok(created(&filter, done))
}

/// Waits up to [`BACKFILL_WAIT`] for filter `id`'s count to be whole in the views.
pub async fn wait_for_backfill(app: &AppState, filters: &Filters, id: &str) -> bool {
    let started = Instant::now();
    loop {
        if filters.backfilled(id, app.snapshot().state.as_of) {
            return true;
        }
        if started.elapsed() > BACKFILL_WAIT {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn with_fields(filter: &StoredFilter, extra: Value) -> Value {
    let mut v = serde_json::to_value(filter).unwrap_or(Value::Null);
    if let (Value::Object(map), Value::Object(more)) = (&mut v, extra) {
        map.extend(more);
    }
    v
}

fn created(filter: &StoredFilter, backfill_done: bool) -> Response {
    let body = with_fields(filter, json!({ "backfill_done": backfill_done }));
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = format!("/filters/{}", filter.id).parse() {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, location);
    }
    response
}

/// `GET /filters`: every filter, oldest first.
#[utoipa::path(
    get,
    path = "/filters",
    tag = "filters",
    summary = "Every filter",
    responses((status = 200, description = "The filters", body = crate::api_doc::FilterListDoc), (status = 503, description = "This service has no filters", body = crate::api_doc::ErrorBody))
)]
pub async fn list(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    let filters = filters_of(&app)?;
    let all = filters.list().await?;
    Ok(Json(json!({ "total": all.len(), "filters": all })))
}

async fn find(filters: &Filters, id: &str) -> Result<StoredFilter, ApiError> {
    filters
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no filter with id {id:?}")))
}

/// `GET /filters/{id}`: the filter, with how many subscribers it has now.
#[utoipa::path(
    get,
    path = "/filters/{id}",
    tag = "filters",
    summary = "One filter with its live subscribers",
    params(("id" = String, Path, description = "The filter")),
    responses((status = 200, description = "The filter", body = crate::api_doc::FilterDoc), (status = 404, description = "No such filter", body = crate::api_doc::ErrorBody), (status = 503, description = "This service has no filters", body = crate::api_doc::ErrorBody))
)]
pub async fn get(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let filters = filters_of(&app)?;
    let filter = find(filters, &id).await?;
    let subscribers = filters.hub().subscribers_of(&id);
    Ok(Json(with_fields(
        &filter,
        json!({ "subscribers": subscribers }),
    )))
}

/// `DELETE /filters/{id}`: 204; its subscribers are told and disconnected.
#[utoipa::path(
    delete,
    path = "/filters/{id}",
    tag = "filters",
    summary = "Deletes a filter; its subscribers get a final `closed`",
    params(("id" = String, Path, description = "The filter")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "A token is set and none was given", body = crate::api_doc::ErrorBody), (status = 403, description = "The token is wrong", body = crate::api_doc::ErrorBody), (status = 404, description = "No such filter", body = crate::api_doc::ErrorBody), (status = 503, description = "This service has no filters", body = crate::api_doc::ErrorBody))
)]
pub async fn delete(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.authorize(&headers)?;
    let filters = filters_of(&app)?;
    if filters.delete(&id).await? {
        Ok((StatusCode::NO_CONTENT, Body::empty()).into_response())
    } else {
        Err(ApiError::not_found(format!("no filter with id {id:?}")))
    }
}

/// `?limit=` of `GET /filters/{id}/matches`.
#[derive(Debug, Deserialize)]
pub struct MatchesParams {
    /// How many of the newest matches to list (default 100, at most 100).
    pub limit: Option<String>,
}

/// `GET /filters/{id}/matches`: the count over the retained history, the newest matches, and
/// whether the back-fill is in.
#[utoipa::path(
    get,
    path = "/filters/{id}/matches",
    tag = "filters",
    summary = "A filter's match count within retention and its newest matches",
    params(("id" = String, Path, description = "The filter"), ("limit" = Option<usize>, Query, description = "How many recent matches (at most 100)")),
    responses((status = 200, description = "The matches", body = crate::api_doc::MatchesDoc), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody), (status = 404, description = "No such filter", body = crate::api_doc::ErrorBody), (status = 503, description = "This service has no filters", body = crate::api_doc::ErrorBody))
)]
pub async fn matches(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<MatchesParams>,
) -> Result<Json<Value>, ApiError> {
    let filters = filters_of(&app)?;
    find(filters, &id).await?;
    let max = emoflow_dataflow::newest::RECENT_MATCHES;
    let limit = match params.limit.as_deref() {
        None => max,
        Some(text) => match text.parse::<usize>() {
            Ok(n) => n.min(max),
            Err(_) => {
                return Err(ApiError::bad_request(
                    format!("limit must be a whole number (at most {max} are kept)"),
                    json!({ "parameter": "limit", "value": text }),
                ))
            }
        },
    };
    let snap = app.snapshot();
    let as_of = snap.state.as_of;
    let recent: Vec<Value> = filters
        .hub()
        .recent(&id, limit)
        .iter()
        .map(|e| serde_json::to_value(&e.event).unwrap_or(Value::Null))
        .collect();
    Ok(Json(json!({
        "id": id,
        "count": snap.state.filter_matches(&id),
        "recent": recent,
        "limit": limit,
        "backfill_done": filters.backfilled(&id, as_of),
        "as_of": as_of,
    })))
}
