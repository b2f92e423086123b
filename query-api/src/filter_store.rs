//! Subscribers' filters kept in SQLite under the data directory, so that they survive a
//! restart: `POST /filters` writes here before the dataflow hears of the filter, and `serve`
//! starts its run with every filter found here.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use emoflow_dataflow::FilterSpec;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// The file, in the data directory, that holds the filters.
pub const FILTERS_FILE: &str = "filters.sqlite";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (a full disk, a damaged file).
    #[error("the filter store failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored filter could not be read back (written by a newer version?).
    #[error("stored filter {id:?} cannot be read: {reason}")]
    Corrupt {
        /// The filter.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The id is taken.
    #[error("a filter with id {0:?} exists")]
    Exists(String),
}

/// One stored filter, as `GET /filters/{id}` shows it: its id, its predicates at the top
/// level, and for the older broadcast API the client it serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredFilter {
    /// Its id.
    pub id: String,
    /// A name for people, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its predicates.
    #[serde(flatten)]
    pub spec: FilterSpec,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: i64,
    /// The client of `POST /register` it was made for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The filters in one SQLite file. Clones share the connection. Calls wait for the disk: from
/// async code, make them on a blocking thread (as `Filters` does).
#[derive(Clone)]
pub struct FilterStore(Arc<Mutex<Connection>>);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS filters (
    id         TEXT PRIMARY KEY,
    name       TEXT,
    spec       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    client_id  TEXT UNIQUE
);";

type Row = (String, Option<String>, String, i64, Option<String>);

fn stored((id, name, spec, created_ms, client_id): Row) -> Result<StoredFilter, StoreError> {
    let spec: FilterSpec = serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
        id: id.clone(),
        reason: e.to_string(),
    })?;
    Ok(StoredFilter {
        id,
        name,
        spec,
        created_ms,
        client_id,
    })
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

const COLUMNS: &str = "id, name, spec, created_ms, client_id";

impl FilterStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(dir.join(FILTERS_FILE))?;
        // WAL: readers do not wait for a writer, and a commit is one append.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::with(conn)
    }

    /// A store that lives in memory only (tests, and `serve` without a data directory).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with(Connection::open_in_memory()?)
    }

    fn with(conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(SCHEMA)?;
        Ok(FilterStore(Arc::new(Mutex::new(conn))))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock left SQLite consistent (each call is one statement).
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every filter, oldest first.
    pub fn list(&self) -> Result<Vec<StoredFilter>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM filters ORDER BY created_ms, id"
        ))?;
        let rows: Vec<Row> = stmt.query_map([], row)?.collect::<Result<_, _>>()?;
        rows.into_iter().map(stored).collect()
    }

    /// How many filters there are.
    pub fn count(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM filters", [], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// The filter `id`.
    pub fn get(&self, id: &str) -> Result<Option<StoredFilter>, StoreError> {
        self.one("id", id)
    }

    /// The filter made for `client_id` by `POST /register`.
    pub fn of_client(&self, client_id: &str) -> Result<Option<StoredFilter>, StoreError> {
        self.one("client_id", client_id)
    }

    fn one(&self, column: &str, value: &str) -> Result<Option<StoredFilter>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM filters WHERE {column} = ?1"
        ))?;
        let found = stmt.query_row([value], row).optional()?;
        found.map(stored).transpose()
    }

    /// Adds `f`; fails with [`StoreError::Exists`] when its id is taken.
    pub fn insert(&self, f: &StoredFilter) -> Result<(), StoreError> {
        let spec = serde_json::to_string(&f.spec).map_err(|e| StoreError::Corrupt {
            id: f.id.clone(),
            reason: e.to_string(),
        })?;
        let done = self.conn().execute(
            "INSERT INTO filters (id, name, spec, created_ms, client_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![f.id, f.name, spec, f.created_ms, f.client_id],
        );
        match done {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Exists(f.id.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes filter `id`; false when there was none.
    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM filters WHERE id = ?1", [id])?
            > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emoflow_dataflow::filter::Amount;

    fn filter(id: &str, client: Option<&str>) -> StoredFilter {
        StoredFilter {
            id: id.into(),
            name: Some("big spenders".into()),
            spec: FilterSpec {
                tiers: Some(vec!["gold".into()]),
                min_amount: Some(Amount(10.5)),
                ..FilterSpec::default()
            },
            created_ms: 7,
            client_id: client.map(str::to_owned),
        }
    }

    #[test]
    fn filters_survive_reopening_the_file() -> Result<(), StoreError> {
        let dir = std::env::temp_dir().join(format!("emoflow-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Corrupt {
            id: String::new(),
            reason: e.to_string(),
        })?;
        let _ = std::fs::remove_file(dir.join(FILTERS_FILE));
        {
            let store = FilterStore::open(&dir)?;
            store.insert(&filter("a", None))?;
            store.insert(&filter("b", Some("phone-1")))?;
            assert!(matches!(
                store.insert(&filter("a", None)),
                Err(StoreError::Exists(_))
            ));
            assert!(store.delete("a")?);
            assert!(!store.delete("a")?);
        }
        let store = FilterStore::open(&dir)?;
        assert_eq!(store.list()?, vec![filter("b", Some("phone-1"))]);
        assert_eq!(store.of_client("phone-1")?.map(|f| f.id), Some("b".into()));
        assert_eq!(store.count()?, 1);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
