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
//!   every directory is closed again the journal is removed (`journal.rs`). A journal found by the
//!   next optimise, or by the next process that finds the store idle, has its directories closed
//!   first.
//!
//! Optimise holds the maintenance lock exclusively (verify and repair wait) and the store lock
//! shared (GC waits).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::db::{SeenAt, SeenFile};
use crate::error::Result;
use crate::journal::Journal;
use crate::parallel::on_every_core;
use crate::store::Store;
use crate::sys::{self, DirFd};
use crate::tree;
use crate::unpack;

/// The outcome of [`Store::optimise`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OptimiseReport {
    /// Store paths scanned: those added since the last optimise.
    pub paths: u64,
    /// Files scanned, in those paths.
    pub files: u64,
    /// Files replaced by a hard link to an identical one.
    pub linked: u64,
    /// Bytes freed.
    pub bytes_saved: u64,
}

/// A regular file of a store path not optimised before, as the scan found it.
struct Candidate {
    /// Which of the scanned paths it is in.
    record: usize,
    /// Its place there, its size and mode.
    seen: SeenFile,
    /// Where it is on disk.
    path: PathBuf,
    ino: (u64, u64),
    nlink: u64,
}

/// A file an earlier optimise recorded, with the same size and mode as a new one.
struct Recorded {
    at: SeenAt,
    /// Where it is on disk.
    path: PathBuf,
    seen: SeenFile,
}

/// What a file with given contents can be linked to: the first file found with them.
struct Keep<'a> {
    path: &'a Path,
    /// Its inode, once known.
    ino: Option<(u64, u64)>,
    /// Whether its contents were read in this run (a hash recorded by an earlier one is read again
    /// before anything is linked to it: the file may have been damaged since).
    checked: bool,
}

/// A file to read, and why: a new one (by inode), or one recorded before (its size and mode and
/// its place among the recorded files of that size and mode).
struct Read<'a> {
    path: &'a Path,
    file: Readable,
}

#[derive(Clone, Copy)]
enum Readable {
    New((u64, u64)),
    Known((u64, bool), usize),
}

impl Store {
    /// Replaces identical files (same contents, same executable bit) across the store by hard links
    /// to one copy. Each store path is scanned once in the store's life: what optimise saw is
    /// recorded in the database, and a later run scans only the paths added since, comparing
    /// their files with the recorded ones. Only files whose size and mode collide are read. The
    /// scan and that reading run on every core; the links are made one at a time.
    pub fn optimise(&self) -> Result<OptimiseReport> {
        let _maintenance = self.maintenance_lock(true)?;
        crate::journal::recover(self.dir())?;
        let mut journal = Journal::open(self.dir())?;
        let mut report = OptimiseReport::default();

        let mut records = self.db().unoptimised()?;
        if records.is_empty() {
            return Ok(report);
        }
        records.sort_by_key(|r| std::cmp::Reverse(r.files));
        report.paths = records.len() as u64;
        let numbered: Vec<(usize, &str)> = records.iter().map(|r| r.name.as_str()).enumerate().collect();
        let found = on_every_core(&numbered, |&(record, name), out: &mut Vec<Candidate>| {
            scan(&self.dir.join(name), record, out)
        })?;
        report.files = found.len() as u64;
        let mut by_shape: HashMap<(u64, bool), Vec<Candidate>> = HashMap::new();
        let mut empty = Vec::new();
        for c in found {
            if c.seen.size > 0 {
                by_shape.entry((c.seen.size, c.seen.executable)).or_default().push(c);
            } else {
                empty.push(c);
            }
        }
        // The files seen before with the same sizes and modes.
        let mut known: HashMap<(u64, bool), Vec<Recorded>> = HashMap::new();
        let shapes = by_shape.keys().copied().collect();
        let recorded = self.db().optimised_files(&shapes)?;
        for (at, name, f) in recorded {
            let path = self.dir.join(&*name).join(OsStr::from_bytes(&f.file));
            known.entry((f.size, f.executable)).or_default().push(Recorded { at, path, seen: f });
        }

        // Read what can gain anything: in each size and mode, the new files (once per inode) and
        // the known files never read, where two different files are there to compare.
        let mut reads = Vec::new();
        for (shape, group) in &by_shape {
            let old = known.get(shape).map_or(&[][..], Vec::as_slice);
            let mut inodes = std::collections::HashSet::new();
            let new: Vec<Read> = group
                .iter()
                .filter(|c| inodes.insert(c.ino))
                .map(|c| Read { path: &c.path, file: Readable::New(c.ino) })
                .collect();
            if new.len() + old.len() < 2 {
                continue;
            }
            reads.extend(new);
            for (i, old) in old.iter().enumerate() {
                if old.seen.hash.is_none() {
                    reads.push(Read { path: &old.path, file: Readable::Known(*shape, i) });
                }
            }
        }
        let hashed = read_by_directory(&mut reads)?;
        let mut hashes: HashMap<(u64, u64), [u8; 32]> = HashMap::new();
        let mut learned = Vec::new();
        let mut read_now: std::collections::HashSet<((u64, bool), usize)> = Default::default();
        for (file, hash) in hashed {
            match file {
                Readable::New(ino) => {
                    hashes.insert(ino, hash);
                }
                Readable::Known(shape, i) => {
                    let old = &mut known.get_mut(&shape).expect("read from it")[i];
                    old.seen.hash = Some(hash);
                    learned.push((old.at, hash));
                    read_now.insert((shape, i));
                }
            }
        }

        for (shape, group) in &by_shape {
            let mut keeps: HashMap<[u8; 32], Keep> = HashMap::new();
            for (i, old) in known.get(shape).map_or(&[][..], Vec::as_slice).iter().enumerate() {
                if let Some(hash) = old.seen.hash {
                    let checked = read_now.contains(&(*shape, i));
                    keeps.entry(hash).or_insert(Keep { path: &old.path, ino: None, checked });
                }
            }
            for c in group {
                let Some(&hash) = hashes.get(&c.ino) else { continue };
                let Some(keep) = keeps.get_mut(&hash) else {
                    keeps.insert(hash, Keep { path: &c.path, ino: Some(c.ino), checked: true });
                    continue;
                };
                if !keep.checked {
                    // Recorded by an earlier run: read it again before linking anything to it.
                    keep.checked = true;
                    if tree::hash_file(keep.path).ok().map(|(h, _)| h) != Some(hash) {
                        *keep = Keep { path: &c.path, ino: Some(c.ino), checked: true };
                        continue;
                    }
                }
                let keep_ino = match keep.ino {
                    Some(ino) => ino,
                    None => {
                        let meta = fs_err::symlink_metadata(keep.path)?;
                        *keep.ino.insert((meta.dev(), meta.ino()))
                    }
                };
                if keep_ino == c.ino {
                    continue;
                }
                replace_with_link(self.dir(), &mut journal, keep.path, &c.path)?;
                report.linked += 1;
                if c.nlink == 1 {
                    report.bytes_saved += shape.0;
                }
            }
        }
        journal.finish()?;

        let mut scanned: Vec<(&str, Vec<SeenFile>)> =
            records.iter().map(|r| (r.name.as_str(), Vec::new())).collect();
        for c in by_shape.into_values().flatten().chain(empty) {
            let hash = hashes.get(&c.ino).copied();
            scanned[c.record].1.push(SeenFile { hash, ..c.seen });
        }
        self.db().record_optimised(&scanned, &learned)?;
        Ok(report)
    }
}

/// Reads and hashes `reads`, on every core, a directory at a time: each directory is opened once
/// and its files relative to it. A new file that cannot be read fails the run; a recorded one
/// (damaged, being repaired) is left out.
fn read_by_directory(reads: &mut [Read]) -> Result<Vec<(Readable, [u8; 32])>> {
    // By bytes, not by components (several times faster): a directory's files end up together,
    // split at most by the names of its subdirectories.
    reads.sort_unstable_by(|a, b| a.path.as_os_str().as_bytes().cmp(b.path.as_os_str().as_bytes()));
    // At most 256 files a batch, so that one large directory does not keep the other cores idle.
    let batches: Vec<&[Read]> =
        reads.chunk_by(|a, b| a.path.parent() == b.path.parent()).flat_map(|dir| dir.chunks(256)).collect();
    on_every_core(&batches, |batch, out| {
        let parent = batch[0].path.parent().expect("store files have a parent");
        let dir = match DirFd::open(parent) {
            Ok(dir) => Some(dir),
            Err(e) if batch.iter().any(|r| matches!(r.file, Readable::New(_))) => {
                return Err(std::io::Error::new(e.kind(), format!("{e}: `{}`", parent.display())).into());
            }
            Err(_) => None,
        };
        for read in batch.iter() {
            let name = read.path.file_name().expect("store files have a name");
            match (read.file, dir.as_ref().map(|dir| tree::read_file_at(dir, name, read.path))) {
                (file, Some(Ok((_, hash, _)))) => out.push((file, hash)),
                (Readable::New(_), Some(Err(e))) => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    })
}

/// Every regular file under the store path `root`, the `record`th scanned, read relative to open
/// directories (`tree::visit_dirs`): a file costs one `fstatat`.
fn scan(root: &Path, record: usize, out: &mut Vec<Candidate>) -> Result<()> {
    Ok(tree::visit_dirs(root, &mut |dir_path, dir, files| {
        for name in files {
            // Allocated at its size: `join` would grow it by doubling, 13 MB more for 180,000 files.
            let mut path = PathBuf::with_capacity(dir_path.as_os_str().len() + 1 + name.len());
            path.push(dir_path);
            path.push(&name);
            let st = sys::stat_at(dir, &name)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{e}: `{}`", path.display())))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                continue;
            }
            out.push(Candidate {
                record,
                seen: SeenFile {
                    file: path.strip_prefix(root).unwrap_or(&path).as_os_str().as_bytes().to_vec(),
                    size: st.st_size as u64,
                    executable: st.st_mode & 0o111 != 0,
                    hash: None,
                },
                ino: (st.st_dev, st.st_ino),
                nlink: st.st_nlink,
                path,
            });
        }
        Ok(())
    })?)
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
