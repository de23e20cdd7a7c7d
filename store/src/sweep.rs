//! What crashed processes leave in a store, swept by the next process that finds the store idle
//! (it holds the store lock exclusively, so nobody else is writing): `.tmp/` and `.trash/`
//! contents, what an optimise killed halfway left open, and store directories that were never
//! registered (an install killed between its rename and its registration, a GC killed between
//! its transaction and its renames).
//!
//! Finding unregistered directories means reading the whole store, so it is done only when a
//! process may have left one. A process that is about to rename a tree into the store, or to
//! unregister paths, first leaves a marker in `.envctl/unsettled/` ([`Unsettled`]), and removes
//! it when it closes the store with every such path settled (registered, or moved out). A marker
//! found by an idle store was left by a process that died in between: the whole store is read
//! then, and the marker removed. A collector reads the whole store every time (it reads every
//! record anyway), which also sweeps what a store made before the markers existed left.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use envctl_core::StorePathName;

use crate::db::Database;
use crate::error::Result;
use crate::tempdir::remove_tree;

/// The markers' directory inside a store.
pub(crate) const MARKERS: &str = ".envctl/unsettled";

/// Sweeps the store at `dir`, whose database is `db`: `.tmp/` and `.trash/` always, unregistered
/// directories when a marker says a process died with one possibly left, or when `everything`.
/// Only called while holding the store lock exclusively. Returns how many unregistered
/// directories were removed.
pub(crate) fn sweep(dir: &Path, db: &Database, everything: bool) -> Result<usize> {
    // First close what an optimise killed halfway left open (its temporary links are in .tmp).
    crate::journal::recover(dir)?;
    for leftovers in [dir.join(".tmp"), dir.join(".trash")] {
        for entry in fs_err::read_dir(&leftovers)? {
            // A program a killed envctl started may still be writing there (a build backend's
            // own children): what cannot be removed now is left for the next sweep, and the
            // command goes on; nothing in `.tmp/` is ever read.
            let path = entry?.path();
            if let Err(e) = remove_tree(&path) {
                tracing::warn!("left `{}` for a later sweep: {e}", path.display());
            }
        }
    }
    let markers: Vec<PathBuf> = match fs_err::read_dir(dir.join(MARKERS)) {
        Ok(entries) => entries.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if markers.is_empty() && !everything {
        return Ok(0);
    }
    let registered: HashSet<String> = db.names()?.into_iter().collect();
    let mut removed = 0;
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || StorePathName::parse(name).is_err() || registered.contains(name) {
            continue;
        }
        tracing::info!(path = name, "removing unregistered store path left by an interrupted install");
        let trash = dir.join(".trash").join(name);
        crate::sys::rename_dir(&entry.path(), &trash)?;
        remove_tree(&trash)?;
        removed += 1;
    }
    // Everything those processes left is gone: their markers go too.
    for marker in markers {
        fs_err::remove_file(marker)?;
    }
    Ok(removed)
}

/// This process's marker and the paths it has not settled yet (see the module docs).
#[derive(Debug)]
pub(crate) struct Unsettled {
    dir: PathBuf,
    fsync: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    marker: Option<PathBuf>,
    names: BTreeSet<String>,
}

impl Unsettled {
    /// No marker yet, for the store at `store_dir`; `fsync` flushes the marker's directory when
    /// the marker is made (before any rename it covers).
    pub(crate) fn new(store_dir: &Path, fsync: bool) -> Unsettled {
        Unsettled { dir: store_dir.join(MARKERS), fsync, state: Mutex::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before `names` may become unregistered directories: leaves the marker (once per
    /// process) and counts them unsettled.
    pub(crate) fn begin<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let mut state = self.state();
        if state.marker.is_none() {
            fs_err::create_dir_all(&self.dir)?;
            let marker = create_marker(&self.dir)?;
            if self.fsync {
                fs_err::File::open(&self.dir)?.sync_all()?;
            }
            state.marker = Some(marker);
        }
        state.names.extend(names.into_iter().map(str::to_owned));
        Ok(())
    }

    /// `name` is registered, or gone from the store's top.
    pub(crate) fn settle(&self, name: &str) {
        self.state().names.remove(name);
    }
}

impl Drop for Unsettled {
    /// With every path settled, nothing is left to find: the marker goes. Otherwise it stays for
    /// the next idle store to act on.
    fn drop(&mut self) {
        let state = self.state();
        if let Some(marker) = &state.marker
            && state.names.is_empty()
        {
            let _ = std::fs::remove_file(marker);
        }
    }
}

/// A new, empty marker `PID-N` in `dir`: N counts this process's stores, and a name a dead
/// process with the same pid left is passed over.
fn create_marker(dir: &Path) -> std::io::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = dir.join(format!("{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&marker) {
            Ok(_) => return Ok(marker),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot create `{}`: {e}", marker.display()),
                ));
            }
        }
    }
}
