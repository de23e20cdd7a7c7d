//! Package index sources: `index://NAME/FILE`, a file on a Python package index named without
//! its host. The index's bases come from the configuration (`[indexes]`, or the user's pip
//! configuration for `pypi`); each is tried in order:
//!
//! - a local directory (`file://…` or a path) holds the file itself, flat (as pip's
//!   `--find-links`) or under the project's directory (a simple index on disk);
//! - an `http(s)` base is a simple repository: its project page `BASE/PROJECT/` is read, as JSON
//!   (PEP 691) where the index offers it, else as HTML (PEP 503), and the file named `FILE` is the
//!   location, resolved against the page. The JSON gives the file's size too (PEP 700), which a
//!   dry run then shows without asking anything more.
//!
//! The sha256 of the recipe is checked on whatever is downloaded, so an index can only serve the
//! right bytes or fail.

use std::io::Read;
use std::path::PathBuf;

use envctl_store::{Error, Fetcher, Location, Resolver, Result};

/// Project pages larger than this are refused (the largest real ones are a few MiB).
const MAX_PAGE: u64 = 64 << 20;

/// The project a distribution file belongs to, normalized as PEP 503 says: the part of the file
/// name before the version (`Typing_Extensions-4.9.0-py3-none-any.whl` → `typing-extensions`).
fn project_of(file: &str) -> String {
    let name = if file.ends_with(".whl") {
        file.split('-').next().unwrap_or(file)
    } else {
        // An sdist, `NAME-VERSION.tar.gz`: the version starts at the last `-` before a digit.
        let stem = file.trim_end_matches(".tar.gz").trim_end_matches(".zip");
        stem.rmatch_indices('-')
            .find(|(i, _)| stem[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
            .map_or(stem, |(i, _)| &stem[..i])
    };
    normalized_name(name)
}

use envctl_core::normalized_name;

/// Resolves `index://NAME/FILE` for the store's fetcher (see the module docs); the settings put it
/// among the fetch options' resolvers.
#[derive(Debug, Clone, Copy, Default)]
pub struct PackageIndex;

impl Resolver for PackageIndex {
    fn scheme(&self) -> &'static str {
        "index://"
    }

    fn locations(&self, url: &str, fetcher: &Fetcher) -> Result<Vec<Location>> {
        index_locations(fetcher, url)
    }
}

/// The locations of `index://NAME/FILE`: see the module docs.
fn index_locations(this: &Fetcher, url: &str) -> Result<Vec<Location>> {
    let rest = url.strip_prefix("index://").unwrap_or(url);
    let (name, file) = rest.split_once('/').unwrap_or((rest, ""));
    if file.is_empty() || file.contains('/') {
        return Err(Error::UnsupportedUrl(url.to_owned()));
    }
    let bases = this
        .options()
        .indexes
        .get(name)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::UnknownIndex { url: url.to_owned(), name: name.to_owned() })?;
    let project = project_of(file);
    let mut found = Vec::new();
    let mut misses = Vec::new();
    for base in bases {
        if let Some(dir) = local_dir(base) {
            match [dir.join(file), dir.join(&project).join(file)].into_iter().find(|p| p.is_file()) {
                Some(path) => found.push(Location::File(path)),
                None => misses.push(format!("{}: no `{file}` there", dir.display())),
            }
            continue;
        }
        if this.options().offline {
            continue;
        }
        let page = format!("{}/{project}/", base.trim_end_matches('/'));
        // A name that does not resolve yet, a reset, a 503: asked again as a download is.
        let mut attempt = 0;
        let answer = loop {
            match find_on_page(this, &page, file) {
                Err(e) if e.should_retry() && attempt < this.options().retries => {
                    let delay = this.options().backoff * 2u32.saturating_pow(attempt);
                    tracing::warn!("could not read `{page}` ({e}); retry {} in {delay:?}", attempt + 1);
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                answer => break answer,
            }
        };
        match answer {
            Ok(Some(link)) => found.push(Location::Http(link)),
            Ok(None) => misses.push(format!("{page}: no link to `{file}`")),
            Err(e) => misses.push(e.to_string()),
        }
    }
    if found.is_empty() {
        if this.options().offline && misses.is_empty() {
            return Err(Error::Offline { url: url.to_owned() });
        }
        return Err(Error::NotOnIndex { url: url.to_owned(), name: name.to_owned(), tried: misses });
    }
    Ok(found)
}

/// Reads a simple-repository project page and returns the absolute URL of the link to `file`.
fn find_on_page(this: &Fetcher, page: &str, file: &str) -> Result<Option<String>> {
    let mut body = String::new();
    let (opened, content_type) = this.open_http(page, Some(ACCEPT))?;
    let json = content_type.starts_with(JSON);
    opened
        .reader
        .take(MAX_PAGE)
        .read_to_string(&mut body)
        .map_err(|e| Error::Transport { url: page.to_owned(), message: e.to_string() })?;
    let base = url::Url::parse(page).map_err(|_| Error::UnsupportedUrl(page.to_owned()))?;
    if json {
        return find_in_json(this, &base, &body, file);
    }
    for href in hrefs(&body) {
        let href = href.replace("&amp;", "&");
        let Ok(link) = base.join(&href) else { continue };
        let last = link.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default();
        let decoded = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
        if decoded == file && matches!(link.scheme(), "http" | "https") {
            let mut link = link;
            link.set_fragment(None);
            return Ok(Some(link.to_string()));
        }
    }
    Ok(None)
}

/// The JSON form of a project page (PEP 691), preferred; HTML after it.
const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, text/html;q=0.1";
const JSON: &str = "application/vnd.pypi.simple.v1+json";

/// A JSON project page: its files.
#[derive(serde::Deserialize)]
struct JsonPage {
    files: Vec<JsonFile>,
}

#[derive(serde::Deserialize)]
struct JsonFile {
    filename: String,
    url: String,
    /// PEP 700.
    #[serde(default)]
    size: Option<u64>,
}

/// [`find_on_page`] for a JSON page: the file's URL, its size remembered.
fn find_in_json(this: &Fetcher, base: &url::Url, body: &str, file: &str) -> Result<Option<String>> {
    let page: JsonPage = serde_json::from_str(body).map_err(|e| Error::Transport {
        url: base.to_string(),
        message: format!("the index's JSON page does not parse: {e}"),
    })?;
    let Some(found) = page.files.into_iter().find(|f| f.filename == file) else { return Ok(None) };
    let Ok(mut link) = base.join(&found.url) else { return Ok(None) };
    if !matches!(link.scheme(), "http" | "https") {
        return Ok(None);
    }
    link.set_fragment(None);
    if let Some(size) = found.size {
        this.remember_size(link.as_ref(), size);
    }
    Ok(Some(link.to_string()))
}

/// A base naming a local directory: `file://…` or an absolute path.
fn local_dir(base: &str) -> Option<PathBuf> {
    if let Some(path) = base.strip_prefix("file://") {
        use std::os::unix::ffi::OsStringExt;
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(path).collect();
        return Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)));
    }
    base.starts_with('/').then(|| PathBuf::from(base))
}

/// The values of the `href` attributes of an HTML page, in order.
fn hrefs(html: &str) -> Vec<&str> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find("href=") {
        let start = at + i + 5;
        let quote = html[start..].chars().next();
        let (from, end) = match quote {
            Some(q @ ('"' | '\'')) => (start + 1, html[start + 1..].find(q).map(|e| start + 1 + e)),
            _ => (start, html[start..].find([' ', '>']).map(|e| start + e)),
        };
        let Some(end) = end else { break };
        out.push(&html[from..end]);
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_are_normalized_from_file_names() {
        assert_eq!(project_of("Typing_Extensions-4.9.0-py3-none-any.whl"), "typing-extensions");
        assert_eq!(
            project_of("tensorflow_io_gcs_filesystem-0.37.1-cp311-cp311-manylinux_2_17_x86_64.whl"),
            "tensorflow-io-gcs-filesystem"
        );
        assert_eq!(project_of("zope.interface-6.0.tar.gz"), "zope-interface");
        assert_eq!(project_of("my-pkg-2-1.0.tar.gz"), "my-pkg-2");
    }

    #[test]
    fn links_are_read_from_simple_pages() {
        let page = r#"<html><body><a href="../../files/ab/x-1.0-py3-none-any.whl#sha256=00">x-1.0</a>
            <A HREF='https://h.example/y.whl?a=1&amp;b=2'>y</A></body></html>"#;
        assert_eq!(
            hrefs(page),
            ["../../files/ab/x-1.0-py3-none-any.whl#sha256=00", "https://h.example/y.whl?a=1&amp;b=2"]
        );
    }
}
