//! The data directory and the archive as the commands use them: which directories are held,
//! and where the archive goes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use emoflow_storage::{ArchiveConfig, ArchiveSink, DataDir, DirLock};

use crate::cli::StorageArgs;

/// The directories a command holds (for as long as it lives) and its archive settings.
pub struct Storage {
    _data_dir: Option<DataDir>,
    _archive_lock: Option<DirLock>,
    /// Where and how to archive, when archiving.
    pub archive: Option<ArchiveConfig>,
}

impl StorageArgs {
    /// The storage of process `process` of a cluster: its own `process-I` directory in the data
    /// directory (and in an archive directory given), so that processes sharing a machine and a
    /// `--data-dir` never hold the same directory, and the cluster's archive reads as one tree.
    pub fn of_process(&self, process: Option<usize>) -> StorageArgs {
        let Some(i) = process else {
            return self.clone();
        };
        let own = format!("process-{i}");
        StorageArgs {
            data_dir: self.data_dir.join(&own),
            archive_dir: self.archive_dir.as_ref().map(|d| d.join(&own)),
            ..self.clone()
        }
    }
}

fn archive_config(args: &StorageArgs, dir: PathBuf, log: String) -> ArchiveConfig {
    ArchiveConfig {
        roll_rows: args.archive_roll_rows.max(1),
        roll_age: Duration::from_secs(args.archive_roll_secs.max(1)),
        ..ArchiveConfig::new(dir, log)
    }
}

fn lock_archive(dir: &std::path::Path) -> anyhow::Result<DirLock> {
    DirLock::acquire(dir).with_context(|| format!("cannot use the archive {}", dir.display()))
}

/// `serve` and `demo`: the data directory is always held; the archive of `log` is written
/// unless `no_archive`.
pub fn for_serve(args: &StorageArgs, no_archive: bool, log: String) -> anyhow::Result<Storage> {
    let data_dir = DataDir::open(&args.data_dir)?;
    if no_archive {
        return Ok(Storage {
            _data_dir: Some(data_dir),
            _archive_lock: None,
            archive: None,
        });
    }
    let dir = args
        .archive_dir
        .clone()
        .unwrap_or_else(|| data_dir.default_archive_dir());
    let lock = lock_archive(&dir)?;
    Ok(Storage {
        _data_dir: Some(data_dir),
        _archive_lock: Some(lock),
        archive: Some(archive_config(args, dir, log)),
    })
}

impl Storage {
    /// Starts the archive's writer, when archiving.
    pub fn open_archive(&self) -> anyhow::Result<Option<ArchiveSink>> {
        self.archive
            .clone()
            .map(ArchiveSink::open)
            .transpose()
            .map_err(anyhow::Error::msg)
    }

    /// The data directory, when the command holds it.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self._data_dir.as_ref().map(DataDir::path)
    }
}

/// `replay`: with `--archive DIR`, only DIR is held; with a bare `--archive`, the data
/// directory too (the archive is in it, or named by `--archive-dir`); without, nothing.
pub fn for_replay(
    args: &StorageArgs,
    archive: Option<&Option<PathBuf>>,
    log: String,
) -> anyhow::Result<Storage> {
    let (data_dir, dir) = match archive {
        None => {
            return Ok(Storage {
                _data_dir: None,
                _archive_lock: None,
                archive: None,
            })
        }
        Some(Some(dir)) => (None, dir.clone()),
        Some(None) => {
            let data_dir = DataDir::open(&args.data_dir)?;
            let dir = args
                .archive_dir
                .clone()
                .unwrap_or_else(|| data_dir.default_archive_dir());
            (Some(data_dir), dir)
        }
    };
    let lock = lock_archive(&dir)?;
    Ok(Storage {
        _data_dir: data_dir,
        _archive_lock: Some(lock),
        archive: Some(archive_config(args, dir, log)),
    })
}

/// The archive's name for one run of the embedded broker, whose log starts again at offset 0
/// every time: `topic~YYYYMMDDTHHMMSSZ`.
pub fn embedded_log(topic: &str) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let run: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{topic}~{run}")
}
