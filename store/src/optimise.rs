//! Optimise: hard-link identical files across store paths.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::store::Store;
use crate::tree;
use crate::unpack;

/// The outcome of [`Store::optimise`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OptimiseReport {
    /// Files scanned.
    pub files: u64,
    /// Files replaced by a hard link to an identical one.
    pub linked: u64,
    /// Bytes freed.
    pub bytes_saved: u64,
}

impl Store {
    /// Replaces identical files (same contents, same executable bit) across the store by hard links
    /// to one copy. Only files whose size and mode collide are read.
    pub fn optimise(&self) -> Result<OptimiseReport> {
        struct Candidate {
            path: PathBuf,
            ino: (u64, u64),
            nlink: u64,
        }
        let mut report = OptimiseReport::default();
        let mut by_shape: HashMap<(u64, bool), Vec<Candidate>> = HashMap::new();
        for record in self.list()? {
            let root = self.dir.join(&record.name);
            let mut stack = vec![root];
            while let Some(dir) = stack.pop() {
                for entry in fs_err::read_dir(&dir)? {
                    let entry = entry?;
                    let meta = fs_err::symlink_metadata(entry.path())?;
                    if meta.is_dir() {
                        stack.push(entry.path());
                    } else if meta.is_file() {
                        report.files += 1;
                        if meta.len() > 0 {
                            by_shape.entry((meta.len(), meta.mode() & 0o111 != 0)).or_default().push(
                                Candidate {
                                    path: entry.path(),
                                    ino: (meta.dev(), meta.ino()),
                                    nlink: meta.nlink(),
                                },
                            );
                        }
                    }
                }
            }
        }
        for ((size, _), group) in by_shape {
            if group.len() < 2 || group.iter().all(|c| c.ino == group[0].ino) {
                continue;
            }
            let mut first_by_hash: HashMap<[u8; 32], (PathBuf, (u64, u64))> = HashMap::new();
            let mut seen_inodes: HashMap<(u64, u64), [u8; 32]> = HashMap::new();
            for c in group {
                let hash = match seen_inodes.get(&c.ino) {
                    Some(h) => *h,
                    None => {
                        let h = tree::hash_file(&c.path)?.0;
                        seen_inodes.insert(c.ino, h);
                        h
                    }
                };
                match first_by_hash.get(&hash) {
                    None => {
                        first_by_hash.insert(hash, (c.path, c.ino));
                    }
                    Some((_, ino)) if *ino == c.ino => {}
                    Some((keep, _)) => {
                        replace_with_link(keep, &c.path)?;
                        report.linked += 1;
                        if c.nlink == 1 {
                            report.bytes_saved += size;
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}

/// Atomically replaces `victim` by a hard link to `keep`, opening its read-only parent just long
/// enough and restoring the parent's mode and mtime.
fn replace_with_link(keep: &Path, victim: &Path) -> Result<()> {
    let parent = victim.parent().expect("store files have a parent");
    let tmp = parent.join(format!(".envctl-link-{}", std::process::id()));
    fs_err::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
    let result = (|| {
        fs_err::hard_link(keep, &tmp)?;
        fs_err::rename(&tmp, victim)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    fs_err::set_permissions(parent, std::fs::Permissions::from_mode(0o555))?;
    unpack::set_mtime(parent, false)?;
    Ok(result?)
}
