//! Fetching artifacts: `http://`, `https://` (rustls), `file://`, plain paths, and
//! `mirror://NAME/rest`, which expands to each configured base of mirror `NAME` in turn.
//!
//! This module opens a location and classifies failures; retries, hashing and unpacking are the
//! installer's, which streams straight from the reader returned here. One client (ureq, rustls)
//! serves every request, sources and binary caches alike: it trusts the system's certificate
//! store, and goes through the proxy `http_proxy`/`https_proxy`/`ALL_PROXY` name, except for hosts
//! `NO_PROXY` lists.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Mirror name to base URLs, tried in order.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Package index name to its bases (simple repositories, or local directories), tried in
    /// order, for `index://NAME/FILE` sources.
    pub indexes: BTreeMap<String, Vec<String>>,
    /// Further attempts at one location after a transient failure (connection, timeout, 5xx).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for one read to make progress; a stalled server fails after this.
    pub read_timeout: Duration,
    /// Limit for a whole download, however steadily it trickles in.
    pub deadline: Duration,
    /// Use local locations only (files, `file://` mirror bases, `empty:`); `http(s)` ones are
    /// left out.
    pub offline: bool,
    /// Resolvers of the schemes the store does not know itself (envctl-python's `index://`).
    pub resolvers: Resolvers,
}

/// Resolves source URLs of a scheme the store does not know (a Python package index's
/// `index://NAME/FILE`, which envctl-python reads) into locations to try in order.
pub trait Resolver: Send + Sync {
    /// The scheme, with its `://` (`index://`).
    fn scheme(&self) -> &'static str;
    /// The locations of `url`, which starts with [`Resolver::scheme`].
    fn locations(&self, url: &str, fetcher: &Fetcher) -> Result<Vec<Location>>;
}

/// The resolvers a fetcher asks, by scheme.
#[derive(Clone, Default)]
pub struct Resolvers(pub Vec<std::sync::Arc<dyn Resolver>>);

impl std::fmt::Debug for Resolvers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|r| r.scheme())).finish()
    }
}

/// Redirects followed for one request at most.
const MAX_REDIRECTS: usize = 10;

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions {
            mirrors: BTreeMap::new(),
            indexes: BTreeMap::new(),
            retries: 3,
            backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(3 * 3600),
            offline: false,
            resolvers: Resolvers::default(),
        }
    }
}

/// One concrete place to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An `http://` or `https://` URL.
    Http(String),
    /// A local file.
    File(PathBuf),
    /// `empty:`, an empty tar archive (1,024 zero bytes): the source of a metapackage, whose store
    /// path is an empty tree.
    Empty,
}

/// The mirror a `mirror://NAME/…` URL names.
pub fn mirror_name(url: &str) -> Option<&str> {
    url.strip_prefix("mirror://").map(|rest| rest.split_once('/').map_or(rest, |(name, _)| name))
}

/// The URL of an empty package (see [`Location::Empty`]).
pub const EMPTY_URL: &str = "empty:";

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Http(u) => f.write_str(u),
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Empty => f.write_str(EMPTY_URL),
        }
    }
}

/// An opened location.
pub struct Opened {
    /// The bytes.
    pub reader: Box<dyn Read + Send>,
    /// The length, when known.
    pub size: Option<u64>,
}

/// Opens locations.
pub struct Fetcher {
    /// The HTTP clients, built on the first request: building one loads the system's certificate
    /// store (a hundred and more files), which a command that fetches nothing must not pay for.
    clients: std::sync::OnceLock<Clients>,
    options: FetchOptions,
    /// File sizes a resolver was told (an index's PEP 700 metadata), by URL: a dry run asks
    /// nothing more.
    sizes: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// The HTTP clients of a fetcher.
struct Clients {
    direct: ureq::Agent,
    /// Through `http_proxy` (or `ALL_PROXY`), for `http://` URLs, when the environment names one.
    http_proxy: Option<ureq::Agent>,
    /// Through `https_proxy` (or `ALL_PROXY`), for `https://` URLs.
    https_proxy: Option<ureq::Agent>,
    /// `NO_PROXY`: hosts reached directly.
    no_proxy: String,
}

impl Clients {
    fn new(options: &FetchOptions) -> Clients {
        // Redirects are followed here, not by the client, so that each target is checked first.
        let builder = || {
            ureq::AgentBuilder::new()
                .redirects(0)
                .timeout_connect(options.connect_timeout)
                .timeout_read(options.read_timeout)
                .user_agent(concat!("envctl/", env!("CARGO_PKG_VERSION")))
        };
        let env = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
        let proxied = |names: &[&str]| {
            let url = env(names)?;
            match ureq::Proxy::new(&url) {
                Ok(proxy) => Some(builder().proxy(proxy).build()),
                Err(e) => {
                    tracing::warn!("ignoring the proxy `{url}` ({}): {e}", names[0]);
                    None
                }
            }
        };
        Clients {
            direct: builder().build(),
            http_proxy: proxied(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
            https_proxy: proxied(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
            no_proxy: env(&["no_proxy", "NO_PROXY"]).unwrap_or_default(),
        }
    }
}

impl Fetcher {
    /// A fetcher with these options.
    pub fn new(options: FetchOptions) -> Fetcher {
        Fetcher { clients: std::sync::OnceLock::new(), options, sizes: Default::default() }
    }

    /// The client for `url`: through the proxy the environment names for its scheme, unless
    /// `NO_PROXY` lists its host (`*`, the host itself, or a domain it is in).
    fn agent_for(&self, url: &str) -> &ureq::Agent {
        let c = self.clients.get_or_init(|| Clients::new(&self.options));
        let proxy = if url.starts_with("https://") { &c.https_proxy } else { &c.http_proxy };
        let Some(proxy) = proxy else { return &c.direct };
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()));
        let Some(host) = host else { return proxy };
        let bypass = c.no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
            let entry = entry.trim_start_matches("*.").trim_start_matches('.');
            entry == "*" || host == entry || host.ends_with(&format!(".{entry}"))
        });
        if bypass { &c.direct } else { proxy }
    }

    /// Remembers the size of the file at `url`, as a resolver was told it: [`Fetcher::size`]
    /// then answers without asking the server.
    pub fn remember_size(&self, url: &str, size: u64) {
        self.sizes.lock().unwrap_or_else(|p| p.into_inner()).insert(url.to_owned(), size);
    }

    /// The options in force.
    pub fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// The concrete locations of a source URL, in the order to try them (local ones only when
    /// offline; none is then an [`Error::Offline`]).
    pub fn locations(&self, url: &str) -> Result<Vec<Location>> {
        let all = self.all_locations(url)?;
        if !self.options.offline {
            return Ok(all);
        }
        let local: Vec<Location> = all.into_iter().filter(|l| !matches!(l, Location::Http(_))).collect();
        if local.is_empty() {
            return Err(Error::Offline { url: url.to_owned() });
        }
        Ok(local)
    }

    fn all_locations(&self, url: &str) -> Result<Vec<Location>> {
        if let Some(rest) = url.strip_prefix("mirror://") {
            let (name, path) = rest.split_once('/').unwrap_or((rest, ""));
            let bases = self
                .options
                .mirrors
                .get(name)
                .filter(|b| !b.is_empty())
                .ok_or_else(|| Error::UnknownMirror { url: url.to_owned(), name: name.to_owned() })?;
            let mut out = Vec::new();
            for base in bases {
                let full = format!("{}/{}", base.trim_end_matches('/'), path);
                if full.starts_with("mirror://") {
                    return Err(Error::UnsupportedUrl(full));
                }
                out.extend(self.all_locations(&full)?);
            }
            return Ok(out);
        }
        if url == EMPTY_URL {
            return Ok(vec![Location::Empty]);
        }
        if let Some(resolver) = self.options.resolvers.0.iter().find(|r| url.starts_with(r.scheme())) {
            return resolver.locations(url, self);
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(vec![Location::Http(url.to_owned())]);
        }
        if let Some(path) = url.strip_prefix("file://") {
            use std::os::unix::ffi::OsStringExt;
            let bytes: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
            return Ok(vec![Location::File(PathBuf::from(std::ffi::OsString::from_vec(bytes)))]);
        }
        if url.contains("://") || url.is_empty() {
            return Err(Error::UnsupportedUrl(url.to_owned()));
        }
        Ok(vec![Location::File(PathBuf::from(url))])
    }

    /// The download size of a source URL without fetching it: a local file's length, or the
    /// `Content-Length` of a `HEAD` request, from the first location that answers. `None` when no
    /// location says (a server may not send the header); a plan then shows the size as unknown.
    pub fn size(&self, url: &str) -> Option<u64> {
        self.locations(url).ok()?.iter().find_map(|location| match location {
            Location::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            Location::Empty => Some(1024),
            Location::Http(url) => {
                if let Some(size) = self.sizes.lock().unwrap_or_else(|p| p.into_inner()).get(url) {
                    return Some(*size);
                }
                let resp = self.request("HEAD", url).ok()?;
                resp.header("Content-Length").and_then(|v| v.parse().ok())
            }
        })
    }

    /// Opens one location for reading.
    pub fn open(&self, location: &Location) -> Result<Opened> {
        match location {
            Location::File(path) => {
                let file = fs_err::File::open(path)?;
                let size = file.metadata().ok().map(|m| m.len());
                Ok(Opened { reader: Box::new(file.into_parts().0), size })
            }
            Location::Empty => {
                Ok(Opened { reader: Box::new(std::io::repeat(0).take(1024)), size: Some(1024) })
            }
            Location::Http(url) => self.open_http(url, None).map(|(opened, _)| opened),
        }
    }

    /// `GET url` (with an `Accept` header, when given), read under the fetch deadline; with the
    /// answer's content type.
    pub fn open_http(&self, url: &str, accept: Option<&str>) -> Result<(Opened, String)> {
        let resp = self.request_accepting("GET", url, accept)?;
        let size = resp.header("Content-Length").and_then(|v| v.parse().ok());
        let content_type = resp.content_type().to_owned();
        let reader = Deadline {
            inner: resp.into_reader(),
            url: url.to_owned(),
            limit: self.options.deadline,
            ends: std::time::Instant::now() + self.options.deadline,
        };
        Ok((Opened { reader: Box::new(reader), size }, content_type))
    }

    /// Uploads `len` bytes from `body` to `url` with `PUT` (a cache upload; no redirects).
    pub fn put(&self, url: &str, body: impl Read, len: u64) -> Result<()> {
        match self.agent_for(url).put(url).set("Content-Length", &len.to_string()).send(body) {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(status, _)) => Err(Error::HttpStatus { url: url.to_owned(), status }),
            Err(ureq::Error::Transport(t)) => {
                Err(Error::Transport { url: url.to_owned(), message: t.to_string() })
            }
        }
    }

    /// Whether `url` answers a `HEAD` with success (`false` for 404 and 410).
    pub fn exists(&self, url: &str) -> Result<bool> {
        match self.request("HEAD", url) {
            Ok(_) => Ok(true),
            Err(Error::HttpStatus { status: 404 | 410, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends `method` to `url`, following redirects itself: only to `http` or `https`, never from
    /// `https` down to `http`, at most [`MAX_REDIRECTS`], and never in a loop.
    fn request(&self, method: &str, url: &str) -> Result<ureq::Response> {
        self.request_accepting(method, url, None)
    }

    /// [`Fetcher::request`] with an `Accept` header (an index's JSON pages).
    fn request_accepting(&self, method: &str, url: &str, accept: Option<&str>) -> Result<ureq::Response> {
        let mut current = url.to_owned();
        let mut seen = vec![current.clone()];
        loop {
            let mut req = self.agent_for(&current).request(method, &current);
            if let Some(accept) = accept {
                req = req.set("Accept", accept);
            }
            let resp = match req.call() {
                Ok(resp) => resp,
                Err(ureq::Error::Status(status, _)) => {
                    return Err(Error::HttpStatus { url: current, status });
                }
                Err(ureq::Error::Transport(t)) => {
                    return Err(Error::Transport { url: current, message: t.to_string() });
                }
            };
            if !(300..400).contains(&resp.status()) {
                return Ok(resp);
            }
            let refuse =
                |to: String, why: &str| Error::Redirect { from: current.clone(), to, why: why.to_owned() };
            let Some(location) = resp.header("Location") else {
                return Err(refuse(String::new(), "the answer has no Location header"));
            };
            let next = url::Url::parse(&current)
                .and_then(|base| base.join(location))
                .map_err(|e| refuse(location.to_owned(), &format!("it is not a URL ({e})")))?;
            let next_text = next.to_string();
            match next.scheme() {
                "https" => {}
                "http" if current.starts_with("http://") => {}
                "http" => return Err(refuse(next_text, "it would go from https down to http")),
                _ => return Err(refuse(next_text, "only http and https redirects are followed")),
            }
            if next.host_str().is_none_or(str::is_empty) {
                return Err(refuse(next_text, "it names no host"));
            }
            if seen.contains(&next_text) {
                return Err(refuse(next_text, "it is a redirect loop"));
            }
            if seen.len() > MAX_REDIRECTS {
                return Err(refuse(next_text, &format!("more than {MAX_REDIRECTS} redirects")));
            }
            seen.push(next_text.clone());
            current = next_text;
        }
    }
}

/// A download's body, cut off once its deadline passes: a server that trickles a byte at a time
/// never trips the read timeout, so the whole download has a limit too.
struct Deadline<R> {
    inner: R,
    url: String,
    limit: Duration,
    ends: std::time::Instant,
}

impl<R: Read> Read for Deadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if std::time::Instant::now() > self.ends {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "`{}` took longer than the download deadline of {} s ([fetch] deadline-secs)",
                    self.url,
                    self.limit.as_secs()
                ),
            ));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_expand_in_order_and_unknown_ones_are_named() {
        let mut options = FetchOptions::default();
        options.mirrors.insert("nvidia".into(), vec!["http://a/x/".into(), "file:///srv/m".into()]);
        let f = Fetcher::new(options);
        assert_eq!(
            f.locations("mirror://nvidia/redist/c.tar.xz").unwrap(),
            vec![
                Location::Http("http://a/x/redist/c.tar.xz".into()),
                Location::File("/srv/m/redist/c.tar.xz".into())
            ]
        );
        let err = f.locations("mirror://pypi/x.whl").unwrap_err().to_string();
        assert!(err.contains("`pypi`"), "{err}");
        assert!(f.locations("ftp://x/y").is_err());
        assert_eq!(f.locations("file:///a%20b").unwrap(), vec![Location::File("/a b".into())]);
        // An escape right before a multi-byte character used to panic.
        assert_eq!(f.locations("file:///tmp/%aé.tar").unwrap(), vec![Location::File("/tmp/%aé.tar".into())]);
        assert_eq!(f.locations("rel/x.tar").unwrap(), vec![Location::File("rel/x.tar".into())]);
    }
}
