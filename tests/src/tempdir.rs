//! A temporary directory that is removed when dropped, read-only trees and all.
//!
//! A store's paths are read-only (directories 0555), and an ordinary user cannot delete what such
//! a directory holds: `tempfile`'s own removal gives up and leaves the whole directory behind.
//! Run as `envctl-ci`, the test suite left about 30 GB in `/tmp` that way.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A fresh temporary directory under the system's temporary directory.
pub fn tempdir() -> TempDir {
    TempDir(Some(tempfile::tempdir().expect("a temporary directory")))
}

pub struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("not yet dropped").path()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            make_writable(dir.path());
            // What is still left is named by CI's pass as an ordinary user (.ci/as-user).
            let _ = dir.close();
        }
    }
}

/// Gives the owner write and search permission on every directory under `path` (symbolic links
/// are not followed).
fn make_writable(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_tree_is_removed() {
        let dir = tempdir();
        let top = dir.path().to_path_buf();
        let inner = top.join("store/abc");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(inner.join("file"), "x").unwrap();
        for d in [&inner, &top.join("store")] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        drop(dir);
        assert!(!top.exists(), "{} is left behind", top.display());
    }
}
