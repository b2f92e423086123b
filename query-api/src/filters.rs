//! Filters as data: `POST/GET/DELETE /filters`, and `GET /filters/{id}/matches`.
//!
//! A filter is written to SQLite first, then handed to the running dataflow (which back-fills
//! its count over the history it read) and to the delivery hub (which matches it live). The
//! three always agree on which filters exist: changes are made one at a time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use emoflow_dataflow::{FilterControl, FilterSpec};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::app::AppState;
use crate::content::{self, Accepts};
use crate::error::ApiError;
use crate::filter_store::{FilterStore, StoreError, StoredFilter};
use crate::hub::Hub;

/// Default cap on the number of filters (`--max-filters`).
pub const DEFAULT_MAX_FILTERS: usize = 10_000;

/// Longest filter id, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// Largest body of a filter request.
const FILTER_BODY_LIMIT: usize = 1 << 20;

/// How long `POST /filters` waits for the new filter's back-fill before answering without it.
pub const BACKFILL_WAIT: Duration = Duration::from_secs(10);

/// The filters of a running service: where they are kept, counted and delivered.
pub struct Filters {
    store: FilterStore,
    control: Option<FilterControl>,
    hub: Arc<Hub>,
    max_filters: usize,
    /// One change at a time, so that the store, the dataflow and the hub agree.
    changes: tokio::sync::Mutex<()>,
}

/// A store failure as an answer: 409 for an id in use, 500 otherwise.
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Exists(id) => ApiError::new(
            StatusCode::CONFLICT,
            format!("a filter with id {id:?} exists; delete it first or choose another id"),
            json!({ "id": id }),
        ),
        e => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            Value::Null,
        ),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Checks a filter id: 1..=64 bytes of letters, digits, `.`, `_`, `-`, `~` (safe in a URL).
pub fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            format!("id must be 1..={MAX_ID_BYTES} letters, digits, '.', '_', '-' or '~'"),
            json!({ "field": "id", "value": id }),
        ))
    }
}

fn new_id() -> String {
    format!("f{:012x}", rand::random::<u64>() >> 16)
}

impl Filters {
    /// The filters of `store`, counted by the run behind `control` (none: counts stay 0) and
    /// delivered by `hub`.
    pub fn new(
        store: FilterStore,
        control: Option<FilterControl>,
        hub: Arc<Hub>,
        max_filters: usize,
    ) -> Self {
        Filters {
            store,
            control,
            hub,
            max_filters,
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// The delivery hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The store.
    pub fn store(&self) -> &FilterStore {
        &self.store
    }

    /// Creates a filter: stored, then counted (back-filled) and delivered. Returns it.
    pub async fn create(
        &self,
        id: Option<String>,
        name: Option<String>,
        spec: FilterSpec,
        client_id: Option<String>,
    ) -> Result<StoredFilter, ApiError> {
        let _one_at_a_time = self.changes.lock().await;
        let count = self.store.count().map_err(store_error)?;
        if count >= self.max_filters {
            return Err(ApiError::bad_request(
                format!(
                    "there are {count} filters, the most this service keeps (--max-filters); delete some first"
                ),
                json!({ "max_filters": self.max_filters }),
            ));
        }
        let id = match id {
            Some(id) => id,
            None => loop {
                let id = new_id();
                if self.store.get(&id).map_err(store_error)?.is_none() {
                    break id;
                }
            },
        };
        let filter = StoredFilter {
            id,
            name,
            spec,
            created_ms: now_ms(),
            client_id,
        };
        self.store.insert(&filter).map_err(store_error)?;
        let since = self
            .control
            .as_ref()
            .map_or(0, |c| c.add(filter.id.clone(), filter.spec.clone()));
        self.hub.add_filter(&filter.id, filter.spec.clone(), since);
        Ok(filter)
    }

    /// Deletes filter `id`; false when there is none.
    pub async fn delete(&self, id: &str) -> Result<bool, ApiError> {
        let _one_at_a_time = self.changes.lock().await;
        if !self.store.delete(id).map_err(store_error)? {
            return Ok(false);
        }
        if let Some(c) = &self.control {
            c.remove(id);
        }
        self.hub.remove_filter(id);
        Ok(true)
    }

    /// Whether the views as of `as_of` hold filter `id`'s count whole (its back-fill done).
    pub fn backfilled(&self, id: &str, as_of: u64) -> bool {
        match (self.hub.since(id), &self.control) {
            (Some(0), _) | (Some(_), None) => true,
            (Some(since), Some(c)) => c.visible_from(since).is_some_and(|t| as_of >= t),
            (None, _) => false,
        }
    }
}

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
    let all = filters.store.list().map_err(store_error)?;
    Ok(Json(json!({ "total": all.len(), "filters": all })))
}

fn find(filters: &Filters, id: &str) -> Result<StoredFilter, ApiError> {
    filters
        .store
        .get(id)
        .map_err(store_error)?
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
    let filter = find(filters, &id)?;
    let subscribers = filters.hub.subscribers_of(&id);
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
    find(filters, &id)?;
    let max = emoflow_dataflow::feed::RECENT_MATCHES;
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
        .hub
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
