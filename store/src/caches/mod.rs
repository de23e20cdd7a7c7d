//! Binary caches: a directory (a local disk, NFS), an HTTP(S) base, or an S3-compatible bucket
//! holding [`PathObject`]s and their archives (see `transfer`), plus `by-source/<KEY HASH>`
//! pointers from a source key to the path it unpacks to, for a lock that does not yet name its
//! store paths.
//!
//! Installs ask each configured cache, in priority order, before the recipe's own source; a
//! cache that lacks the path, cannot be reached or serves something that fails a check is passed
//! over with a warning, and the next one (finally the upstream source) is tried. Pushing writes
//! the archive, then the pointers, then the object, each whole or not at all (a temporary file
//! and a rename in a directory, one `PUT` elsewhere): a killed push leaves at most an archive
//! without an object, which no reader uses, and the next push completes it.
//!
//! Where the objects are is a [`BinaryCache`], one file per kind of place: `dir.rs`, `http.rs`,
//! `s3.rs`. This module composes them with the store: looking up, checking, receiving, pushing.

mod dir;
mod http;
mod s3;

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::committer::Prepared;
use crate::error::{Error, Result};
use crate::fetch::Fetcher;
use crate::keys::SecretKey;
use crate::reporter::Reporter;
use crate::request::{InstallRequest, Installed};
use crate::store::Store;
use crate::tempdir::TempDir;
use crate::transfer::PathObject;
use envctl_core::StorePathName;

/// A configured cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// A directory, `file://DIR`, or an `http(s)://` base.
    pub url: String,
    /// Lower is asked first.
    pub priority: i64,
}

/// What a push did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PushReport {
    /// Paths written.
    pub pushed: Vec<String>,
    /// Paths the cache already had.
    pub skipped: Vec<String>,
    /// Bytes of archives written.
    pub bytes: u64,
}

/// The pointer file name for a source key.
fn pointer(key: &str) -> String {
    format!("by-source/{}", &blake3::hash(key.as_bytes()).to_hex()[..32])
}

/// Where a binary cache keeps its objects: one implementation per kind of place (a directory, an
/// HTTP(S) base, an S3-compatible bucket), so that adding one touches no other code.
pub(crate) trait BinaryCache: Send + Sync {
    /// Whether it is on this machine (asked even offline).
    fn is_local(&self) -> bool;
    /// Where the fetcher downloads `file` from.
    fn location(&self, file: &str) -> String;
    /// Whether it has `file`.
    fn has(&self, fetcher: &Fetcher, file: &str) -> Result<bool>;
    /// A small object (at most [`OBJECT_LIMIT`] bytes), or `None` when it does not have it.
    fn read(&self, fetcher: &Fetcher, file: &str) -> Result<Option<Vec<u8>>>;
    /// Stores `file` with what `write` writes, whole or not at all (elsewhere than a directory,
    /// staged in `staging` and sent with one `PUT`).
    fn put(
        &self,
        fetcher: &Fetcher,
        file: &str,
        staging: &Path,
        write: &mut dyn FnMut(&mut dyn std::io::Write) -> Result<()>,
    ) -> Result<()>;
}

/// The most a metadata object or pointer may be.
const OBJECT_LIMIT: u64 = 1 << 20;

/// The cache a configured URL names.
fn open_cache(url: &str) -> Result<Box<dyn BinaryCache>> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Ok(Box::new(dir::Dir(PathBuf::from(
            percent_encoding::percent_decode_str(rest).decode_utf8_lossy().into_owned(),
        ))));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(Box::new(http::Http(url.trim_end_matches('/').to_owned())));
    }
    if url.starts_with("s3://") {
        return Ok(Box::new(s3::S3::parse(url)?));
    }
    if url.contains("://") {
        return Err(Error::UnsupportedUrl(url.to_owned()));
    }
    Ok(Box::new(dir::Dir(PathBuf::from(url))))
}

/// Reads a small object at `url` through the fetcher; `None` on 404 or 410.
fn read_url(fetcher: &Fetcher, url: &str) -> Result<Option<Vec<u8>>> {
    let location =
        fetcher.locations(url)?.into_iter().next().ok_or_else(|| Error::UnsupportedUrl(url.to_owned()))?;
    match fetcher.open(&location) {
        Ok(opened) => {
            let mut bytes = Vec::new();
            opened.reader.take(OBJECT_LIMIT).read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        }
        Err(Error::HttpStatus { status: 404 | 410, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stages what `write` writes in `staging`, then sends it to `url` with one `PUT`.
fn put_url(
    fetcher: &Fetcher,
    url: &str,
    staging: &Path,
    write: &mut dyn FnMut(&mut dyn std::io::Write) -> Result<()>,
) -> Result<()> {
    let staged = staging.join("staged");
    write(&mut fs_err::File::create(&staged)?)?;
    let body = fs_err::File::open(&staged)?;
    let len = body.metadata()?.len();
    fetcher.put(url, std::io::BufReader::with_capacity(256 * 1024, body), len)
}

impl Store {
    /// Pushes `names` (see [`Store::transferable_closure`]) to the cache at `target` (a
    /// directory, an HTTP(S) base that accepts `PUT`, or an `s3://` bucket), signed with `key`,
    /// on up to `jobs` threads. Paths whose object is there already are skipped.
    pub fn push(&self, target: &str, names: &[String], key: &SecretKey) -> Result<PushReport> {
        let backend = open_cache(target)?;
        let push = |_: &mut (), _, name: &String| self.push_one(backend.as_ref(), name, key);
        let pushed = crate::parallel::map_on_threads(self.options.jobs, names, || (), push, |_| false);
        let mut report = PushReport::default();
        for (name, result) in names.iter().zip(pushed) {
            match result.expect("nothing stops the queue")? {
                Some(bytes) => {
                    report.pushed.push(name.clone());
                    report.bytes += bytes;
                }
                None => report.skipped.push(name.clone()),
            }
        }
        report.pushed.sort();
        report.skipped.sort();
        Ok(report)
    }

    /// Uploads one path: its archive, its pointers, then its object (the object last, so that a
    /// reader never finds an object whose archive is not there); `None` when the object was.
    fn push_one(&self, backend: &dyn BinaryCache, name: &str, key: &SecretKey) -> Result<Option<u64>> {
        let object_file = format!("{name}.json");
        if backend.has(&self.fetcher, &object_file)? {
            return Ok(None);
        }
        let work = TempDir::new(&self.dir().join(".tmp"))?;
        let mut archive = None;
        backend.put(&self.fetcher, &format!("{name}.tar.zst"), &work.path, &mut |w| {
            archive = Some(self.write_archive(name, std::io::BufWriter::new(w))?);
            Ok(())
        })?;
        let archive = archive.expect("the writer ran");
        let bytes = archive.1;
        let object = self.path_object(name, key, archive)?;
        for source in &object.sources {
            backend.put(&self.fetcher, &pointer(&source.key), &work.path, &mut |w| {
                Ok(w.write_all(name.as_bytes())?)
            })?;
        }
        let text = serde_json::to_vec_pretty(&object).map_err(std::io::Error::other)?;
        backend.put(&self.fetcher, &object_file, &work.path, &mut |w| Ok(w.write_all(&text)?))?;
        Ok(Some(bytes))
    }
}

/// The configured caches, parsed once (an S3 cache's credentials are read once, not per
/// install), in the order to ask them, with what their objects are checked against.
pub struct Caches {
    fetcher: crate::fetch::Fetcher,
    list: Vec<(String, Box<dyn BinaryCache>)>,
    trusted: Vec<crate::keys::PublicKey>,
}

impl Caches {
    /// The caches `list` configures, lowest priority first, whose objects must be signed by one
    /// of `trusted`; with `fetch.offline`, only those on a local directory. One that cannot be
    /// parsed is left out with a warning.
    pub fn new(
        list: &[Cache],
        trusted: Vec<crate::keys::PublicKey>,
        fetch: &crate::fetch::FetchOptions,
    ) -> Caches {
        let mut caches = list.to_vec();
        caches.sort_by_key(|c| c.priority);
        let list = caches
            .into_iter()
            .filter_map(|c| match open_cache(&c.url) {
                Ok(b) if fetch.offline && !b.is_local() => None,
                Ok(b) => Some((c.url, b)),
                Err(e) => {
                    tracing::warn!("cache `{}` left out: {e}", c.url);
                    None
                }
            })
            .collect();
        Caches { fetcher: crate::fetch::Fetcher::new(fetch.clone()), list, trusted }
    }

    /// No cache: installs fetch every source from its own location.
    pub fn none() -> Caches {
        Caches::new(&[], Vec::new(), &crate::fetch::FetchOptions::default())
    }

    /// The path for `request` from the first cache that has it and passes every check, if any.
    /// `keys` are the request's source keys (see [`InstallRequest::source_keys`]). A cache that
    /// fails is passed over, unless the store's own disk refused the tree (full, over quota):
    /// that error is the answer, since the source would meet the same disk.
    pub(crate) fn ask(
        &self,
        store: &Store,
        request: &InstallRequest,
        keys: &[String],
        reporter: &dyn Reporter,
    ) -> Result<Option<Prepared>> {
        let source = crate::db::SourceRecord { sha256: request.sha256.to_string(), url: request.url.clone() };
        let what = format!("{} {}", request.name.as_str(), request.version.as_str());
        self.pull_prepared(store, keys, request.store_path.as_ref(), &source, &what, reporter)
    }

    /// The path that answers the source key `keys[0]` (a package's source, or a derivation's
    /// key: a wheel built from source elsewhere; the others are the same key as older caches
    /// wrote it) from the first cache that has it and passes every check, registered with `source`
    /// for `keys[0]`; `None` when no cache gives it. `what` names it in warnings.
    pub(crate) fn pull(
        &self,
        store: &Store,
        keys: &[String],
        store_path: Option<&StorePathName>,
        source: &crate::db::SourceRecord,
        what: &str,
        reporter: &dyn Reporter,
    ) -> Option<Installed> {
        let prepared = self
            .pull_prepared(store, keys, store_path, source, what, reporter)
            .inspect_err(|e| tracing::warn!("{what} from a cache failed: {e}"))
            .ok()
            .flatten()?;
        store.finish(prepared).inspect_err(|e| tracing::warn!("{what} from a cache failed: {e}")).ok()
    }

    /// [`Caches::pull`], leaving a received tree to be flushed and committed (see committer.rs):
    /// with `keys[0]` and `source` among its sources. Fails only when the store's own disk
    /// refused the tree ([`Error::is_out_of_room`]); any other failure passes the cache over.
    pub(crate) fn pull_prepared(
        &self,
        store: &Store,
        keys: &[String],
        store_path: Option<&StorePathName>,
        source: &crate::db::SourceRecord,
        what: &str,
        reporter: &dyn Reporter,
    ) -> Result<Option<Prepared>> {
        for (url, backend) in &self.list {
            let received = self.lookup(backend.as_ref(), url, keys, store_path).and_then(|object| {
                let Some(object) = object else { return Ok(None) };
                let archive = backend.location(&object.archive.file);
                let prepared = store.receive_prepared(&object, &archive, &self.trusted, reporter)?;
                // This source leads here from now on.
                Ok(Some(match prepared {
                    Prepared::Done(installed) => {
                        store.db().register(&installed.record, Some((&keys[0], source)), &[])?;
                        Prepared::Done(Installed { cache: Some(url.clone()), ..installed })
                    }
                    Prepared::Pending(mut p) => {
                        p.sources.push((keys[0].clone(), source.clone()));
                        p.cache = Some(url.clone());
                        Prepared::Pending(p)
                    }
                }))
            });
            match received {
                Ok(Some(prepared)) => {
                    tracing::info!(cache = %url, "{what}: from a cache");
                    return Ok(Some(prepared));
                }
                Ok(None) => {}
                Err(e) if e.is_out_of_room() => return Err(e),
                Err(e) => tracing::warn!("cache `{url}` passed over for {what}: {e}"),
            }
        }
        Ok(None)
    }

    /// Whether there is any cache to ask.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first cache that would give `request`'s path, checked as far as can be without
    /// fetching its archive (a trusted signature, the right name): its URL and the archive's size.
    /// For `apply --dry-run` and `--offline`.
    pub fn offer(&self, request: &InstallRequest) -> Option<(String, u64)> {
        let keys = request.source_keys(request.format()?);
        self.list.iter().find_map(|(url, backend)| {
            let object = self.lookup(backend.as_ref(), url, &keys, request.store_path.as_ref()).ok()??;
            object.check(&self.trusted).is_ok().then(|| (url.clone(), object.archive.size))
        })
    }

    /// The object `backend` holds for the source key `keys` name (one key in its encodings,
    /// newest first; see [`InstallRequest::source_keys`]): by the store path a lock names,
    /// `store_path`, else through the pointer of the first key that has one. Refused unless it
    /// describes that path, its signed sources include one of `keys` (however it was found: a
    /// lock whose store path was edited must not fetch another build than its source's), and it
    /// names its archive as every object does; `None` when the cache does not have it.
    fn lookup(
        &self,
        backend: &dyn BinaryCache,
        url: &str,
        keys: &[String],
        store_path: Option<&StorePathName>,
    ) -> Result<Option<PathObject>> {
        let name = match store_path {
            Some(name) => name.to_string(),
            None => {
                let mut found = None;
                for key in keys {
                    if let Some(bytes) = backend.read(&self.fetcher, &pointer(key))? {
                        found = Some(String::from_utf8_lossy(&bytes).trim().to_owned());
                        break;
                    }
                }
                match found {
                    Some(name) => name,
                    None => return Ok(None),
                }
            }
        };
        let name = StorePathName::parse(&name)?;
        let Some(bytes) = backend.read(&self.fetcher, &format!("{name}.json"))? else {
            return Ok(None);
        };
        let object = PathObject::parse(&bytes, &format!("{url}/{name}.json"))?;
        let untrusted = |why: String| Error::Untrusted { name: name.to_string(), why };
        if object.name != name.as_str() {
            return Err(untrusted(format!("the cache's object for it describes `{}`", object.name)));
        }
        // The signed object must say it answers this source, whichever way it was found.
        if !object.sources.iter().any(|s| keys.contains(&s.key)) {
            let key = &keys[0];
            return Err(untrusted(format!("its signed sources do not include this one (`{key}`)")));
        }
        if object.archive.file != format!("{}.tar.zst", object.name) {
            return Err(untrusted(format!("archive name `{}`", object.archive.file)));
        }
        Ok(Some(object))
    }
}
