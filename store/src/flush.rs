//! Flushing a finished tree to disk before it is registered, without flushing other users' data.
//!
//! `syncfs` writes one tree in one call, but it writes everything dirty on the filesystem with it,
//! and on a shared GPU machine that is other users' checkpoints: the install would wait for them
//! and stall them. An `fsync` per file and directory is confined to the tree, but on a filesystem
//! without a journal each one also writes its inode's block and flushes the disk's cache, so a
//! tree of small files takes about twice as long as with `syncfs` on an idle machine.
//!
//! So the flush looks first: when everything dirty or being written on the machine
//! (`/proc/meminfo`) is no more than what this process has written into trees and not flushed
//! yet (at least the tree's own size) plus [`SLACK`], `syncfs` costs the least and writes almost
//! nothing but this process's trees; otherwise each regular file and directory of the tree
//! gets its own `fsync`, many at a time (the disk takes concurrent writes and cache flushes
//! together, where one at a time would wait for each round trip). With 1 GiB of another
//! program's data waiting, the per-file flush of a 3,000-file package took 0.21 s where `syncfs`
//! took 0.72 s (docs/performance.md).
//!
//! Symlinks cannot be opened to be flushed; their entry is flushed with their directory, which on
//! a journaling filesystem (ext4's default, XFS, btrfs) also makes their creation durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;
use crate::parallel::on_threads;
use crate::sys::DirFd;

/// How many flushes are in flight at once: enough to keep a disk's queue full, and threads that
/// wait on the disk cost no CPU.
const IN_FLIGHT: usize = 64;

/// Files of one directory, flushed by one thread (a large directory is split into several).
struct Batch {
    dir: PathBuf,
    files: Vec<std::ffi::OsString>,
}

/// What is dirty on the machine beyond a tree's own bytes, at most, for its flush to be one
/// `syncfs`: about what an idle system keeps dirty (logs, databases), far below a checkpoint.
const SLACK: u64 = 16 << 20;

/// What this process has written into trees and not flushed yet, as the kernel counts it dirty.
/// An `apply` unpacks four trees at once: the others' data is the install's own, no reason to
/// flush file by file (which, once chosen, would leave them dirty for the next tree to see, and so
/// on for the whole apply).
static UNFLUSHED: AtomicU64 = AtomicU64::new(0);

/// What a file or symlink leaves dirty besides its bytes, at most: its last page (half empty on
/// average; a symlink with a long target takes a whole block) and its share of inode, directory
/// and bitmap blocks. Measured: a tree of 3,000 files of 100 B–4 KiB (6.3 MB) left about 14 MB
/// dirty, a generation of 60,000 symlinks about 250 MB.
const PER_FILE: u64 = 4096 + 512;

/// Counts a file of `bytes` written into a tree that will be flushed with [`flush_tree`].
pub(crate) fn written(bytes: u64) {
    UNFLUSHED.fetch_add(bytes + PER_FILE, Ordering::Relaxed);
}

/// How a tree was flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// With the whole filesystem, nearly nothing else being dirty.
    Filesystem,
    /// File by file: so many regular files and directories.
    Files(usize, usize),
}

/// Flushes the tree at `root`, holding `files` files of `size` bytes in all, to disk (see the
/// module docs for how).
pub(crate) fn flush_tree(root: &Path, size: u64, files: u64) -> Result<Flushed> {
    let waiting = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| unwritten(&m));
    let own = size + files * PER_FILE;
    let ours = UNFLUSHED.load(Ordering::Relaxed).max(own);
    let flushed = if whole_filesystem(waiting, ours) {
        sync_filesystem(root)?;
        Flushed::Filesystem
    } else {
        let (files, dirs) = flush_each(root)?;
        Flushed::Files(files, dirs)
    };
    let _ = UNFLUSHED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(own)));
    tracing::debug!(tree = %root.display(), ?flushed, waiting, ours, "flushed");
    Ok(flushed)
}

/// Flushes several trees, `(root, size, files)`, that finished unpacking while an earlier flush
/// ran: one `syncfs` for all of them when that is the flush (it writes each tree anyway), else
/// each tree's files. The trees are all in one store, on one filesystem.
pub(crate) fn flush_trees(trees: &[(&Path, u64, u64)]) -> Result<Flushed> {
    let Some((first, ..)) = trees.first() else { return Ok(Flushed::Files(0, 0)) };
    let waiting = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| unwritten(&m));
    let own: u64 = trees.iter().map(|(_, size, files)| size + files * PER_FILE).sum();
    let ours = UNFLUSHED.load(Ordering::Relaxed).max(own);
    let flushed = if whole_filesystem(waiting, ours) {
        sync_filesystem(first)?;
        Flushed::Filesystem
    } else {
        let (mut files, mut dirs) = (0, 0);
        for (root, ..) in trees {
            let (f, d) = flush_each(root)?;
            files += f;
            dirs += d;
        }
        Flushed::Files(files, dirs)
    };
    let _ = UNFLUSHED.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(own)));
    tracing::debug!(trees = trees.len(), ?flushed, waiting, ours, "flushed together");
    Ok(flushed)
}

/// Whether one `syncfs` is the flush: only when what waits to be written on the machine is known,
/// and is nearly all this process's own.
fn whole_filesystem(waiting: Option<u64>, ours: u64) -> bool {
    waiting.is_some_and(|w| w <= ours.saturating_add(SLACK))
}

/// Bytes dirty or being written back on the whole machine, from the text of `/proc/meminfo`.
fn unwritten(meminfo: &str) -> Option<u64> {
    let kib = |field: &str| {
        let line = meminfo.lines().find(|l| l.starts_with(field))?;
        line[field.len()..].trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
    };
    Some((kib("Dirty:")? + kib("Writeback:")?) * 1024)
}

/// Flushes the filesystem holding `dir` to disk in one call.
fn sync_filesystem(dir: &Path) -> Result<()> {
    let handle = fs_err::File::open(dir)?;
    rustix::fs::syncfs(&handle).map_err(|e| at(dir, e.into()))?;
    Ok(())
}

/// Flushes every regular file and directory under `root` (itself included) to disk, each on its
/// own; returns how many of each it flushed.
fn flush_each(root: &Path) -> Result<(usize, usize)> {
    let (mut batches, mut dirs) = (Vec::new(), Vec::new());
    crate::tree::visit_dirs(root, &mut |path, _, files| {
        let mut files = files.into_iter().peekable();
        while files.peek().is_some() {
            batches.push(Batch { dir: path.to_path_buf(), files: files.by_ref().take(64).collect() });
        }
        dirs.push(path.to_path_buf());
        Ok(())
    })?;
    on_threads(IN_FLIGHT, &batches, |batch, _: &mut Vec<()>| {
        let dir = DirFd::open(&batch.dir)?;
        for name in &batch.files {
            let shown = || batch.dir.join(name);
            let file = crate::sys::open_file_at(&dir, name).map_err(|e| at(&shown(), e))?;
            file.sync_all().map_err(|e| at(&shown(), e))?;
        }
        Ok(())
    })?;
    // Directories last: each holds the entries of files already on disk.
    on_threads(IN_FLIGHT, &dirs, |dir, _: &mut Vec<()>| {
        DirFd::open(dir)?.sync().map_err(|e| at(dir, e))?;
        Ok(())
    })?;
    Ok((batches.iter().map(|b| b.files.len()).sum(), dirs.len()))
}

fn at(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot flush `{}` to disk: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_a_tree_of_files_directories_and_symlinks() {
        let dir = envctl_testkit::tempdir();
        let root = dir.path().join("t");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for i in 0..200 {
            std::fs::write(root.join("a").join(format!("f{i}")), b"x").unwrap();
        }
        std::fs::write(root.join("a/b/g"), b"y").unwrap();
        std::os::unix::fs::symlink("a/b/g", root.join("l")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
        // Read-only, as a finished tree is.
        std::fs::set_permissions(root.join("a/f0"), std::fs::Permissions::from_mode(0o444)).unwrap();
        assert_eq!(flush_each(&root).unwrap(), (201, 3));
        let err = flush_each(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        // However it is flushed, the tree is flushed.
        assert!(matches!(flush_tree(&root, 201, 202).unwrap(), Flushed::Filesystem | Flushed::Files(201, 3)));
    }

    #[test]
    fn syncfs_only_when_what_waits_is_nearly_all_ours() {
        assert!(whole_filesystem(Some(0), 0));
        assert!(whole_filesystem(Some(100 << 20), 90 << 20));
        assert!(!whole_filesystem(Some((100 << 20) + SLACK + 1), 100 << 20));
        assert!(!whole_filesystem(Some(1 << 30), 10 << 20));
        // Not known (no /proc): file by file, which is never wrong.
        assert!(!whole_filesystem(None, 1 << 40));
    }

    #[test]
    fn reads_what_waits_to_be_written_from_meminfo() {
        let meminfo = "MemTotal:       24589364 kB\nDirty:              1540 kB\nWriteback:           12 kB\nWritebackTmp:        0 kB\n";
        assert_eq!(unwritten(meminfo), Some((1540 + 12) * 1024));
        assert_eq!(unwritten("Dirty: 5 kB\n"), None);
        assert_eq!(unwritten("Dirty: x kB\nWriteback: 0 kB\n"), None);
    }

    use std::os::unix::fs::PermissionsExt;
}
