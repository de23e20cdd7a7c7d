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

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::install::{InstallRequest, Installed};
use crate::keys::SecretKey;
use crate::path::StorePathName;
use crate::reporter::Reporter;
use crate::store::Store;
use crate::tempdir::TempDir;
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

/// Where a cache's objects are: a directory, an HTTP(S) base, or an S3-compatible bucket
/// (`s3://BUCKET/PREFIX?endpoint=URL&region=REGION`, as Nix writes them).
enum Backend {
    Dir(PathBuf),
    Http(String),
    S3(Box<S3>),
}

/// An S3-compatible bucket: requests are presigned (SigV4, `rusty-s3`) and sent by the fetcher's
/// HTTP client.
struct S3 {
    bucket: rusty_s3::Bucket,
    prefix: String,
    credentials: Option<rusty_s3::Credentials>,
}

/// How long a presigned request stays valid.
const PRESIGN: std::time::Duration = std::time::Duration::from_secs(3600);

impl Backend {
    fn parse(url: &str) -> Result<Backend> {
        if let Some(rest) = url.strip_prefix("file://") {
            return Ok(Backend::Dir(PathBuf::from(
                percent_encoding::percent_decode_str(rest).decode_utf8_lossy().into_owned(),
            )));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Backend::Http(url.trim_end_matches('/').to_owned()));
        }
        if url.starts_with("s3://") {
            return S3::parse(url).map(|s| Backend::S3(Box::new(s)));
        }
        if url.contains("://") {
            return Err(Error::UnsupportedUrl(url.to_owned()));
        }
        Ok(Backend::Dir(PathBuf::from(url)))
    }

    fn is_local(&self) -> bool {
        matches!(self, Backend::Dir(_))
    }

    /// Where the fetcher reads `file` from.
    fn get_url(&self, file: &str) -> String {
        match self {
            Backend::Dir(dir) => dir.join(file).display().to_string(),
            Backend::Http(base) => format!("{base}/{file}"),
            Backend::S3(s3) => s3.sign(rusty_s3::Method::Get, file),
        }
    }

    fn exists(&self, fetcher: &crate::fetch::Fetcher, file: &str) -> Result<bool> {
        match self {
            Backend::Dir(dir) => Ok(dir.join(file).is_file()),
            Backend::Http(base) => fetcher.exists(&format!("{base}/{file}")),
            Backend::S3(s3) => fetcher.exists(&s3.sign(rusty_s3::Method::Head, file)),
        }
    }

    /// Stores `file` with what `write` writes, whole or not at all: in a directory through a
    /// temporary file and a rename (written in place, no copy), elsewhere staged in `staging`
    /// and sent with one `PUT`.
    fn put<T>(
        &self,
        fetcher: &crate::fetch::Fetcher,
        file: &str,
        staging: &Path,
        write: impl FnOnce(&mut dyn std::io::Write) -> Result<T>,
    ) -> Result<T> {
        let url = match self {
            Backend::Dir(dir) => {
                let mut out = None;
                write_atomically(&dir.join(file), |f| {
                    out = Some(write(f)?);
                    Ok(())
                })?;
                return Ok(out.expect("the writer ran"));
            }
            Backend::Http(base) => format!("{base}/{file}"),
            Backend::S3(s3) => s3.sign(rusty_s3::Method::Put, file),
        };
        let staged = staging.join("staged");
        let out = write(&mut fs_err::File::create(&staged)?)?;
        let body = fs_err::File::open(&staged)?;
        let len = body.metadata()?.len();
        fetcher.put(&url, std::io::BufReader::with_capacity(256 * 1024, body), len)?;
        Ok(out)
    }
}

impl S3 {
    fn parse(url: &str) -> Result<S3> {
        let bad = |why: String| Error::Untrusted {
            name: url.to_owned(),
            why: format!("not an S3 cache URL: {why}"),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let name = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("it names no bucket".into()))?
            .to_owned();
        let prefix = parsed.path().trim_matches('/').to_owned();
        let query: std::collections::BTreeMap<String, String> = parsed.query_pairs().into_owned().collect();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let region = query
            .get("region")
            .cloned()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = query
            .get("endpoint")
            .cloned()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"));
        let (endpoint, style) = match endpoint {
            Some(e) => (e, rusty_s3::UrlStyle::Path),
            None => (format!("https://s3.{region}.amazonaws.com"), rusty_s3::UrlStyle::VirtualHost),
        };
        let endpoint = url::Url::parse(&endpoint).map_err(|e| bad(format!("endpoint `{endpoint}`: {e}")))?;
        let bucket = rusty_s3::Bucket::new(endpoint, style, name, region).map_err(|e| bad(e.to_string()))?;
        Ok(S3 { bucket, prefix, credentials: aws_credentials() })
    }

    fn key(&self, file: &str) -> String {
        if self.prefix.is_empty() { file.to_owned() } else { format!("{}/{file}", self.prefix) }
    }

    fn sign(&self, method: rusty_s3::Method, file: &str) -> String {
        use rusty_s3::S3Action;
        let key = self.key(file);
        let creds = self.credentials.as_ref();
        let url = match method {
            rusty_s3::Method::Put => self.bucket.put_object(creds, &key).sign(PRESIGN),
            rusty_s3::Method::Head => self.bucket.head_object(creds, &key).sign(PRESIGN),
            _ => self.bucket.get_object(creds, &key).sign(PRESIGN),
        };
        url.to_string()
    }
}

/// Credentials from where AWS's own tools look: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
/// (and `AWS_SESSION_TOKEN`), else the `AWS_PROFILE` (or `default`) section of
/// `AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`. None: anonymous requests.
fn aws_credentials() -> Option<rusty_s3::Credentials> {
    if let Some(c) = rusty_s3::Credentials::from_env() {
        return Some(c);
    }
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    let mut section = String::new();
    let mut values = std::collections::BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
        } else if section == profile
            && let Some((k, v)) = line.split_once('=')
        {
            values.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    let key = values.get("aws_access_key_id")?;
    let secret = values.get("aws_secret_access_key")?;
    Some(match values.get("aws_session_token") {
        Some(token) => rusty_s3::Credentials::new_with_token(key, secret, token),
        None => rusty_s3::Credentials::new(key, secret),
    })
}

/// Reads a small object from a cache; `Ok(None)` when the cache does not have it.
fn read_object(fetcher: &crate::fetch::Fetcher, backend: &Backend, file: &str) -> Result<Option<Vec<u8>>> {
    const LIMIT: u64 = 1 << 20;
    if let Backend::Dir(dir) = backend {
        // Bounded like a download: a cache directory is input from elsewhere too.
        return match std::fs::File::open(dir.join(file)) {
            Ok(f) => {
                let mut bytes = Vec::new();
                f.take(LIMIT).read_to_end(&mut bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        };
    }
    let url = backend.get_url(file);
    let location =
        fetcher.locations(&url)?.into_iter().next().ok_or_else(|| Error::UnsupportedUrl(url.clone()))?;
    match fetcher.open(&location) {
        Ok(opened) => {
            let mut bytes = Vec::new();
            opened.reader.take(LIMIT).read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        }
        Err(Error::HttpStatus { status: 404 | 410, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Store {
    /// Pushes `names` (see [`Store::transferable_closure`]) to the cache at `target` (a
    /// directory, an HTTP(S) base that accepts `PUT`, or an `s3://` bucket), signed with `key`,
    /// on up to `jobs` threads. Paths whose object is there already are skipped.
    pub fn push(&self, target: &str, names: &[String], key: &SecretKey) -> Result<PushReport> {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let backend = Backend::parse(target)?;
        if let Backend::Dir(dir) = &backend {
            fs_err::create_dir_all(dir.join("by-source"))?;
        }
        let report = Mutex::new(PushReport::default());
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.options.jobs.clamp(1, names.len().max(1)) {
                s.spawn(|| {
                    while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                        match self.push_one(&backend, name, key) {
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

    /// Uploads one path: its archive, its pointers, then its object (the object last, so that a
    /// reader never finds an object whose archive is not there); `None` when the object was.
    fn push_one(&self, backend: &Backend, name: &str, key: &SecretKey) -> Result<Option<u64>> {
        let object_file = format!("{name}.json");
        if backend.exists(&self.fetcher, &object_file)? {
            return Ok(None);
        }
        let work = TempDir::new(&self.dir().join(".tmp"))?;
        let archive = backend.put(&self.fetcher, &format!("{name}.tar.zst"), &work.path, |w| {
            self.write_archive(name, std::io::BufWriter::new(w))
        })?;
        let bytes = archive.1;
        let object = self.path_object(name, key, archive)?;
        for source in &object.sources {
            backend.put(&self.fetcher, &pointer(&source.key), &work.path, |w| {
                Ok(w.write_all(name.as_bytes())?)
            })?;
        }
        let text = serde_json::to_vec_pretty(&object).map_err(std::io::Error::other)?;
        backend.put(&self.fetcher, &object_file, &work.path, |w| Ok(w.write_all(&text)?))?;
        Ok(Some(bytes))
    }

    /// The path for `request` from the first cache that has it and passes every check, if any.
    /// `key` is the request's source key.
    pub(crate) fn ask_caches(
        &self,
        request: &InstallRequest,
        key: &str,
        reporter: &dyn Reporter,
    ) -> Option<Installed> {
        let source = crate::db::SourceRecord { sha256: request.sha256.to_string(), url: request.url.clone() };
        let what = format!("{} {}", request.name.as_str(), request.version.as_str());
        self.pull(key, request.store_path.as_ref(), &source, &what, reporter)
    }

    /// The path that answers the source key `key` (a package's source, or a derivation's key:
    /// a wheel built from source elsewhere) from the first cache that has it and passes every
    /// check, registered with `source` for `key`; `None` when no cache gives it. `what` names it
    /// in warnings.
    pub(crate) fn pull(
        &self,
        key: &str,
        store_path: Option<&StorePathName>,
        source: &crate::db::SourceRecord,
        what: &str,
        reporter: &dyn Reporter,
    ) -> Option<Installed> {
        for (url, backend) in &self.caches.list {
            let received = self.caches.lookup(backend, url, key, store_path).and_then(|object| {
                let Some(object) = object else { return Ok(None) };
                let archive = backend.get_url(&object.archive.file);
                let installed = self.receive(&object, &archive, &self.caches.trusted, reporter)?;
                // This source leads here from now on.
                self.db().register(&installed.record, Some((key, source)), &[])?;
                Ok(Some(installed))
            });
            match received {
                Ok(Some(mut installed)) => {
                    tracing::info!(path = %installed.record.name, cache = %url, "installed from a cache");
                    installed.cache = Some(url.clone());
                    return Some(installed);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("cache `{url}` passed over for {what}: {e}"),
            }
        }
        None
    }
}

/// The configured caches, parsed once (an S3 cache's credentials are read once, not per
/// install), in the order to ask them, with what their objects are checked against.
pub struct Caches {
    fetcher: crate::fetch::Fetcher,
    list: Vec<(String, Backend)>,
    trusted: Vec<crate::keys::PublicKey>,
}

impl Caches {
    /// The caches `options` configures, lowest priority first; with `fetch.offline`, only those
    /// on a local directory. One that cannot be parsed is left out with a warning.
    pub fn new(options: &crate::store::StoreOptions) -> Caches {
        let mut caches = options.caches.clone();
        caches.sort_by_key(|c| c.priority);
        let list = caches
            .into_iter()
            .filter_map(|c| match Backend::parse(&c.url) {
                Ok(b) if options.fetch.offline && !b.is_local() => None,
                Ok(b) => Some((c.url, b)),
                Err(e) => {
                    tracing::warn!("cache `{}` left out: {e}", c.url);
                    None
                }
            })
            .collect();
        Caches {
            fetcher: crate::fetch::Fetcher::new(options.fetch.clone()),
            list,
            trusted: options.trusted_keys.clone(),
        }
    }

    /// Whether there is any cache to ask.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first cache that would give `request`'s path, checked as far as can be without
    /// fetching its archive (a trusted signature, the right name): its URL and the archive's size.
    /// For `apply --dry-run` and `--offline`.
    pub fn offer(&self, request: &InstallRequest) -> Option<(String, u64)> {
        let format = request.unpack.format.or_else(|| crate::unpack::Format::from_file_name(&request.url))?;
        let key = Store::source_key(request, format);
        self.list.iter().find_map(|(url, backend)| {
            let object = self.lookup(backend, url, &key, request.store_path.as_ref()).ok()??;
            object.check(&self.trusted).is_ok().then(|| (url.clone(), object.archive.size))
        })
    }

    /// The object `backend` holds for the source key `key` (by the store path a lock names,
    /// `store_path`, else through the pointer for the key), refused unless it describes that
    /// path, its signed sources include `key` (however it was found: a lock whose store path was
    /// edited must not fetch another build than its source's), and it names its archive as every
    /// object does; `None` when the cache does not have it.
    fn lookup(
        &self,
        backend: &Backend,
        url: &str,
        key: &str,
        store_path: Option<&StorePathName>,
    ) -> Result<Option<PathObject>> {
        let name = match store_path {
            Some(name) => name.to_string(),
            None => match read_object(&self.fetcher, backend, &pointer(key))? {
                Some(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
                None => return Ok(None),
            },
        };
        let name = StorePathName::parse(&name)?;
        let Some(bytes) = read_object(&self.fetcher, backend, &format!("{name}.json"))? else {
            return Ok(None);
        };
        let object = PathObject::parse(&bytes, &format!("{url}/{name}.json"))?;
        let untrusted = |why: String| Error::Untrusted { name: name.to_string(), why };
        if object.name != name.as_str() {
            return Err(untrusted(format!("the cache's object for it describes `{}`", object.name)));
        }
        // The signed object must say it answers this source, whichever way it was found.
        if !object.sources.iter().any(|s| s.key == key) {
            return Err(untrusted(format!("its signed sources do not include this one (`{key}`)")));
        }
        if object.archive.file != format!("{}.tar.zst", object.name) {
            return Err(untrusted(format!("archive name `{}`", object.archive.file)));
        }
        Ok(Some(object))
    }
}
