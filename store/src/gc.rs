//! Garbage collection and temporary roots.
//!
//! Roots: every generation of every profile (`profiles/*-link`, and in a shared home
//! `profiles/per-user/*/*-link` and `profiles/per-team/*/*-link`), every symlink in `gcroots/`
//! (explicit roots), and every live temporary root in `gcroots/tmp/`. A temporary root is a file
//! listing store paths whose owner holds an exclusive `flock` on it for its whole life (a shell
//! session, an `apply` between installing and switching). GC counts it as live exactly when it
//! cannot take that lock, so a killed process releases its roots by dying, and a recycled pid
//! cannot keep garbage alive. Stale ones are removed.
//!
//! Everything reachable from a root through references is kept. The rest is removed in this
//! order, by a store opened to collect ([`Store::open_collector`]: the GC lock, then the store lock
//! exclusively, never upgraded from a shared one), so no install runs beside it:
//!
//! 1. unregister the dead paths in one transaction (the commit point: from here the database
//!    no longer claims them);
//! 2. rename each into `store/.trash/`;
//! 3. delete the trash (after the store lock is released).
//!
//! A GC killed after 1 leaves unregistered directories and its marker (`sweep.rs`), so the next
//! idle store sweeps them; one
//! killed in 3 leaves trash, swept the same way. The database never claims a path that is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::Result;
use crate::lock::FileLock;
use crate::profile::Profiles;
use crate::store::Store;
use envctl_core::StorePathName;

/// A temporary GC root, live while this value (or a process it was handed to) exists.
#[derive(Debug)]
pub struct TempRoot {
    lock: FileLock,
    path: PathBuf,
}

impl TempRoot {
    /// Writes `gcroots/tmp/<unique>` listing `paths` (store path names) and locks it.
    pub fn create(home: &Path, paths: &[String]) -> Result<TempRoot> {
        let dir = home.join("gcroots/tmp");
        fs_err::create_dir_all(&dir)?;
        let nanos =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = dir.join(format!("{}-{nanos}", std::process::id()));
        // Lock before writing: GC must never see an unlocked root with contents it could miss.
        let lock = FileLock::exclusive(&path)?;
        let mut f = fs_err::OpenOptions::new().write(true).truncate(true).open(&path)?;
        for p in paths {
            writeln!(f, "{p}")?;
        }
        f.flush()?;
        Ok(TempRoot { lock, path })
    }

    /// Lets the lock survive `exec`: the executed program (and its children) hold the root.
    pub fn inherit_across_exec(&self) -> Result<()> {
        // A root is created by the home's owner, who always holds its lock.
        Ok(self.lock.keep_across_exec()?)
    }

    /// The root file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What GC did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    /// Paths removed (or to remove), with their sizes.
    pub removed: Vec<(String, u64)>,
    /// Bytes freed.
    pub bytes: u64,
    /// Live paths kept.
    pub kept: usize,
    /// Stale temporary roots removed.
    pub stale_roots: usize,
}

/// Store path names the roots name. A root is recognised by the store-path names in its target,
/// not by a path prefix: the home may have been spelled another way when the link was written (a
/// symlink to it, `..`, a bind mount). Every component that has the shape of a store path name is
/// taken; one that is not a valid path keeps nothing alive, so this errs only towards keeping.
fn root_names(home: &Path, stale: &mut usize, dry_run: bool) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut add = |target: &Path| {
        for component in target.components() {
            let text = component.as_os_str().to_string_lossy();
            if StorePathName::parse(&text).is_ok() {
                names.insert(text.into_owned());
            }
        }
    };
    // The home's profiles, and in a shared home each user's and each team's
    // (`profiles/per-user/NAME/`, `profiles/per-team/NAME/`).
    let mut dirs = vec![Profiles::open(home)?];
    for kind in ["per-user", "per-team"] {
        if let Ok(rd) = std::fs::read_dir(home.join("profiles").join(kind)) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(Profiles::in_dir(&e.path()));
                }
            }
        }
    }
    for profiles in &dirs {
        profiles.sweep_all()?;
        for p in profiles.roots()? {
            add(&p);
        }
    }
    let gcroots = home.join("gcroots");
    fs_err::create_dir_all(gcroots.join("tmp"))?;
    for entry in fs_err::read_dir(&gcroots)? {
        let entry = entry?;
        if entry.file_type()?.is_symlink() {
            add(&fs_err::read_link(entry.path())?);
            // A root may point at a link (a profile) rather than into the store.
            if let Ok(real) = std::fs::canonicalize(entry.path()) {
                add(&real);
            }
        }
    }
    // A root may have companions, `<root>.<something>` (a session's shell startup files): they
    // go when their root goes.
    let mut companions = Vec::new();
    for entry in fs_err::read_dir(gcroots.join("tmp"))? {
        let path = entry?.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().contains('.')) {
            companions.push(path);
            continue;
        }
        match FileLock::try_exclusive(&path)? {
            Some(_stale) => {
                *stale += 1;
                if !dry_run {
                    let _ = std::fs::remove_file(&path);
                }
            }
            None => {
                for line in fs_err::read_to_string(&path)?.lines() {
                    let line = line.trim();
                    if !line.is_empty() {
                        add(Path::new(line));
                    }
                }
            }
        }
    }
    if !dry_run {
        for path in companions.iter().filter(|p| !p.with_extension("").exists()) {
            let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
        }
    }
    Ok(names)
}

impl Store {
    /// Collects garbage (see the module docs). `home` holds `profiles/` and `gcroots/`.
    pub fn gc(&self, home: &Path, dry_run: bool) -> Result<GcReport> {
        if !self.writable() && !dry_run {
            return Err(crate::error::Error::ReadOnly(self.dir().to_path_buf()));
        }
        if self.collector.is_none() {
            return Err(crate::error::Error::Invalid {
                what: "store",
                value: self.dir().display().to_string(),
                rule: "garbage is collected by a store opened with `Store::open_collector`",
            });
        }
        let mut report = GcReport::default();
        let roots = root_names(home, &mut report.stale_roots, dry_run)?;
        let records: BTreeMap<String, u64> = self.list()?.into_iter().map(|r| (r.name, r.size)).collect();
        // Closure over references.
        let mut live: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<String> = roots.into_iter().filter(|r| records.contains_key(r)).collect();
        while let Some(name) = stack.pop() {
            if live.insert(name.clone()) {
                stack.extend(self.references_of(&name)?);
            }
        }
        let dead: Vec<String> = records.keys().filter(|n| !live.contains(*n)).cloned().collect();
        report.kept = live.len();
        report.removed = dead.iter().map(|n| (n.clone(), records[n])).collect();
        report.bytes = report.removed.iter().map(|(_, s)| s).sum();
        if dry_run || dead.is_empty() {
            return Ok(report);
        }
        // From the transaction until its rename, a dead path is an unregistered directory.
        self.unsettled.begin(dead.iter().map(String::as_str))?;
        self.unregister_all(&dead)?;
        let trash = self.dir().join(".trash");
        for name in &dead {
            let from = self.dir().join(name);
            if std::fs::symlink_metadata(&from).is_ok() {
                crate::sys::rename_dir(&from, &trash.join(name))?;
            }
            self.unsettled.settle(name);
        }
        self.release_exclusive()?;
        // Deleting waits on the disk more than on the CPU: two deletions side by side take about
        // 60% of the time of one after the other on these machines.
        let doomed: Vec<PathBuf> = dead.iter().map(|n| trash.join(n)).collect();
        crate::tempdir::remove_trees(&doomed, self.options.jobs.clamp(2, 4))?;
        Ok(report)
    }
}
