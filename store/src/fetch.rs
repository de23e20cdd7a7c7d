//! Fetching artifacts: `http://`, `https://` (rustls), `file://`, plain paths, and
//! `mirror://NAME/rest`, which expands to each configured base of mirror `NAME` in turn.
//!
//! This module opens a location and classifies failures; retries, hashing and unpacking are the
//! installer's, which streams straight from the reader returned here. One client stack (reqwest's
//! blocking client over rustls with *ring*) serves every request, sources and binary caches alike:
//! it keeps connections open between requests to one host, speaks HTTP/2 where a server offers it
//! (ALPN, over TLS) and HTTP/1.1 elsewhere, trusts the system's certificate store, and goes
//! through the proxy `http_proxy`/`https_proxy`/`ALL_PROXY` name, except for hosts `NO_PROXY`
//! lists.

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
    direct: Client,
    /// Through `http_proxy` (or `ALL_PROXY`), for `http://` URLs, when the environment names one.
    http_proxy: Option<Client>,
    /// Through `https_proxy` (or `ALL_PROXY`), for `https://` URLs.
    https_proxy: Option<Client>,
    /// `NO_PROXY`: hosts reached directly.
    no_proxy: String,
    /// Why `https://` requests cannot be trusted (no certificate in the system's store), added to
    /// their errors.
    tls_note: Option<String>,
}

/// One HTTP client, or why none could be built (reported on the first request that needs it).
type Client = std::result::Result<reqwest::blocking::Client, String>;

impl Clients {
    fn new(options: &FetchOptions) -> Clients {
        let (tls, tls_note) = match tls_config() {
            Ok((config, note)) => (Ok(config), note),
            Err(e) => (Err(e), None),
        };
        // Redirects are followed here, not by the client, so that each target is checked first.
        // The environment's proxies are read below, not by the client, so that `NO_PROXY` means
        // the same for every request.
        let build = |proxy: Option<reqwest::Proxy>| -> Client {
            let tls = tls.clone()?;
            let mut builder = reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .connect_timeout(options.connect_timeout)
                // The blocking client's timeout bounds each read of a body (and the wait for an
                // answer's head): a read timeout. The whole download's limit is `Deadline`'s.
                .timeout(options.read_timeout)
                .user_agent(concat!("envctl/", env!("CARGO_PKG_VERSION")))
                .tls_backend_preconfigured(tls);
            if let Some(proxy) = proxy {
                builder = builder.proxy(proxy);
            }
            builder.build().map_err(|e| chain(&e))
        };
        let env = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
        let proxied = |names: &[&str]| {
            let url = env(names)?;
            match reqwest::Proxy::all(&url) {
                Ok(proxy) => Some(build(Some(proxy))),
                Err(e) => {
                    tracing::warn!("ignoring the proxy `{url}` ({}): {}", names[0], chain(&e));
                    None
                }
            }
        };
        Clients {
            direct: build(None),
            http_proxy: proxied(&["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]),
            https_proxy: proxied(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]),
            no_proxy: env(&["no_proxy", "NO_PROXY"]).unwrap_or_default(),
            tls_note,
        }
    }
}

/// TLS for every client: *ring*'s algorithms, the system's certificate store (what
/// `rustls-native-certs` finds: `SSL_CERT_FILE`/`SSL_CERT_DIR`, else the distribution's bundle),
/// and ALPN offering HTTP/2 before HTTP/1.1. With no certificate found, plain `http://` still
/// works and the note says why every `https://` server is refused.
fn tls_config() -> std::result::Result<(rustls::ClientConfig, Option<String>), String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    let note = (added == 0).then(|| {
        let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
        format!(
            "no trusted certificate was found in the system's certificate store{why} (install the \
             distribution's ca-certificates, or point SSL_CERT_FILE at a bundle)"
        )
    });
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, note))
}

/// What went wrong with a request, for an error that names the URL already: reqwest's own text
/// ("error sending request for url (…)") and hyper's ("client error (Connect)") are left out,
/// their causes kept, and an untrusted certificate gets what to do about it.
fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() && e.is_connect() {
        parts.push("could not connect in time ([fetch] connect-timeout-secs)".to_owned());
    } else if e.is_timeout() {
        parts.push("nothing arrived in time ([fetch] read-timeout-secs)".to_owned());
    } else if e.is_connect() {
        parts.push("could not connect".to_owned());
    } else if e.is_body() || e.is_decode() {
        parts.push("the answer broke off".to_owned());
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        let said = parts.iter().any(|p| p.contains(&text)) || (e.is_timeout() && text.contains("timed out"));
        if !text.starts_with("client error (") && !said {
            parts.push(text);
        }
        cause = c.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    let mut out = parts.join(": ");
    if matches!(certificate_error(e), Some(rustls::CertificateError::UnknownIssuer)) {
        out.push_str(
            " (the server's certificate is not signed by an authority in the system's certificate \
             store: add its authority there, or point SSL_CERT_FILE at a bundle that has it)",
        );
    }
    out
}

/// What rustls found wrong with the server's certificate, when that is why `e` failed. Its error
/// arrives wrapped in `io::Error`s (rustls's own, then the connector's), whose `source` skips what
/// they wrap, so each is opened in turn.
fn certificate_error(e: &reqwest::Error) -> Option<&rustls::CertificateError> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let mut layer: &(dyn std::error::Error + 'static) = c;
        loop {
            if let Some(rustls::Error::InvalidCertificate(why)) = layer.downcast_ref::<rustls::Error>() {
                return Some(why);
            }
            match layer.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
                Some(inner) => layer = inner,
                None => break,
            }
        }
        cause = c.source();
    }
    None
}

/// A header's value, when present and readable as text.
fn header<'r>(resp: &'r reqwest::blocking::Response, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

impl Fetcher {
    /// A fetcher with these options.
    pub fn new(options: FetchOptions) -> Fetcher {
        Fetcher { clients: std::sync::OnceLock::new(), options, sizes: Default::default() }
    }

    /// The client for `url`: through the proxy the environment names for its scheme, unless
    /// `NO_PROXY` lists its host (`*`, the host itself, or a domain it is in).
    fn client_for(&self, url: &str) -> Result<&reqwest::blocking::Client> {
        let client = self.choose(url);
        client.as_ref().map_err(|why| Error::Transport { url: url.to_owned(), message: why.clone() })
    }

    fn choose(&self, url: &str) -> &Client {
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
                let resp = self.request(reqwest::Method::HEAD, url).ok()?;
                header(&resp, "Content-Length").and_then(|v| v.parse().ok())
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
        let resp = self.request_accepting(reqwest::Method::GET, url, accept)?;
        let size = header(&resp, "Content-Length").and_then(|v| v.parse().ok());
        // The media type alone (`text/html; charset=utf-8` is `text/html`), `text/plain` if none.
        let content_type = header(&resp, "Content-Type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_else(|| "text/plain".to_owned());
        let reader = Deadline {
            inner: resp,
            url: url.to_owned(),
            limit: self.options.deadline,
            ends: std::time::Instant::now() + self.options.deadline,
        };
        Ok((Opened { reader: Box::new(reader), size }, content_type))
    }

    /// Uploads `len` bytes from `body` to `url` with `PUT` (a cache upload; no redirects).
    pub fn put(&self, url: &str, body: impl Read + Send + 'static, len: u64) -> Result<()> {
        // The client's timeout would bound the whole upload (it covers everything up to the
        // answer's head): a big archive on a slow link gets the download deadline instead.
        let sent = self
            .client_for(url)?
            .put(url)
            .timeout(self.options.deadline)
            .body(reqwest::blocking::Body::sized(body, len))
            .send();
        match sent {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(Error::HttpStatus { url: url.to_owned(), status: resp.status().as_u16() }),
            Err(e) => Err(self.transport(url.to_owned(), &e)),
        }
    }

    /// A failed request's error, with the reason `https://` cannot be trusted when there is one;
    /// an untrusted certificate is [`Error::UntrustedServer`], which is not retried.
    fn transport(&self, url: String, e: &reqwest::Error) -> Error {
        let mut message = chain(e);
        let note = self.clients.get().and_then(|c| c.tls_note.as_deref());
        if let Some(note) = note.filter(|_| url.starts_with("https://")) {
            message = format!("{message} ({note})");
        }
        if certificate_error(e).is_some() {
            return Error::UntrustedServer { url, message };
        }
        Error::Transport { url, message }
    }

    /// Whether `url` answers a `HEAD` with success (`false` for 404 and 410).
    pub fn exists(&self, url: &str) -> Result<bool> {
        match self.request(reqwest::Method::HEAD, url) {
            Ok(_) => Ok(true),
            Err(Error::HttpStatus { status: 404 | 410, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends `method` to `url`, following redirects itself: only to `http` or `https`, never from
    /// `https` down to `http`, at most [`MAX_REDIRECTS`], and never in a loop.
    fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::blocking::Response> {
        self.request_accepting(method, url, None)
    }

    /// [`Fetcher::request`] with an `Accept` header (an index's JSON pages).
    fn request_accepting(
        &self,
        method: reqwest::Method,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::blocking::Response> {
        let mut current = url.to_owned();
        let mut seen = vec![current.clone()];
        loop {
            let mut req = self.client_for(&current)?.request(method.clone(), &current);
            if let Some(accept) = accept {
                req = req.header("Accept", accept);
            }
            let resp = match req.send() {
                Ok(resp) => resp,
                Err(e) => return Err(self.transport(current, &e)),
            };
            let status = resp.status().as_u16();
            if status >= 400 {
                return Err(Error::HttpStatus { url: current, status });
            }
            if !(300..400).contains(&status) {
                return Ok(resp);
            }
            let refuse =
                |to: String, why: &str| Error::Redirect { from: current.clone(), to, why: why.to_owned() };
            let Some(location) = header(&resp, "Location") else {
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
        self.inner.read(buf).map_err(body_error)
    }
}

/// A failed read of an answer's body, saying why (a timeout, the connection closing early)
/// instead of reqwest's "error decoding response body".
fn body_error(e: std::io::Error) -> std::io::Error {
    let why = e.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()).map(chain);
    match why {
        Some(why) => std::io::Error::new(e.kind(), why),
        None => e,
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
