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
//! directory. Both are swept by the next process that
//! finds the store idle (it can take the store lock exclusively), and an install that meets an
//! unregistered directory in its way replaces it.
//!
//! # Concurrency
//!
//! Installs of one source are serialized by the source lock, and the second process finds the
//! first one's registration when it gets the lock, so it neither downloads nor unpacks. Two
//! sources that unpack to the same tree meet at the path lock; the second one only records its
//! source.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, SystemTime};

use sha2::Digest;

use crate::db::{Database, PathRecord, SourceRecord};
use crate::error::{Error, Result};
use crate::farm::{self, FarmInput};
use crate::fetch::{FetchOptions, Fetcher, Location};
use crate::lock::FileLock;
use crate::path::{Name, Sha256, StorePathName, Version};
use crate::reporter::Reporter;
use crate::tree::{self, Node};
use crate::unpack::{self, Format, Limits, UnpackOptions, Unpacked};

/// The store layout version this build writes.
pub const LAYOUT_VERSION: i64 = 1;

/// Bytes handed from the download thread to the unpacker at a time.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between them: bounds memory at about 2 MiB per install.
const CHANNEL_DEPTH: usize = 8;

/// How the store behaves.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Caps on what one archive may unpack to.
    pub limits: Limits,
    /// Fetching: mirrors, retries, timeouts.
    pub fetch: FetchOptions,
    /// Most installs running at once in [`Store::install_all`].
    pub jobs: usize,
    /// Flush a finished tree to disk (`syncfs`) before it is renamed into place and registered,
    /// so that a power loss cannot leave a registered path with files the disk never received.
    /// A killed process is safe either way; this guards against the machine going down.
    pub fsync: bool,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions { limits: Limits::default(), fetch: FetchOptions::default(), jobs: 4, fsync: true }
    }
}

/// What to install: one artifact, how to unpack it, and what to call it.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// Where it comes from (`https://…`, `file://…`, a path, `mirror://NAME/…`).
    pub url: String,
    /// The sha256 it must have.
    pub sha256: Sha256,
    /// Package name.
    pub name: Name,
    /// Package version.
    pub version: Version,
    /// Unpack options.
    pub unpack: UnpackOptions,
    /// Store paths this one refers to (registered as references; they must be valid).
    pub references: Vec<StorePathName>,
}

/// The result of an install.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The store path's full path on disk.
    pub path: PathBuf,
    /// Its database record.
    pub record: PathRecord,
    /// False when the store already had it and nothing was fetched.
    pub fetched: bool,
    /// Archive entries skipped on purpose (device nodes, fifos).
    pub skipped: Vec<String>,
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

/// One problem found by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Corruption {
    /// The store path's file name.
    pub name: String,
    /// What is wrong.
    pub problem: String,
}

/// The outcome of [`Store::verify`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Paths checked.
    pub checked: usize,
    /// Paths whose tree no longer matches the database.
    pub corrupted: Vec<Corruption>,
}

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

/// An open store. Holds the store lock shared for its whole life.
pub struct Store {
    dir: PathBuf,
    db: Mutex<Database>,
    fetcher: Fetcher,
    options: StoreOptions,
    _lock: FileLock,
}

impl Store {
    /// Opens the store at `dir` (`<home>/store`), creating it if needed, and sweeps leftovers of
    /// crashed processes when no other process is using it.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store> {
        let meta = dir.join(".envctl");
        for d in [dir.to_path_buf(), meta.clone(), meta.join("locks"), dir.join(".tmp"), dir.join(".trash")] {
            fs_err::create_dir_all(&d)?;
        }
        check_layout(&meta.join("layout"))?;
        let lock_path = meta.join("store.lock");
        let (lock, idle) = match FileLock::try_exclusive(&lock_path)? {
            Some(lock) => (lock, true),
            None => (FileLock::shared(&lock_path)?, false),
        };
        let db = Database::open(&meta.join("db.sqlite"))?;
        let store = Store {
            dir: dir.to_path_buf(),
            db: Mutex::new(db),
            fetcher: Fetcher::new(options.fetch.clone()),
            options,
            _lock: lock,
        };
        if idle {
            store.sweep()?;
            store._lock.downgrade()?;
        }
        Ok(store)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Database> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes what crashed processes left: `.tmp/` and `.trash/` contents, and store directories
    /// that were never registered. Only called while holding the store lock exclusively.
    fn sweep(&self) -> Result<()> {
        for leftovers in [self.dir.join(".tmp"), self.dir.join(".trash")] {
            for entry in fs_err::read_dir(&leftovers)? {
                remove_tree(&entry?.path())?;
            }
        }
        let db = self.db();
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || StorePathName::parse(name).is_err() {
                continue;
            }
            if db.get(name)?.is_none() {
                tracing::info!(
                    path = name,
                    "removing unregistered store path left by an interrupted install"
                );
                let trash = self.dir.join(".trash").join(name);
                fs_err::rename(entry.path(), &trash)?;
                remove_tree(&trash)?;
            }
        }
        Ok(())
    }

    /// Installs one artifact, or finds it installed. Reports under id 0.
    pub fn install(&self, request: &InstallRequest, reporter: &dyn Reporter) -> Result<Installed> {
        let result = self.install_one(0, request, reporter);
        reporter.finished(0);
        result
    }

    /// Installs several artifacts, at most `jobs` at a time; one result per request, in order.
    pub fn install_all(
        &self,
        requests: &[InstallRequest],
        reporter: &dyn Reporter,
    ) -> Vec<Result<Installed>> {
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Result<Installed>>>> =
            requests.iter().map(|_| Mutex::new(None)).collect();
        let workers = self.options.jobs.clamp(1, requests.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(request) = requests.get(i) else { break };
                        let result = self.install_one(i, request, reporter);
                        reporter.finished(i);
                        *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .expect("every request was taken by a worker")
            })
            .collect()
    }

    fn source_key(request: &InstallRequest, format: Format) -> String {
        format!(
            "{} {} {} {} strip={} subdir={}",
            request.sha256,
            request.name.as_str(),
            request.version.as_str(),
            format.name(),
            request.unpack.strip_components,
            request.unpack.subdir.as_deref().unwrap_or("")
        )
    }

    /// The install request a source key was made from (see [`Store::source_key`]), with `url`.
    fn request_from_key(key: &str, url: &str) -> Option<InstallRequest> {
        let mut parts = key.splitn(6, ' ');
        let sha256 = Sha256::parse(parts.next()?).ok()?;
        let name = Name::parse(parts.next()?).ok()?;
        let version = Version::parse(parts.next()?).ok()?;
        let format = Format::parse(parts.next()?).ok()?;
        let strip_components = parts.next()?.strip_prefix("strip=")?.parse().ok()?;
        let subdir = parts.next()?.strip_prefix("subdir=")?;
        Some(InstallRequest {
            url: url.to_owned(),
            sha256,
            name,
            version,
            unpack: UnpackOptions {
                format: Some(format),
                strip_components,
                subdir: (!subdir.is_empty()).then(|| subdir.to_owned()),
            },
            references: Vec::new(),
        })
    }

    /// Puts a corrupted or missing path right: fetches one of its recorded sources again (each in
    /// turn until one works), unpacks it, and only if the result hashes to the registered tree
    /// hash replaces what is on disk, under the path lock. The database is not changed. A path
    /// with no source (a generation) cannot be repaired this way: its profile is applied again.
    pub fn repair(&self, name: &str, reporter: &dyn Reporter) -> Result<()> {
        let record = self.db().get(name)?.ok_or_else(|| Error::NotInStore(name.to_owned()))?;
        let sources = self.db().sources_of(name)?;
        if sources.is_empty() {
            return Err(Error::Unrepairable {
                name: name.to_owned(),
                why: "no source is recorded for it (a generation is rebuilt by applying its profile again)"
                    .into(),
            });
        }
        let mut failures = Vec::new();
        for (key, url) in &sources {
            let Some(request) = Self::request_from_key(key, url) else {
                failures.push(format!("{url}: unreadable source record `{key}`"));
                continue;
            };
            let format = request.unpack.format.expect("set from the key");
            let work = TempDir::new(&self.dir.join(".tmp"))?;
            let (unpacked, tree_dir, from) = match self.fetch_and_unpack(0, &request, format, &work, reporter)
            {
                Ok(done) => done,
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            let tree_hash = unpacked.tree.tree_hash().to_string();
            if tree_hash != record.tree_hash {
                failures.push(format!(
                    "{from} now unpacks to tree {tree_hash}, not the registered {}",
                    record.tree_hash
                ));
                continue;
            }
            if self.options.fsync {
                sync_filesystem(&tree_dir)?;
            }
            let dest = self.dir.join(name);
            let _path_lock = self.path_lock(&StorePathName::parse(name)?)?;
            if fs_err::symlink_metadata(&dest).is_ok() {
                // One atomic swap: a reader sees the old tree or the new one, never no tree.
                exchange(&tree_dir, &dest)?;
                remove_tree(&tree_dir)?;
            } else {
                fs_err::rename(&tree_dir, &dest)?;
            }
            return Ok(());
        }
        Err(Error::Unrepairable { name: name.to_owned(), why: failures.join("; ") })
    }

    fn found(&self, record: PathRecord) -> Option<Installed> {
        let path = self.dir.join(&record.name);
        path.is_dir().then_some(Installed { path, record, fetched: false, skipped: Vec::new() })
    }

    /// The installed path for a request, if the store has it; fetches nothing.
    pub fn find(&self, request: &InstallRequest) -> Result<Option<Installed>> {
        let format = match request.unpack.format {
            Some(f) => f,
            None => match Format::from_file_name(&request.url) {
                Some(f) => f,
                None => return Ok(None),
            },
        };
        Ok(self.db().path_for_source(&Self::source_key(request, format))?.and_then(|r| self.found(r)))
    }

    fn install_one(&self, id: usize, request: &InstallRequest, reporter: &dyn Reporter) -> Result<Installed> {
        let format = match request.unpack.format {
            Some(f) => f,
            None => Format::from_file_name(&request.url)
                .ok_or_else(|| Error::UnknownFormat(request.url.clone()))?,
        };
        let key = Self::source_key(request, format);
        {
            // References must be valid before any work is done; registration checks them again.
            let db = self.db();
            for reference in &request.references {
                if db.get(reference.as_str())?.is_none() {
                    return Err(Error::NotInStore(reference.to_string()));
                }
            }
        }
        if let Some(found) = self.db().path_for_source(&key)?.and_then(|r| self.found(r)) {
            return Ok(found);
        }
        let locks = self.dir.join(".envctl/locks");
        let _source_lock = FileLock::exclusive(
            &locks.join(format!("{}.lock", &blake3::hash(key.as_bytes()).to_hex()[..32])),
        )?;
        // Another process may have installed it while we waited for the lock.
        if let Some(found) = self.db().path_for_source(&key)?.and_then(|r| self.found(r)) {
            return Ok(found);
        }

        let work = TempDir::new(&self.dir.join(".tmp"))?;
        let (unpacked, tree_dir, url) = self.fetch_and_unpack(id, request, format, &work, reporter)?;
        let tree_hash = unpacked.tree.tree_hash();
        let stats = unpacked.tree.stats();
        let name = StorePathName::derive(&request.name, &request.version, &tree_hash);
        let package = (request.name.as_str().to_owned(), request.version.as_str().to_owned());
        let source = SourceRecord { sha256: request.sha256.to_string(), url };
        let references: Vec<String> = request.references.iter().map(|r| r.to_string()).collect();
        let (dest, record) = self.commit(
            &work,
            &tree_dir,
            &name,
            &tree_hash,
            stats,
            package,
            Some((&key, &source)),
            &references,
        )?;
        Ok(Installed { path: dest, record, fetched: true, skipped: unpacked.skipped })
    }

    /// Tries each location of the source, retrying transient failures with backoff. Returns the
    /// unpacked tree, where it is, and the URL it came from.
    fn fetch_and_unpack(
        &self,
        id: usize,
        request: &InstallRequest,
        format: Format,
        work: &TempDir,
        reporter: &dyn Reporter,
    ) -> Result<(Unpacked, PathBuf, String)> {
        let locations = self.fetcher.locations(&request.url)?;
        let options = self.fetcher.options();
        let mut failures: Vec<Error> = Vec::new();
        for location in &locations {
            let mut attempt = 0;
            loop {
                let tree_dir = work.fresh("tree")?;
                match self.attempt(id, location, request, format, work, &tree_dir, reporter) {
                    Ok(unpacked) => return Ok((unpacked, tree_dir, location.to_string())),
                    Err(e) if e.should_retry() && attempt < options.retries => {
                        let delay = options.backoff * 2u32.saturating_pow(attempt);
                        reporter.retrying(id, &e, attempt + 1, delay);
                        tracing::warn!(error = %e, attempt = attempt + 1, "retrying after {delay:?}");
                        std::thread::sleep(delay);
                        attempt += 1;
                    }
                    // This location failed; another may serve the right bytes.
                    Err(
                        e @ (Error::HttpStatus { .. }
                        | Error::Transport { .. }
                        | Error::HashMismatch { .. }
                        | Error::Io(_)),
                    ) => {
                        failures.push(e);
                        break;
                    }
                    // The bytes had the stated sha256, so every location serves this archive.
                    Err(e) => return Err(e),
                }
            }
        }
        if failures.len() == 1 {
            return Err(failures.pop().expect("one failure"));
        }
        Err(Error::AllLocationsFailed {
            url: request.url.clone(),
            errors: failures.iter().map(|e| e.to_string()).collect(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        id: usize,
        location: &Location,
        request: &InstallRequest,
        format: Format,
        work: &TempDir,
        tree_dir: &Path,
        reporter: &dyn Reporter,
    ) -> Result<Unpacked> {
        let opened = self.fetcher.open(location)?;
        let label = location.to_string();
        reporter.download_started(id, &label, opened.size);
        let limits = self.options.limits;
        std::thread::scope(|s| {
            let (tx, rx) = sync_channel(CHANNEL_DEPTH);
            let reader = opened.reader;
            s.spawn(move || pump(reader, tx, reporter, id));
            let mut chunks = ChunkReader { rx, chunk: Vec::new(), pos: 0, end: None };

            let unpacked = if format.needs_seek() {
                // Zip needs its central directory first: land the file, check it, then open it.
                let archive = work.path.join("download");
                let copied = (|| -> Result<()> {
                    let mut file = fs_err::File::create(&archive)?;
                    std::io::copy(&mut chunks, &mut file)?;
                    file.flush()?;
                    Ok(())
                })();
                let end = chunks.finish();
                check(end, copied, request, &label)?;
                let file = fs_err::File::open(&archive)?.into_parts().0;
                return unpack::unpack_zip(file, tree_dir, &label, format, &request.unpack, limits);
            } else {
                match decoder(format, &mut chunks) {
                    Ok(reader) => {
                        unpack::unpack_tar(reader, tree_dir, &label, format, &request.unpack, limits)
                    }
                    Err(e) => Err(Error::Archive {
                        archive: label.clone(),
                        format: format.name().into(),
                        source: e,
                    }),
                }
            };
            // Whatever the unpacker made of it, read to the end: the digest covers every byte,
            // and a wrong digest explains a broken archive better than the archive's error does.
            let end = chunks.finish();
            check(end, unpacked, request, &label)
        })
    }

    /// Builds a profile generation from packages already in the store: the symlink farm plus
    /// `.envctl/manifest.toml` with `manifest`, registered with a reference to every package. An
    /// identical generation that already exists is reused.
    pub fn add_generation(&self, profile: &str, inputs: &[FarmInput], manifest: &str) -> Result<Installed> {
        let profile_name = Name::parse(profile)?;
        let mut references = Vec::new();
        for input in inputs {
            let name = input.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if input.path.parent() != Some(self.dir.as_path()) || self.db().get(&name)?.is_none() {
                return Err(Error::NotInStore(input.path.display().to_string()));
            }
            references.push(name);
        }
        let work = TempDir::new(&self.dir.join(".tmp"))?;
        let tree_dir = work.fresh("tree")?;
        let mut tree = farm::build(&tree_dir, inputs)?;
        // The manifest: written like any store file (read-only, normalized mtime).
        let meta_dir = tree_dir.join(".envctl");
        if fs_err::symlink_metadata(&meta_dir).is_ok() {
            return Err(Error::Collision {
                path: ".envctl".into(),
                first: "envctl".into(),
                second: "a package".into(),
            });
        }
        fs_err::create_dir(&meta_dir)?;
        let manifest_path = meta_dir.join("manifest.toml");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o444).open(&manifest_path)?;
            f.write_all(manifest.as_bytes())?;
            f.set_times(
                std::fs::FileTimes::new().set_modified(SystemTime::UNIX_EPOCH + unpack::NORMALIZED_MTIME),
            )?;
        }
        if let Node::Dir(children) = &mut tree {
            let mut meta = std::collections::BTreeMap::new();
            meta.insert(
                std::ffi::OsString::from("manifest.toml"),
                Node::File {
                    size: manifest.len() as u64,
                    executable: false,
                    hash: *blake3::hash(manifest.as_bytes()).as_bytes(),
                },
            );
            children.insert(".envctl".into(), Node::Dir(meta));
        }
        // Symlink mtimes are left alone in farms: tens of thousands of links, no meaning, and not
        // part of the hash. Directories are normalized.
        normalize_dirs(&tree_dir, &tree)?;
        let tree_hash = tree.tree_hash();
        let name = StorePathName::derive_generation(&profile_name, &tree_hash);
        let package = (format!("profile-{profile}"), "generation".to_owned());
        let (dest, record) =
            self.commit(&work, &tree_dir, &name, &tree_hash, tree.stats(), package, None, &references)?;
        Ok(Installed { path: dest, record, fetched: false, skipped: Vec::new() })
    }

    /// Moves a finished, read-only tree into place as `name` and registers it, under the path
    /// lock: the commit point of every install. A path that became valid meanwhile is kept (and
    /// only gains the source); debris of an install that crashed between its rename and its
    /// registration is replaced.
    #[allow(clippy::too_many_arguments)]
    fn commit(
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
            sync_filesystem(tree_dir)?;
        }
        let dest = self.dir.join(name.as_str());
        let _path_lock = self.path_lock(name)?;
        let mut db = self.db();
        if db.get(name.as_str())?.is_none() || !dest.is_dir() {
            if fs_err::symlink_metadata(&dest).is_ok() {
                let trash = self.dir.join(".trash").join(format!("{}-{}", name, work.unique()));
                fs_err::rename(&dest, &trash)?;
                remove_tree(&trash)?;
            }
            fs_err::rename(tree_dir, &dest)?;
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
        db.register(&record, source, references)?;
        let record = db.get(name.as_str())?.ok_or_else(|| Error::NotInStore(name.to_string()))?;
        Ok((dest, record))
    }

    /// The per-path lock: held while a path is moved into place, registered or repaired.
    fn path_lock(&self, name: &StorePathName) -> Result<FileLock> {
        let lock = self.dir.join(".envctl/locks").join(format!("{}.lock", name.hash_part()));
        Ok(FileLock::exclusive(&lock)?)
    }

    /// Holds the store lock exclusively until the guard is dropped (then shared again).
    pub(crate) fn lock_exclusive(&self) -> Result<ExclusiveGuard<'_>> {
        self._lock.upgrade()?;
        Ok(ExclusiveGuard { lock: &self._lock })
    }

    /// The paths a valid path refers to.
    pub fn references_of(&self, name: &str) -> Result<Vec<String>> {
        self.db().references(name)
    }

    pub(crate) fn unregister_all(&self, names: &[String]) -> Result<()> {
        self.db().unregister_all(names)
    }

    /// Every valid path.
    pub fn list(&self) -> Result<Vec<PathRecord>> {
        self.db().list()
    }

    /// Turns a store path as a user gives it (file name, or full path inside this store) into a
    /// valid path's name.
    pub fn resolve(&self, text: &str) -> Result<StorePathName> {
        let p = Path::new(text);
        if p.is_absolute() && p.parent().map(|d| d != self.dir).unwrap_or(true) {
            // A path elsewhere may still be a symlink into the store (a profile, say).
            let real = fs_err::canonicalize(p)?;
            let store = fs_err::canonicalize(&self.dir)?;
            let rel = real.strip_prefix(&store).map_err(|_| Error::NotInStore(text.to_owned()))?;
            let first = rel.components().next().ok_or_else(|| Error::NotInStore(text.to_owned()))?;
            return self.resolve(&first.as_os_str().to_string_lossy());
        }
        let name = StorePathName::parse(text)?;
        match self.db().get(name.as_str())? {
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

    /// Recomputes every valid path's tree hash and compares it with the database.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for record in self.list()? {
            report.checked += 1;
            let path = self.dir.join(&record.name);
            let problem = match tree::scan(&path) {
                Ok(node @ Node::Dir(_)) => {
                    let actual = node.tree_hash().to_string();
                    (actual != record.tree_hash)
                        .then(|| format!("tree hash is {actual}, the database says {}", record.tree_hash))
                }
                Ok(_) => Some("is not a directory".to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path.exists() => {
                    Some("is missing".to_owned())
                }
                Err(e) => Some(format!("cannot be read: {e}")),
            };
            if let Some(problem) = problem {
                report.corrupted.push(Corruption { name: record.name, problem });
            }
        }
        Ok(report)
    }

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

/// Guard of an exclusive store lock; downgrades to shared when dropped.
pub(crate) struct ExclusiveGuard<'a> {
    lock: &'a FileLock,
}

impl Drop for ExclusiveGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lock.downgrade();
    }
}

/// Makes every directory of a farm read-only with the normalized mtime, children first.
fn normalize_dirs(root: &Path, tree: &Node) -> std::io::Result<()> {
    fn walk(path: &mut PathBuf, node: &Node) -> std::io::Result<()> {
        if let Node::Dir(children) = node {
            for (name, child) in children {
                if matches!(child, Node::Dir(_)) {
                    path.push(name);
                    walk(path, child)?;
                    path.pop();
                }
            }
            fs_err::set_permissions(&*path, std::fs::Permissions::from_mode(0o555))?;
            unpack::set_mtime(path, false)?;
        }
        Ok(())
    }
    walk(&mut root.to_path_buf(), tree)
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

/// Combines the end of the stream with what the consumer made of it.
fn check<T>(
    end: std::io::Result<(Sha256, u64)>,
    consumed: Result<T>,
    request: &InstallRequest,
    label: &str,
) -> Result<T> {
    match end {
        Err(e) => Err(Error::Transport { url: label.to_owned(), message: e.to_string() }),
        Ok((actual, size)) if actual != request.sha256 => Err(Error::HashMismatch {
            url: label.to_owned(),
            expected: request.sha256.to_string(),
            actual: actual.to_string(),
            size,
        }),
        Ok(_) => consumed,
    }
}

fn decoder<'r>(format: Format, r: &'r mut ChunkReader) -> std::io::Result<Box<dyn Read + 'r>> {
    Ok(match format {
        Format::Tar => Box::new(r),
        Format::TarGz => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Format::TarXz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Format::TarBz2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Format::TarZst => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
            // Accept archives made with `zstd --long` (windows up to 2 GiB).
            d.window_log_max(31)?;
            Box::new(d)
        }
        Format::Zip | Format::Wheel => unreachable!("zip formats are unpacked from a file"),
    })
}

enum Msg {
    Data(Vec<u8>),
    End(Sha256, u64),
    Failed(std::io::Error),
}

/// Reads the source on its own thread, hashing as bytes pass, so that the network, sha256 and the
/// unpacker (decompression, writing, blake3) overlap on two cores.
fn pump(mut reader: Box<dyn Read + Send>, tx: SyncSender<Msg>, reporter: &dyn Reporter, id: usize) {
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        let failed = loop {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break None,
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        break None;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        if filled > 0 {
            buf.truncate(filled);
            hasher.update(&buf);
            size += filled as u64;
            reporter.download_progress(id, filled as u64);
            if tx.send(Msg::Data(buf)).is_err() {
                return;
            }
        }
        if let Some(e) = failed {
            let _ = tx.send(Msg::Failed(e));
            return;
        }
        if filled < CHUNK {
            let _ = tx.send(Msg::End(Sha256(hasher.finalize().into()), size));
            return;
        }
    }
}

struct ChunkReader {
    rx: Receiver<Msg>,
    chunk: Vec<u8>,
    pos: usize,
    end: Option<std::io::Result<(Sha256, u64)>>,
}

impl ChunkReader {
    /// Reads to the end of the stream and returns its digest and size, or the transport's error.
    fn finish(&mut self) -> std::io::Result<(Sha256, u64)> {
        while self.end.is_none() {
            self.pos = self.chunk.len();
            let _ = self.fill_buf();
        }
        match self.end.take().expect("loop ran until the end") {
            Ok(v) => Ok(v),
            Err(e) => Err(e),
        }
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.chunk.len() && self.end.is_none() {
            match self.rx.recv() {
                Ok(Msg::Data(d)) => {
                    self.chunk = d;
                    self.pos = 0;
                }
                Ok(Msg::End(sha, size)) => self.end = Some(Ok((sha, size))),
                Ok(Msg::Failed(e)) => {
                    let message = e.to_string();
                    self.end = Some(Err(e));
                    return Err(std::io::Error::other(message));
                }
                Err(_) => {
                    self.end = Some(Err(std::io::Error::other("the download thread stopped")));
                }
            }
        }
        if let Some(Err(e)) = &self.end {
            return Err(std::io::Error::other(e.to_string()));
        }
        Ok(&self.chunk[self.pos.min(self.chunk.len())..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A directory under `.tmp/`, removed (whatever its permissions) when dropped.
struct TempDir {
    path: PathBuf,
    unique: String,
    attempts: AtomicU64,
}

impl TempDir {
    fn new(parent: &Path) -> Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos();
        let unique = format!("{}-{}-{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = parent.join(&unique);
        fs_err::create_dir(&path)?;
        Ok(TempDir { path, unique, attempts: AtomicU64::new(0) })
    }

    fn unique(&self) -> &str {
        &self.unique
    }

    /// A new, empty directory inside, for one attempt; the previous attempt's is removed.
    fn fresh(&self, stem: &str) -> Result<PathBuf> {
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
        if meta.permissions().mode() & 0o700 != 0o700 {
            fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        }
        for entry in fs_err::read_dir(path)? {
            remove_tree(&entry?.path())?;
        }
        fs_err::remove_dir(path)
    } else {
        fs_err::remove_file(path)
    }
}

/// Swaps two paths atomically (`renameat2` with `RENAME_EXCHANGE`).
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    let rc = unsafe {
        libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE)
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let message = format!("cannot swap `{}` and `{}`: {e}", a.display(), b.display());
        return Err(std::io::Error::new(e.kind(), message).into());
    }
    Ok(())
}

/// Flushes the filesystem holding `dir` to disk: one `syncfs` call covers every file of a tree,
/// where an `fsync` per file would cost a system call (and a journal commit) each.
fn sync_filesystem(dir: &Path) -> Result<()> {
    let handle = fs_err::File::open(dir)?;
    // SAFETY: `handle` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&handle)) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(
            std::io::Error::new(e.kind(), format!("cannot flush `{}` to disk: {e}", dir.display())).into()
        );
    }
    Ok(())
}
