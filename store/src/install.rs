//! Installing: the local store and the binary caches composed (`Installer`), and one install of a
//! source (the store, then a cache, then the source itself: `download.rs` fetches and unpacks,
//! `Store::commit` flushes and registers the tree).

use crate::caches::Caches;
use crate::committer::{Pending, Prepared};
use crate::db::{PathRecord, SourceRecord};
use crate::error::{Error, Result};
use crate::layer::Derivation;
use crate::lock::FileLock;
use crate::reporter::Reporter;
use crate::request::{InstallRequest, Installed};
use crate::store::Store;
use crate::tempdir::TempDir;
use envctl_core::StorePathName;

/// The local store and the binary caches composed: installs ask the store, then the caches,
/// then the source itself.
pub struct Installer<'a> {
    store: &'a Store,
    caches: &'a Caches,
}

impl<'a> Installer<'a> {
    /// Installs into `store`, asking `caches` before fetching a source.
    pub fn new(store: &'a Store, caches: &'a Caches) -> Installer<'a> {
        Installer { store, caches }
    }

    /// The store installed into.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// The caches asked.
    pub fn caches(&self) -> &'a Caches {
        self.caches
    }

    /// Installs one artifact, or finds it installed. Reports under id 0.
    pub fn install(&self, request: &InstallRequest, reporter: &dyn Reporter) -> Result<Installed> {
        let result =
            self.store.prepare_one(0, request, self.caches, reporter).and_then(|p| self.store.finish(p));
        reporter.finished(0);
        result
    }

    /// Installs several artifacts, at most `jobs` at a time; one result per request, in order.
    pub fn install_all(
        &self,
        requests: &[InstallRequest],
        reporter: &dyn Reporter,
    ) -> Vec<Result<Installed>> {
        reporter.starting(requests.len());
        // Each worker hands its finished tree to the committer and goes on to the next request
        // (see committer.rs): the disk flushes one package while the cores unpack the next.
        let (prepared, committed) = self.store.with_committer(reporter, |committer| {
            let prepare = |_: &mut (), i: usize, request: &InstallRequest| match self.store.prepare_one(
                i,
                request,
                self.caches,
                reporter,
            ) {
                Ok(Prepared::Pending(p)) => {
                    committer.send(p).expect("the committer outlives the workers");
                    None
                }
                done => {
                    reporter.finished(i);
                    Some(done.map(|d| match d {
                        Prepared::Done(installed) => installed,
                        Prepared::Pending(_) => unreachable!("sent above"),
                    }))
                }
            };
            crate::parallel::map_on_threads(self.store.options.jobs, requests, || (), prepare, |_| false)
        });
        let mut results: Vec<Option<Result<Installed>>> =
            prepared.into_iter().map(|r| r.expect("nothing stops the queue")).collect();
        for (i, result) in committed {
            results[i] = Some(result);
        }
        results.into_iter().map(|r| r.expect("every request is done or committed")).collect()
    }

    /// [`Store::derive_all`], where `expected[i]` is the store path a lock promises for
    /// `derivations[i]` (a wheel built from source elsewhere first): when the store has another
    /// one, or none, a binary cache is asked for the promised one before anything is built.
    pub fn derive_all_expecting(
        &self,
        derivations: &[Derivation],
        expected: &[Option<StorePathName>],
    ) -> Vec<Result<Installed>> {
        self.store.derive_all_with(derivations, &|i, found| {
            let d = &derivations[i];
            let expected = expected.get(i).and_then(Option::as_ref);
            if found.is_some_and(|f| expected.is_none_or(|e| e.as_str() == f.record.name)) {
                return None;
            }
            // What travels in binary caches (a wheel built from source, which making again may
            // not reproduce; bytecode, which costs more to compile than to fetch) is taken from
            // a cache before anything is made.
            if !d.travels || self.caches.is_empty() {
                return None;
            }
            let source = SourceRecord { sha256: String::new(), url: "derived".into() };
            let what = format!("the derived path `{}`", d.key);
            self.caches.pull(
                self.store,
                std::slice::from_ref(&d.key),
                expected,
                &source,
                &what,
                &crate::reporter::NoReporter,
            )
        })
    }
}

impl Store {
    fn found(&self, record: PathRecord) -> Option<Installed> {
        let path = self.dir.join(&record.name);
        path.is_dir().then(|| Installed::present(path, record))
    }

    /// The installed path for a request, if the store has it; fetches nothing.
    pub fn find(&self, request: &InstallRequest) -> Result<Option<Installed>> {
        let Some(format) = request.format() else { return Ok(None) };
        Ok(self.recorded(&request.source_keys(format))?.and_then(|r| self.found(r)))
    }

    /// The path recorded for the first of `keys` the database has (a source's key as written now,
    /// then as older stores wrote it).
    fn recorded(&self, keys: &[String]) -> Result<Option<PathRecord>> {
        let db = self.db();
        for key in keys {
            if let Some(record) = db.path_for_source(key)? {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    /// Installs one request as far as its finished tree: found in the store, received from a
    /// cache, or fetched and unpacked and left to be flushed and committed (with its source lock).
    fn prepare_one(
        &self,
        id: usize,
        request: &InstallRequest,
        caches: &Caches,
        reporter: &dyn Reporter,
    ) -> Result<Prepared> {
        let format = request.format().ok_or_else(|| Error::UnknownFormat(request.url.clone()))?;
        let keys = request.source_keys(format);
        let key = &keys[0];
        {
            // References must be valid before any work is done; registration checks them again.
            let db = self.db();
            for reference in &request.references {
                if db.get(reference.as_str())?.is_none() {
                    return Err(Error::NotInStore(reference.to_string()));
                }
            }
        }
        if let Some(found) = self.recorded(&keys)?.and_then(|r| self.found(r)) {
            return Ok(Prepared::Done(found));
        }
        let locks = self.dir.join(".envctl/locks");
        let source_lock = FileLock::exclusive(
            &locks.join(format!("{}.lock", &blake3::hash(key.as_bytes()).to_hex()[..32])),
        )?;
        // Another process may have installed it while we waited for the lock.
        if let Some(found) = self.recorded(&keys)?.and_then(|r| self.found(r)) {
            return Ok(Prepared::Done(found));
        }

        if !caches.is_empty()
            && let Some(mut prepared) = caches.ask(self, request, &keys, reporter)?
        {
            if let Prepared::Pending(p) = &mut prepared {
                // Its source stays locked until it is registered, as a fetched tree's does.
                p.id = id;
                p._source_lock = Some(source_lock);
            }
            return Ok(prepared);
        }
        let work = TempDir::new(&self.dir.join(".tmp"))?;
        let (unpacked, tree_dir, url, archive_size) =
            self.fetch_and_unpack(id, request, format, &work, reporter)?;
        let tree_hash = unpacked.tree.tree_hash();
        let stats = unpacked.tree.stats();
        Ok(Prepared::Pending(Pending {
            id,
            name: StorePathName::derive(&request.name, &request.version, &tree_hash.0),
            work,
            tree_dir,
            tree_hash,
            stats,
            package: (request.name.as_str().to_owned(), request.version.as_str().to_owned()),
            sources: vec![(key.clone(), SourceRecord { sha256: request.sha256.to_string(), url })],
            references: request.references.iter().map(|r| r.to_string()).collect(),
            skipped: unpacked.skipped,
            archive_size: Some(archive_size),
            cache: None,
            _source_lock: Some(source_lock),
        }))
    }
}
