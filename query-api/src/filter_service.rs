//! The filters of a running service, as one thing: kept in SQLite ([`FilterStore`]), counted by
//! the dataflow ([`FilterControl`]) and delivered by the hub ([`Hub`]). Changes are made one at
//! a time so that the three always agree on which filters exist; SQLite runs on blocking
//! threads, off the async runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use emoflow_dataflow::{FilterControl, FilterNo, FilterSpec};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::filter_store::{FilterStore, StoreError, StoredFilter};
use crate::hub::Hub;

/// Default cap on the number of filters (`--max-filters`).
pub const DEFAULT_MAX_FILTERS: usize = 10_000;

/// Longest filter id, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// The filters of a running service: where they are kept, counted and delivered.
pub struct Filters {
    /// SQLite: every call runs on a blocking thread, never on the async runtime's.
    store: FilterStore,
    /// How many filters the store holds (for `/metrics`, which must not wait for SQLite).
    count: AtomicUsize,
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
        let count = store.count().unwrap_or_else(|e| {
            tracing::warn!("cannot count the stored filters: {e}");
            0
        });
        Filters {
            count: AtomicUsize::new(count),
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

    /// Runs `f` on the store on a blocking thread: SQLite may wait for the disk, and the
    /// async runtime's threads must not.
    async fn on_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&FilterStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the filter store's thread failed: {e}"),
                    Value::Null,
                )
            })?
            .map_err(store_error)
    }

    /// Every filter, oldest first.
    pub async fn list(&self) -> Result<Vec<StoredFilter>, ApiError> {
        self.on_store(FilterStore::list).await
    }

    /// The filter `id`, when there is one.
    pub async fn get(&self, id: &str) -> Result<Option<StoredFilter>, ApiError> {
        let id = id.to_owned();
        self.on_store(move |s| s.get(&id)).await
    }

    /// The filter made for `client_id` by `POST /register`, when there is one.
    pub async fn of_client(&self, client_id: &str) -> Result<Option<StoredFilter>, ApiError> {
        let client_id = client_id.to_owned();
        self.on_store(move |s| s.of_client(&client_id)).await
    }

    /// How many filters there are.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
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
        let count = self.on_store(FilterStore::count).await?;
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
                if self.get(&id).await?.is_none() {
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
        let stored = filter.clone();
        self.on_store(move |s| s.insert(&stored)).await?;
        self.count.fetch_add(1, Ordering::Relaxed);
        // Without a run nothing is read, so nothing is matched either.
        let seq = self
            .control
            .as_ref()
            .map_or(0, |c| c.add(filter.id.clone(), filter.spec.clone()));
        self.hub
            .add_filter(&filter.id, filter.spec.clone(), FilterNo::Added(seq));
        Ok(filter)
    }

    /// Deletes filter `id`; false when there is none.
    pub async fn delete(&self, id: &str) -> Result<bool, ApiError> {
        let _one_at_a_time = self.changes.lock().await;
        let gone = id.to_owned();
        if !self.on_store(move |s| s.delete(&gone)).await? {
            return Ok(false);
        }
        self.count.fetch_sub(1, Ordering::Relaxed);
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
