//! The store: open it, install into it, list, verify and optimise it.
//!
//! ```text
//! <home>/store/
//! ├── .envctl/
//! │   ├── layout            store layout version ("1")
//! │   ├── db.sqlite         valid paths, sources, references (see `db`)
//! │   ├── store.lock        the store-wide lock (see `lock`)
//! │   └── locks/            per-source and per-path locks
//! ├── .tmp/                 work in progress: one directory per install attempt
//! ├── .trash/               paths being deleted
//! └── <hash>-<name>-<version>/   read-only package trees
//! ```
//!
//! # Installing is atomic
//!
//! The download is hashed (sha256) as it streams and, for tar formats, unpacked on the fly into a
//! fresh directory under `.tmp/`; zip formats land in a file there first, which is verified
//! before it is opened. The tree hash falls out of the unpack. Only when the stated sha256 matched
//! is the finished, read-only tree flushed to disk (unless [`StoreOptions::fsync`] is off), renamed
//! into place, and then registered in one database transaction. A crash before the rename leaves
//! only `.tmp/` debris; a crash between the rename and the registration leaves an unregistered
//! directory, and the marker the process left in `.envctl/unsettled/` before its first rename.
//! Both are swept by the next process that finds the store idle (it can take the store lock
//! exclusively): the marker is what tells it to read the whole store (`sweep.rs`), so a store
//! that nobody crashed in is not read at every open. An install that meets an unregistered
//! directory in its way replaces it.
//!
//! # Concurrency
//!
//! Installs of one source are serialized by the source lock, and the second process finds the
//! first one's registration when it gets the lock, so it neither downloads nor unpacks. Two
//! sources that unpack to the same tree meet at the path lock; the second one only records its
//! source.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::db::{Database, PathRecord, SourceRecord};
use crate::error::{Error, Result};
use crate::fetch::{FetchOptions, Fetcher};
use crate::flush::flush_tree;
use crate::layer::{Host, Layer};
use crate::lock::FileLock;
use crate::sweep::Unsettled;
use crate::tempdir::{TempDir, remove_tree};
use crate::unpack::Limits;
use envctl_core::StorePathName;

/// The store layout version this build writes.
pub const LAYOUT_VERSION: i64 = 1;

/// How the store behaves.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Caps on what one archive may unpack to.
    pub limits: Limits,
    /// Fetching: mirrors, retries, timeouts.
    pub fetch: FetchOptions,
    /// Most installs running at once in [`Store::install_all`].
    pub jobs: usize,
    /// Flush a finished tree to disk (see `flush.rs`) before it is renamed into place and registered,
    /// so that a power loss cannot leave a registered path with files the disk never received.
    /// A killed process is safe either way; this guards against the machine going down.
    pub fsync: bool,
    /// Refuse to run a build backend or a bytecode compiler where no sandbox can be made (a
    /// daemon's store); otherwise they run unsandboxed there, after a warning (see `sandbox.rs`).
    pub require_sandbox: bool,
    /// How long a build backend or a bytecode compiler may run.
    pub build_timeout: std::time::Duration,
    /// More directories a sandbox hides (a daemon's socket directory).
    pub hidden: Vec<PathBuf>,
    /// The language layer: what a wheel is, how interpreters and derived paths are made (see
    /// `layer.rs`). Without one the store refuses them.
    pub layer: Option<std::sync::Arc<dyn Layer>>,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            limits: Limits::default(),
            fetch: FetchOptions::default(),
            jobs: 4,
            fsync: true,
            require_sandbox: false,
            build_timeout: std::time::Duration::from_secs(3600),
            hidden: Vec::new(),
            layer: None,
        }
    }
}

/// Everything the store knows about one path.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathInfo {
    /// The full path on disk.
    pub path: PathBuf,
    /// Its record.
    #[serde(flatten)]
    pub record: PathRecord,
    /// Sources it was installed from.
    pub sources: Vec<SourceRecord>,
    /// Paths it refers to.
    pub references: Vec<String>,
}

/// An open store. Holds the store lock shared for its whole life; a store opened to collect
/// garbage ([`Store::open_collector`]) holds the GC lock and the store lock exclusively instead.
pub struct Store {
    pub(crate) dir: PathBuf,
    db: Mutex<Database>,
    pub(crate) fetcher: Fetcher,
    pub(crate) options: StoreOptions,
    /// Whether this process may write `.envctl/` (asked once, when the store is opened).
    writable: bool,
    /// The paths this process may leave unregistered if it dies now (dropped before the lock).
    pub(crate) unsettled: Unsettled,
    _lock: FileLock,
    /// The GC lock, held by a store opened to collect garbage.
    pub(crate) collector: Option<FileLock>,
}

impl Store {
    /// Opens the store at `dir` (`<home>/store`), creating it if needed, and sweeps leftovers of
    /// crashed processes when no other process is using it.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store> {
        Store::open_as(dir, options, false)
    }

    /// Opens the store at `dir` to collect garbage ([`Store::gc`]): takes the GC lock (one
    /// collector at a time), then the store lock exclusively (no install, switch or optimise runs
    /// beside it), waiting for each with the lock module's notice. Never an upgrade of a shared
    /// lock: the process holds neither before.
    pub fn open_collector(dir: &Path, options: StoreOptions) -> Result<Store> {
        Store::open_as(dir, options, true)
    }

    fn open_as(dir: &Path, options: StoreOptions, collector: bool) -> Result<Store> {
        let meta = dir.join(".envctl");
        for d in [dir.to_path_buf(), meta.clone(), meta.join("locks"), dir.join(".tmp"), dir.join(".trash")] {
            fs_err::create_dir_all(&d)?;
        }
        check_layout(&meta.join("layout"))?;
        let lock_path = meta.join("store.lock");
        let writable = may_write(&meta);
        // A reader may not create the GC lock, and can collect nothing (only list what would
        // go): it takes none.
        let collector = match collector {
            true if writable => Some(FileLock::exclusive(&meta.join("gc.lock"))?),
            true => Some(FileLock::none()),
            false => None,
        };
        let (lock, idle) = if collector.is_some() && writable {
            (FileLock::exclusive(&lock_path)?, true)
        } else if collector.is_some() {
            (FileLock::shared(&lock_path)?, false)
        } else {
            match FileLock::try_exclusive(&lock_path)? {
                Some(lock) => (lock, true),
                None => (FileLock::shared(&lock_path)?, false),
            }
        };
        let db = Database::open(&meta.join("db.sqlite"))?;
        let store = Store {
            dir: dir.to_path_buf(),
            db: Mutex::new(db),
            fetcher: Fetcher::new(options.fetch.clone()),
            unsettled: Unsettled::new(dir, options.fsync),
            options,
            writable,
            _lock: lock,
            collector,
        };
        if store.writable {
            // Verify takes it shared, so it must exist before anyone who may only read comes.
            let maintenance = meta.join("maintenance.lock");
            if !maintenance.exists() {
                drop(FileLock::try_exclusive(&maintenance)?);
            }
        }
        // A user who may only read the store leaves leftovers for its owner to sweep.
        if idle && store.writable {
            crate::sweep::sweep(&store.dir, &store.db(), store.collector.is_some())?;
        }
        if idle && store.collector.is_none() {
            store._lock.downgrade()?;
        }
        Ok(store)
    }

    /// Whether a store has been made at `dir` (its database exists): a reader that finds none
    /// has nothing to read and creates nothing.
    pub fn exists(dir: &Path) -> bool {
        dir.join(".envctl/db.sqlite").exists()
    }

    /// Opens the store at `dir` if one has been made there (see [`Store::exists`]).
    pub fn open_existing(dir: &Path, options: StoreOptions) -> Result<Option<Store>> {
        if !Store::exists(dir) {
            return Ok(None);
        }
        Store::open(dir, options).map(Some)
    }

    /// The store-wide lock, shared, without opening the store: what a session holds from
    /// choosing its generation until its root is registered, so that GC cannot remove the
    /// generation in between (GC takes it exclusively). Made (with the store's metadata
    /// directory) when `create`; `None` when there is no store and `create` is false. A reader
    /// who may not open the lock file gets a lock that locks nothing (see `lock.rs`).
    pub fn shared_lock(dir: &Path, create: bool) -> Result<Option<FileLock>> {
        let meta = dir.join(".envctl");
        if !meta.is_dir() {
            if !create {
                return Ok(None);
            }
            fs_err::create_dir_all(&meta)?;
        }
        Ok(Some(FileLock::shared(&meta.join("store.lock"))?))
    }

    /// Whether this process may change the store (its owner, or a member of a group that may):
    /// others can still read it, run sessions from it and verify it.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database record of the store path `name`, if it is valid.
    pub fn record(&self, name: &str) -> Result<Option<PathRecord>> {
        self.db().get(name)
    }

    /// The layer this store was opened with, or an error saying what needed one.
    pub(crate) fn layer(&self, what: &str) -> Result<&dyn Layer> {
        self.options.layer.as_deref().ok_or_else(|| {
            Error::Build(format!(
                "{what} needs a language layer, and this store was opened without one (a bug in the caller)"
            ))
        })
    }

    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, Database> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves a finished, read-only tree into place as `name` and registers it, under the path
    /// lock: the commit point of every install. A path that became valid meanwhile is kept (and
    /// only gains the source); debris of an install that crashed between its rename and its
    /// registration is replaced.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit(
        &self,
        work: &TempDir,
        tree_dir: &Path,
        name: &StorePathName,
        tree_hash: &crate::tree::TreeHash,
        stats: crate::tree::TreeStats,
        (package, version): (String, String),
        source: Option<(&str, &SourceRecord)>,
        references: &[String],
    ) -> Result<(PathBuf, PathRecord)> {
        if self.options.fsync {
            flush_tree(tree_dir, stats.size, stats.files)?;
        }
        self.commit_flushed(work, tree_dir, name, tree_hash, stats, (package, version), source, references)
    }

    /// [`Store::commit`] of a tree already flushed (or with flushing off).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_flushed(
        &self,
        work: &TempDir,
        tree_dir: &Path,
        name: &StorePathName,
        tree_hash: &crate::tree::TreeHash,
        stats: crate::tree::TreeStats,
        (package, version): (String, String),
        source: Option<(&str, &SourceRecord)>,
        references: &[String],
    ) -> Result<(PathBuf, PathRecord)> {
        let dest = self.dir.join(name.as_str());
        let _path_lock = self.path_lock(name)?;
        let mut db = self.db();
        let trash = self.dir.join(".trash").join(format!("{}-{}", name, work.unique()));
        let moved = db.get(name.as_str())?.is_none() || !dest.is_dir();
        if moved {
            self.unsettled.begin([name.as_str()])?;
            if fs_err::symlink_metadata(&dest).is_ok() {
                crate::sys::rename_dir(&dest, &trash)?;
                remove_tree(&trash)?;
            }
            crate::sys::rename_dir(tree_dir, &dest)?;
        }
        let record = PathRecord {
            name: name.to_string(),
            package,
            version,
            tree_hash: tree_hash.to_string(),
            size: stats.size,
            files: stats.files,
            registered_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        };
        if let Err(e) = db.register(&record, source, references) {
            // Not registered, so not in the store: take the tree out now rather than leave it for
            // the next idle command's sweep (it holds the path lock, so nobody else moved it in).
            if moved && crate::sys::rename_dir(&dest, &trash).is_ok() {
                self.unsettled.settle(name.as_str());
                let _ = remove_tree(&trash);
            }
            return Err(e);
        }
        self.unsettled.settle(name.as_str());
        let record = db.get(name.as_str())?.ok_or_else(|| Error::NotInStore(name.to_string()))?;
        Ok((dest, record))
    }

    /// The maintenance lock: optimise and repair rewrite entries inside valid paths, so they hold
    /// it exclusively; verify holds it shared and never sees either of them halfway.
    pub(crate) fn maintenance_lock(&self, exclusive: bool) -> Result<Option<FileLock>> {
        let path = self.dir.join(".envctl/maintenance.lock");
        if exclusive && !self.writable() {
            return Err(Error::ReadOnly(self.dir.clone()));
        }
        if !path.exists() && !self.writable() {
            // Nobody who could rewrite the store has opened it since it was made.
            return Ok(None);
        }
        Ok(Some(if exclusive { FileLock::exclusive(&path)? } else { FileLock::shared(&path)? }))
    }

    /// The per-path lock: held while a path is moved into place, registered or repaired.
    pub(crate) fn path_lock(&self, name: &StorePathName) -> Result<FileLock> {
        let lock = self.dir.join(".envctl/locks").join(format!("{}.lock", name.hash_part()));
        Ok(FileLock::exclusive(&lock)?)
    }

    /// Lets installs and switches run again once a collector has swept (it keeps the GC lock
    /// until it is dropped, and deletes its trash meanwhile).
    pub(crate) fn release_exclusive(&self) -> Result<()> {
        Ok(self._lock.downgrade()?)
    }

    /// The paths a valid path refers to.
    pub fn references_of(&self, name: &str) -> Result<Vec<String>> {
        self.db().references(name)
    }

    pub(crate) fn unregister_all(&self, names: &[String]) -> Result<()> {
        self.db().unregister_all(names)
    }

    /// The size in bytes of every valid path, by name (what [`Store::list`] gives, without the
    /// rest of each record).
    pub fn sizes(&self) -> Result<std::collections::HashMap<String, u64>> {
        self.db().sizes()
    }

    /// Every valid path.
    pub fn list(&self) -> Result<Vec<PathRecord>> {
        self.db().list()
    }

    /// Turns a store path as a user gives it (file name, or full path inside this store) into a
    /// valid path's name.
    pub fn resolve(&self, text: &str) -> Result<StorePathName> {
        // A relative path that exists (`demo-home/profiles/nlp`) is read from where envctl runs.
        let absolute;
        let p = if !Path::new(text).is_absolute() && (text.contains('/') || Path::new(text).exists()) {
            absolute = std::path::absolute(text)?;
            absolute.as_path()
        } else {
            Path::new(text)
        };
        if p.is_absolute() && p.parent().map(|d| d != self.dir).unwrap_or(true) {
            // A path elsewhere may still be a symlink into the store (a profile, say).
            let real = fs_err::canonicalize(p)?;
            let store = fs_err::canonicalize(&self.dir)?;
            let rel = real.strip_prefix(&store).map_err(|_| Error::NotInStore(text.to_owned()))?;
            let first = rel.components().next().ok_or_else(|| Error::NotInStore(text.to_owned()))?;
            return self.resolve(&first.as_os_str().to_string_lossy());
        }
        let name = StorePathName::parse(text)?;
        let record = self.db().get(name.as_str())?;
        match record {
            Some(_) => Ok(name),
            None => Err(Error::NotInStore(text.to_owned())),
        }
    }

    /// Everything known about one valid path.
    pub fn info(&self, name: &StorePathName) -> Result<PathInfo> {
        let db = self.db();
        let record = db.get(name.as_str())?.ok_or_else(|| Error::NotInStore(name.to_string()))?;
        Ok(PathInfo {
            path: self.dir.join(name.as_str()),
            sources: db.sources(name.as_str())?,
            references: db.references(name.as_str())?,
            record,
        })
    }
}

/// Whether this process may write into `dir` (`access(2)`, so groups and ACLs count).
fn may_write(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}

fn check_layout(path: &Path) -> Result<()> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let found: i64 = text.trim().parse().map_err(|_| Error::Invalid {
                what: "store layout file",
                value: path.display().to_string(),
                rule: "expected a version number",
            })?;
            if found > LAYOUT_VERSION {
                return Err(Error::TooNew { path: path.to_path_buf(), found, supported: LAYOUT_VERSION });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            fs_err::write(&tmp, format!("{LAYOUT_VERSION}\n"))?;
            fs_err::rename(&tmp, path)?;
            Ok(())
        }
        Err(e) => {
            Err(std::io::Error::new(e.kind(), format!("failed to read `{}`: {e}", path.display())).into())
        }
    }
}

impl Host for Store {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn record(&self, name: &str) -> Result<Option<PathRecord>> {
        Store::record(self, name)
    }

    fn run_confined(&self, command: &mut std::process::Command, work: &Path) -> Result<std::process::Output> {
        Store::run_confined(self, command, work)
    }
}
