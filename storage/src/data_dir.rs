//! The data directory (`--data-dir`): emoflow's state on disk, held by one process at a time.
//!
//! ```text
//! <data-dir>/
//!   emoflow.lock     held (flock) by the process using the directory; says its pid
//!   archive/         the Parquet archive, unless --archive-dir puts it elsewhere
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file in a data directory.
pub const LOCK_FILE: &str = "emoflow.lock";

/// Why a directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// It cannot be created or written.
    #[error("cannot use {path} as the data directory: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another process holds it.
    #[error("{path} is in use by another emoflow process{holder}; stop it, or give this one another --data-dir")]
    InUse {
        /// The directory.
        path: PathBuf,
        /// ` (pid N)` when known.
        holder: String,
    },
}

/// A data directory, locked for this process until dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `path` if missing and locks it; fails at once when another process holds it.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(DataDirError::InUse {
                    path: path.to_owned(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        writeln!(lock, "{}", std::process::id()).map_err(io)?;
        Ok(DataDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the archive goes by default: `<data-dir>/archive`.
    pub fn default_archive_dir(&self) -> PathBuf {
        self.path.join("archive")
    }
}

/// An exclusive hold on a directory (flock on the directory itself, so nothing is added to
/// it), so that two processes never write one archive.
#[derive(Debug)]
pub struct DirLock {
    _held: File,
}

impl DirLock {
    /// Creates `dir` if missing and locks it; fails at once when another process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, DataDirError> {
        let io = |source| DataDirError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let f = File::open(dir).map_err(io)?;
        match f.try_lock() {
            Ok(()) => Ok(DirLock { _held: f }),
            Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::InUse {
                path: dir.to_owned(),
                holder: String::new(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("emoflow-datadir-{}", std::process::id()));
        let first = DataDir::open(&dir).unwrap();
        let err = DataDir::open(&dir).unwrap_err().to_string();
        assert!(err.contains("in use by another emoflow process"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let archive = first.default_archive_dir();
        let held = DirLock::acquire(&archive).unwrap();
        assert!(DirLock::acquire(&archive).is_err());
        drop(held);
        drop(first);
        assert!(DataDir::open(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
