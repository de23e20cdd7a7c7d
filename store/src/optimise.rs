//! Optimise: hard-link identical files across store paths.
//!
//! # Crash safety
//!
//! Replacing a file inside a read-only store directory takes three steps that a kill can split:
//! open the directory (mode 0755), rename a new hard link over the file, close the directory
//! again (mode 0555, normalized mtime). So:
//!
//! - the new link is made in `store/.tmp/` (same filesystem), never inside a store path, and
//!   renamed over the file in one step: the file is the old inode or the new one, never missing,
//!   and no stray name ever appears inside a valid path (`.tmp/` is swept);
//! - before a directory is opened its name is appended to `store/.envctl/optimise.journal`; once
//!   every directory is closed again the journal is removed. A journal found by the next optimise,
//!   or by the next process that finds the store idle, has its directories closed first.
//!
//! Optimise holds the maintenance lock exclusively (verify and repair wait) and the store lock
//! shared (GC waits).

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
        let _maintenance = self.maintenance_lock(true)?;
        recover(self.dir())?;
        let mut journal = Journal::open(self.dir())?;
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
                        replace_with_link(self.dir(), &mut journal, keep, &c.path)?;
                        report.linked += 1;
                        if c.nlink == 1 {
                            report.bytes_saved += size;
                        }
                    }
                }
            }
        }
        journal.finish()?;
        Ok(report)
    }
}

/// The list of directories an optimise has opened (see the module docs).
struct Journal {
    store: PathBuf,
    path: PathBuf,
    file: Option<std::fs::File>,
    opened: std::collections::HashSet<PathBuf>,
}

impl Journal {
    fn open(store: &Path) -> Result<Journal> {
        Ok(Journal {
            store: store.to_path_buf(),
            path: journal_path(store),
            file: None,
            opened: Default::default(),
        })
    }

    /// Records `dir` before it is opened; each directory once.
    fn record(&mut self, dir: &Path) -> Result<()> {
        if self.opened.contains(dir) {
            return Ok(());
        }
        if self.file.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o644).open(&self.path);
            self.file = Some(file.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot write `{}`: {e}", self.path.display()))
            })?);
        }
        use std::io::Write;
        // Relative to the store, so that the journal reads the same however the home is spelled.
        let rel = dir.strip_prefix(&self.store).unwrap_or(dir);
        let line = format!("{}\n", rel.display());
        self.file.as_mut().expect("opened above").write_all(line.as_bytes())?;
        self.opened.insert(dir.to_path_buf());
        Ok(())
    }

    /// Every recorded directory is closed: the journal goes.
    fn finish(self) -> Result<()> {
        if self.file.is_some() {
            fs_err::remove_file(&self.path)?;
        }
        Ok(())
    }
}

fn journal_path(store: &Path) -> PathBuf {
    store.join(".envctl/optimise.journal")
}

/// Closes every directory a killed optimise left open (mode 0555, normalized mtime), then removes
/// its journal. Called with the maintenance lock held exclusively, or the store idle.
pub(crate) fn recover(store: &Path) -> Result<()> {
    let path = journal_path(store);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(
                std::io::Error::new(e.kind(), format!("cannot read `{}`: {e}", path.display())).into()
            );
        }
    };
    for line in text.lines() {
        let rel = Path::new(line);
        // Only directories inside this store; a torn last line or a path since collected is skipped.
        let inside = rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        let dir = store.join(rel);
        if line.is_empty() || !inside || !dir.is_dir() {
            continue;
        }
        let dir = dir.as_path();
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o555))?;
        unpack::set_mtime(dir, false)?;
        tracing::info!(dir = %dir.display(), "closed a store directory an interrupted optimise left open");
    }
    fs_err::remove_file(&path)?;
    Ok(())
}

/// Atomically replaces `victim` by a hard link to `keep`: the link is made in `.tmp/` and renamed
/// over the victim, with its read-only parent opened (and journaled) just long enough.
fn replace_with_link(store: &Path, journal: &mut Journal, keep: &Path, victim: &Path) -> Result<()> {
    let parent = victim.parent().expect("store files have a parent");
    let tmp = store.join(".tmp").join(format!("optimise-{}-link", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    fs_err::hard_link(keep, &tmp)?;
    journal.record(parent)?;
    fs_err::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
    let result = fs_err::rename(&tmp, victim);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    fs_err::set_permissions(parent, std::fs::Permissions::from_mode(0o555))?;
    unpack::set_mtime(parent, false)?;
    Ok(result?)
}
