//! Fetching artifacts: `http://`, `https://` (rustls), `file://`, plain paths, and
//! `mirror://NAME/rest`, which expands to each configured base of mirror `NAME` in turn.
//!
//! This module opens a location and classifies failures; retries, hashing and unpacking are the
//! installer's, which streams straight from the reader returned here.

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
    /// Further attempts at one location after a transient failure (connection, timeout, 5xx).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for one read to make progress; a stalled server fails after this.
    pub read_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions {
            mirrors: BTreeMap::new(),
            retries: 3,
            backoff: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
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
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Http(u) => f.write_str(u),
            Location::File(p) => write!(f, "{}", p.display()),
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
    agent: ureq::Agent,
    options: FetchOptions,
}

impl Fetcher {
    /// A fetcher with these options.
    pub fn new(options: FetchOptions) -> Fetcher {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(options.connect_timeout)
            .timeout_read(options.read_timeout)
            .user_agent(concat!("envctl/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher { agent, options }
    }

    /// The options in force.
    pub fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// The concrete locations of a source URL, in the order to try them.
    pub fn locations(&self, url: &str) -> Result<Vec<Location>> {
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
                out.extend(self.locations(&full)?);
            }
            return Ok(out);
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(vec![Location::Http(url.to_owned())]);
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(vec![Location::File(PathBuf::from(percent_decode(path)))]);
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
            Location::Http(url) => {
                let resp = self.agent.head(url).call().ok()?;
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
            Location::Http(url) => match self.agent.get(url).call() {
                Ok(resp) => {
                    let size = resp.header("Content-Length").and_then(|v| v.parse().ok());
                    Ok(Opened { reader: Box::new(resp.into_reader()), size })
                }
                Err(ureq::Error::Status(status, _)) => Err(Error::HttpStatus { url: url.clone(), status }),
                Err(ureq::Error::Transport(t)) => {
                    Err(Error::Transport { url: url.clone(), message: t.to_string() })
                }
            },
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
        assert_eq!(f.locations("rel/x.tar").unwrap(), vec![Location::File("rel/x.tar".into())]);
    }
}
