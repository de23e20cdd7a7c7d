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
        remove_dir_contents(path, &meta).and_then(|()| fs_err::remove_dir(path))
    } else {
        fs_err::remove_file(path)
    }
}

/// Empties a directory whose metadata is `meta`. Entries are told apart by the type the directory
/// listing gives, so a file costs one `unlink` and no `lstat` (GC of 60,000 files is mostly these
/// calls).
fn remove_dir_contents(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    for entry in fs_err::read_dir(path)? {
        let entry = entry?;
        let child = entry.path();
        if entry.file_type()?.is_dir() {
            let meta = fs_err::symlink_metadata(&child)?;
            remove_dir_contents(&child, &meta)?;
            fs_err::remove_dir(&child)?;
        } else {
            match std::fs::remove_file(&child) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
    }
    Ok(())
}

/// Removes several trees on `workers` threads. The work is split below each tree's top: its
/// entries are shared out one by one, so two large trees and one huge one keep every worker busy
/// alike. Each tree is removed whole or the first error is returned (the rest still tried).
pub fn remove_trees(paths: &[PathBuf], workers: usize) -> std::io::Result<()> {
    // Make every top directory writable and list it; its entries are the units of work.
    let mut units: Vec<PathBuf> = Vec::new();
    let mut tops: Vec<PathBuf> = Vec::new();
    let mut first_error: Option<std::io::Error> = None;
    for path in paths {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let listed = (|| {
                    if meta.permissions().mode() & 0o700 != 0o700 {
                        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
                    }
                    fs_err::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<Vec<_>>>()
                })();
                match listed {
                    Ok(entries) => {
                        units.extend(entries);
                        tops.push(path.clone());
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            Ok(_) => {
                if let Err(e) = fs_err::remove_file(path) {
                    first_error.get_or_insert(e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let removed =
        crate::parallel::map_on_threads(workers, &units, || (), |_, _, unit| remove_tree(unit), |_| false);
    let mut error = first_error.or_else(|| removed.into_iter().flatten().find_map(std::result::Result::err));
    for top in &tops {
        if let Err(e) = fs_err::remove_dir(top) {
            error.get_or_insert(e);
        }
    }
    error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn read_only_trees_are_removed_on_several_threads_and_a_missing_one_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let mut trees = Vec::new();
        for t in 0..3 {
            let tree = dir.path().join(format!("t{t}"));
            for d in 0..4 {
                let sub = tree.join(format!("d{d}/deeper"));
                std::fs::create_dir_all(&sub).unwrap();
                std::fs::write(sub.join("f"), "x").unwrap();
                std::os::unix::fs::symlink("f", sub.join("link")).unwrap();
                std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o555)).unwrap();
            }
            std::fs::write(tree.join("top"), "x").unwrap();
            std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o555)).unwrap();
            trees.push(tree);
        }
        trees.push(dir.path().join("never-there"));
        super::remove_trees(&trees, 2).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
