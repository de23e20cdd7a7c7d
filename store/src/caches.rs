//! Binary caches: a directory (a local disk, NFS) or an HTTP(S) base holding [`PathObject`]s and
//! their archives (see `transfer`), plus `by-source/<KEY HASH>` pointers from a source key to the
//! path it unpacks to, for a lock that does not yet name its store paths.
//!
//! Installs ask each configured cache, in priority order, before the recipe's own source; a
//! cache that lacks the path, cannot be reached or serves something that fails a check is passed
//! over with a warning, and the next one (finally the upstream source) is tried. Pushing writes
//! the archive, then the object, each through a temporary file and a rename: a killed push leaves
//! at most an archive without an object, which no reader uses, and the next push completes it.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::install::{InstallRequest, Installed};
use crate::keys::SecretKey;
use crate::path::StorePathName;
use crate::reporter::Reporter;
use crate::store::Store;
use crate::transfer::{PathObject, write_atomically};

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

/// A cache URL as a local directory, if it is one.
fn local_dir(url: &str) -> Option<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Some(PathBuf::from(
            percent_encoding::percent_decode_str(rest).decode_utf8_lossy().into_owned(),
        ));
    }
    (!url.contains("://")).then(|| PathBuf::from(url))
}

/// `base` joined with a relative object name.
fn object_url(base: &str, file: &str) -> String {
    format!("{}/{file}", base.trim_end_matches('/'))
}

impl Store {
    /// Pushes `names` (see [`Store::transferable_closure`]) to the directory cache `dir`, signed
    /// with `key`, on up to `jobs` threads. Paths whose object is there already are skipped.
    pub fn push_to_dir(&self, dir: &Path, names: &[String], key: &SecretKey) -> Result<PushReport> {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicUsize, Ordering};
        fs_err::create_dir_all(dir.join("by-source"))?;
        let report = Mutex::new(PushReport::default());
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.options.jobs.clamp(1, names.len().max(1)) {
                s.spawn(|| {
                    while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                        match self.push_one(dir, name, key) {
                            Ok(Some(bytes)) => {
                                let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                                r.pushed.push(name.clone());
                                r.bytes += bytes;
                            }
                            Ok(None) => {
                                report.lock().unwrap_or_else(|p| p.into_inner()).skipped.push(name.clone())
                            }
                            Err(e) => {
                                first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let mut report = report.into_inner().unwrap_or_else(|p| p.into_inner());
        report.pushed.sort();
        report.skipped.sort();
        Ok(report)
    }

    /// Writes one path's archive, object and pointers; `None` when the object was there.
    fn push_one(&self, dir: &Path, name: &str, key: &SecretKey) -> Result<Option<u64>> {
        let object_path = dir.join(format!("{name}.json"));
        if object_path.is_file() {
            return Ok(None);
        }
        let mut archive = None;
        write_atomically(&dir.join(format!("{name}.tar.zst")), |f| {
            archive = Some(self.write_archive(name, std::io::BufWriter::new(f))?);
            Ok(())
        })?;
        let archive = archive.expect("written");
        let bytes = archive.1;
        let object = self.path_object(name, key, archive)?;
        for source in &object.sources {
            write_atomically(&dir.join(pointer(&source.key)), |f| {
                Ok(std::io::Write::write_all(f, name.as_bytes())?)
            })?;
        }
        let text = serde_json::to_vec_pretty(&object).map_err(std::io::Error::other)?;
        write_atomically(&object_path, |f| Ok(std::io::Write::write_all(f, &text)?))?;
        Ok(Some(bytes))
    }

    /// Reads a small object from a cache; `Ok(None)` when the cache does not have it.
    fn read_object(&self, base: &str, file: &str) -> Result<Option<Vec<u8>>> {
        const LIMIT: u64 = 1 << 20;
        let url = object_url(base, file);
        if let Some(dir) = local_dir(base) {
            return match std::fs::read(dir.join(file)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        let location = self
            .fetcher
            .locations(&url)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnsupportedUrl(url.clone()))?;
        match self.fetcher.open(&location) {
            Ok(opened) => {
                let mut bytes = Vec::new();
                opened.reader.take(LIMIT).read_to_end(&mut bytes)?;
                Ok(Some(bytes))
            }
            Err(Error::HttpStatus { status: 404 | 410, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The path for `request` from the first cache that has it and passes every check, if any.
    /// `key` is the request's source key; `store_path` what the lock promises, when it says.
    pub(crate) fn ask_caches(
        &self,
        request: &InstallRequest,
        key: &str,
        reporter: &dyn Reporter,
    ) -> Option<Installed> {
        let mut caches = self.options.caches.clone();
        caches.sort_by_key(|c| c.priority);
        for cache in &caches {
            match self.ask_cache(cache, request, key, reporter) {
                Ok(Some(installed)) => {
                    tracing::info!(path = %installed.record.name, cache = %cache.url, "installed from a cache");
                    return Some(installed);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    "cache `{}` passed over for {} {}: {e}",
                    cache.url,
                    request.name.as_str(),
                    request.version.as_str()
                ),
            }
        }
        None
    }

    fn ask_cache(
        &self,
        cache: &Cache,
        request: &InstallRequest,
        key: &str,
        reporter: &dyn Reporter,
    ) -> Result<Option<Installed>> {
        if self.options.fetch.offline && local_dir(&cache.url).is_none() {
            return Ok(None);
        }
        let name = match &request.store_path {
            Some(name) => name.to_string(),
            None => match self.read_object(&cache.url, &pointer(key))? {
                Some(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
                None => return Ok(None),
            },
        };
        let name = StorePathName::parse(&name)?;
        let Some(bytes) = self.read_object(&cache.url, &format!("{name}.json"))? else { return Ok(None) };
        let object = PathObject::parse(&bytes, &object_url(&cache.url, &format!("{name}.json")))?;
        if object.name != name.as_str() {
            return Err(Error::Untrusted {
                name: name.to_string(),
                why: format!("the cache's object for it describes `{}`", object.name),
            });
        }
        // Asked for by source: the signed object must say it answers that source.
        if request.store_path.is_none() && !object.sources.iter().any(|s| s.key == key) {
            return Err(Error::Untrusted {
                name: object.name,
                why: "its signed sources do not include this one".into(),
            });
        }
        let archive = object_url(&cache.url, &object.archive.file);
        if object.archive.file.contains('/') || object.archive.file.starts_with('.') {
            return Err(Error::Untrusted {
                name: object.name,
                why: format!("archive name `{}`", object.archive.file),
            });
        }
        let installed = self.receive(&object, &archive, &self.options.trusted_keys, reporter)?;
        // The request's own source leads here from now on.
        let source = crate::db::SourceRecord { sha256: request.sha256.to_string(), url: request.url.clone() };
        self.db().register(&installed.record, Some((key, &source)), &[])?;
        Ok(Some(installed))
    }
}
