//! Temporary work directories under `store/.tmp/`, and removing read-only trees.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::Result;

/// A directory under `.tmp/`, removed (whatever its permissions) when dropped.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
    unique: String,
    attempts: AtomicU64,
}

impl TempDir {
    pub(crate) fn new(parent: &Path) -> Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos();
        let unique = format!("{}-{}-{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = parent.join(&unique);
        fs_err::create_dir(&path)?;
        Ok(TempDir { path, unique, attempts: AtomicU64::new(0) })
    }

    pub(crate) fn unique(&self) -> &str {
        &self.unique
    }

    /// A new, empty directory inside, for one attempt; the previous attempt's is removed.
    pub(crate) fn fresh(&self, stem: &str) -> Result<PathBuf> {
        let n = self.attempts.fetch_add(1, Ordering::Relaxed);
        if n > 0 {
            remove_tree(&self.path.join(format!("{stem}{}", n - 1)))?;
            let _ = std::fs::remove_file(self.path.join("download"));
        }
        let p = self.path.join(format!("{stem}{n}"));
        fs_err::create_dir(&p)?;
        Ok(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.path) {
            tracing::warn!("could not remove `{}`: {e}", self.path.display());
        }
    }
}

/// Removes a tree, making read-only directories writable on the way. A missing path is fine.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        if meta.permissions().mode() & 0o700 != 0o700 {
            fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        }
        for entry in fs_err::read_dir(path)? {
            remove_tree(&entry?.path())?;
        }
        fs_err::remove_dir(path)
    } else {
        fs_err::remove_file(path)
    }
}
