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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::store::Store;
use crate::sys::{self, DirFd, EntryKind};
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

/// A regular file of the store, as the scan found it.
struct Candidate {
    path: PathBuf,
    size: u64,
    executable: bool,
    ino: (u64, u64),
    nlink: u64,
}

impl Store {
    /// Replaces identical files (same contents, same executable bit) across the store by hard links
    /// to one copy. Only files whose size and mode collide are read. The store is scanned, and
    /// those files hashed, on every core; the links are then made one at a time.
    pub fn optimise(&self) -> Result<OptimiseReport> {
        let _maintenance = self.maintenance_lock(true)?;
        recover(self.dir())?;
        let mut journal = Journal::open(self.dir())?;
        let mut report = OptimiseReport::default();

        let mut records = self.list()?;
        records.sort_by_key(|r| std::cmp::Reverse(r.files));
        let roots: Vec<PathBuf> = records.iter().map(|r| self.dir.join(&r.name)).collect();
        let found = on_every_core(&roots, |root, out: &mut Vec<Candidate>| scan(root, out))?;
        report.files = found.len() as u64;
        let mut by_shape: HashMap<(u64, bool), Vec<Candidate>> = HashMap::new();
        for c in found.into_iter().filter(|c| c.size > 0) {
            by_shape.entry((c.size, c.executable)).or_default().push(c);
        }
        // Only groups holding two different inodes can gain anything; each inode is read once.
        by_shape.retain(|_, group| group.len() > 1 && group.iter().any(|c| c.ino != group[0].ino));
        let mut to_hash: HashMap<(u64, u64), &Path> = HashMap::new();
        for c in by_shape.values().flatten() {
            to_hash.entry(c.ino).or_insert(&c.path);
        }
        let to_hash: Vec<((u64, u64), &Path)> = to_hash.into_iter().collect();
        let hashes: HashMap<(u64, u64), [u8; 32]> = on_every_core(&to_hash, |(ino, path), out| {
            out.push((*ino, tree::hash_file(path)?.0));
            Ok(())
        })?
        .into_iter()
        .collect();

        for ((size, _), group) in by_shape {
            let mut first_by_hash: HashMap<[u8; 32], (PathBuf, (u64, u64))> = HashMap::new();
            for c in group {
                let hash = hashes[&c.ino];
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

/// Runs `work` on every item, shared out over the machine's cores in order, and gathers what the
/// calls push. The first error wins (the others still finish their item).
fn on_every_core<I: Sync, T: Send>(
    items: &[I],
    work: impl Fn(&I, &mut Vec<T>) -> Result<()> + Sync,
) -> Result<Vec<T>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(items.len().max(1));
    let results: Vec<Result<Vec<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        if let Err(e) = work(item, &mut out) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

/// Every regular file under the store path `root`, read relative to open directories: `readdir`
/// gives each entry's type, and a file costs one `fstatat`.
fn scan(root: &Path, out: &mut Vec<Candidate>) -> Result<()> {
    fn walk(path: &mut PathBuf, dir: &DirFd, out: &mut Vec<Candidate>) -> std::io::Result<()> {
        for (name, kind) in dir.entries()? {
            path.push(&name);
            match kind {
                Some(EntryKind::Dir) => walk(path, &DirFd::open_at(dir, &name, path)?, out)?,
                Some(EntryKind::Symlink | EntryKind::Other) => {}
                // A file, or a filesystem that does not say: `lstat` tells.
                Some(EntryKind::File) | None => {
                    let st = sys::stat_at(dir, &name)
                        .map_err(|e| std::io::Error::new(e.kind(), format!("{e}: `{}`", path.display())))?;
                    match st.st_mode & libc::S_IFMT {
                        libc::S_IFREG => out.push(Candidate {
                            path: path.clone(),
                            size: st.st_size as u64,
                            executable: st.st_mode & 0o111 != 0,
                            ino: (st.st_dev, st.st_ino),
                            nlink: st.st_nlink,
                        }),
                        libc::S_IFDIR => walk(path, &DirFd::open_at(dir, &name, path)?, out)?,
                        _ => {}
                    }
                }
            }
            path.pop();
        }
        Ok(())
    }
    let mut path = root.to_path_buf();
    Ok(walk(&mut path, &DirFd::open(root)?, out)?)
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
