//! A worker's row groups of Parquet input (a file, or the archive's directory).

use std::sync::Arc;

use emoflow_ingest::parquet_source::{ParquetInput, RowGroupRef};

use super::{Batch, History, Source};
use crate::error::RunError;
use crate::feed::Feed;
use crate::intake::{At, Intake};

/// One worker's Parquet source: a row group at a time, whatever the budget (a row group is
/// decoded whole before any row of it is handed over).
pub(crate) struct ParquetSource {
    input: Arc<ParquetInput>,
    groups: std::vec::IntoIter<RowGroupRef>,
    /// The row groups read so far: the history to back-fill from.
    read: Vec<RowGroupRef>,
    finished: bool,
}

impl ParquetSource {
    /// Reads `groups` of `input`, in order.
    pub(crate) fn new(input: Arc<ParquetInput>, groups: Vec<RowGroupRef>) -> Self {
        ParquetSource {
            input,
            groups: groups.into_iter(),
            read: Vec::new(),
            finished: false,
        }
    }
}

impl Source for ParquetSource {
    fn read(
        &mut self,
        _budget: usize,
        feed: &mut Feed,
        intake: &mut Intake,
    ) -> Result<Batch, RunError> {
        // A row group that cannot be decoded is reported and skipped (no row of it is
        // counted).
        for group in self.groups.by_ref() {
            self.read.push(group);
            let mut records = 0usize;
            let result = self.input.read(group, |row| {
                records += 1;
                let at = At {
                    partition: row.partition,
                    offset: row.offset,
                    arrival_ms: None,
                };
                // A rejected row's dead letter names its place (formatted only for those).
                let place = match &row.event {
                    Ok(_) => String::new(),
                    Err(_) => format!("{} row {}", row.path.display(), row.row),
                };
                let line = Some(row.row + 1);
                let _ = intake.admit(feed, at, row.event, place.as_bytes(), || line);
            });
            match result {
                Ok(()) => {
                    return Ok(Batch {
                        records,
                        amount: records as u64,
                    })
                }
                Err(e) => tracing::warn!("skipped: {e}"),
            }
        }
        self.finished = true;
        Ok(Batch::default())
    }

    fn is_finished(&self) -> bool {
        self.finished
    }

    fn history(&mut self, f: &mut History<'_>) -> Result<(), RunError> {
        for &group in &self.read {
            let result = self.input.read(group, |row| {
                if let Ok(e) = &row.event {
                    f(e, None);
                }
            });
            if let Err(e) = result {
                tracing::warn!("skipped in the back-fill: {e}");
            }
        }
        Ok(())
    }
}
