//! python-build-standalone's download metadata (as uv tracks it, `download-metadata.json`, or a
//! pin file for one build) into `python` recipes: CPython for linux x86_64 and aarch64 (glibc),
//! one recipe per version with a source per platform.
//!
//! - `install_only` builds (3.8 and later) unpack from `python/` (one component stripped).
//! - A full build (3.7.9's, pinned in its own file) keeps only `python/install/` (`root`).
//! - URLs of python-build-standalone's releases become `mirror://python-build-standalone/…`, whose
//!   default base is the project's release downloads, so a site can mirror them.
//! - Pre-releases, debug builds, `freethreaded` and micro-architecture variants are left out, and
//!   so is an entry without a sha256.

use std::collections::BTreeMap;

use serde_json::Value;

use envctl_core::Unpack;

use super::{Generated, Problem};
use crate::recipe::Source;
use crate::version::Version;
use crate::write::Comments;

/// Release download roots that `mirror://python-build-standalone/` stands for.
const RELEASE_ROOTS: &[&str] = &[
    "https://github.com/astral-sh/python-build-standalone/releases/download/",
    "https://github.com/indygreg/python-build-standalone/releases/download/",
];

/// envctl platform of a python-build-standalone architecture family.
fn platform(family: &str) -> Option<&'static str> {
    match family {
        "x86_64" => Some("linux-x86_64"),
        "aarch64" => Some("linux-aarch64"),
        _ => None,
    }
}

struct Build {
    version: String,
    platform: &'static str,
    url: String,
    sha256: String,
    /// `python/install` for a full build; `None` for install_only (strip `python/`).
    root: Option<String>,
    label: String,
}

fn mirror_url(url: &str) -> String {
    RELEASE_ROOTS
        .iter()
        .find_map(|root| url.strip_prefix(root))
        .map_or_else(|| url.to_owned(), |rest| format!("mirror://python-build-standalone/{rest}"))
}

/// One metadata entry, if it is a build we import.
fn build_of(entry: &Value) -> Option<Build> {
    let s = |k: &str| entry.get(k).and_then(Value::as_str);
    if s("name")? != "cpython" || s("os")? != "linux" || s("libc")? != "gnu" {
        return None;
    }
    if !entry.get("variant").is_none_or(Value::is_null) || !s("prerelease").unwrap_or("").is_empty() {
        return None;
    }
    let family = match entry.get("arch")? {
        Value::String(f) => f.as_str(),
        arch => {
            if !arch.get("variant").is_none_or(Value::is_null) {
                return None;
            }
            arch.get("family")?.as_str()?
        }
    };
    let platform = platform(family)?;
    let sha256 = s("sha256")?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let url = s("url")?;
    let root = entry.get("archive_layout").and_then(|l| l.get("strip_prefix")).and_then(Value::as_str);
    if root.is_none() && !url.contains("install_only") {
        return None;
    }
    let n = |k: &str| entry.get(k).and_then(Value::as_u64);
    let version = format!("{}.{}.{}", n("major")?, n("minor")?, n("patch")?);
    let label = match (s("build"), s("flavor")) {
        (Some(b), _) => format!("build {b}"),
        (None, Some(f)) => f.to_owned(),
        _ => "python-build-standalone".to_owned(),
    };
    Some(Build { version, platform, url: url.to_owned(), sha256, root: root.map(str::to_owned), label })
}

/// Recipes for the metadata files `(file name, text)`, sorted by path; deterministic.
pub fn import(files: &[(String, String)]) -> Result<Vec<Generated>, Problem> {
    let mut builds: BTreeMap<(Version, &'static str), (Build, String)> = BTreeMap::new();
    for (file, text) in files {
        let problem = |message: String| Problem { file: file.clone(), message };
        let value: Value = serde_json::from_str(text).map_err(|e| problem(format!("not JSON: {e}")))?;
        let name = file.rsplit('/').next().unwrap_or(file).to_owned();
        // uv's table is an object of entries; a pin file is one entry.
        let entries: Vec<&Value> = if value.get("name").is_some() {
            vec![&value]
        } else {
            value.as_object().ok_or_else(|| problem("not a JSON object".into()))?.values().collect()
        };
        for entry in entries {
            let Some(build) = build_of(entry) else { continue };
            let version = Version::parse(&build.version).map_err(|e| problem(e.to_string()))?;
            // The first file to list a build keeps it: files are read in name order.
            builds.entry((version, build.platform)).or_insert((build, name.clone()));
        }
    }
    let mut by_version: BTreeMap<&Version, Vec<&(Build, String)>> = BTreeMap::new();
    for ((version, _), b) in &builds {
        by_version.entry(version).or_default().push(b);
    }
    let mut out = Vec::new();
    for (version, builds) in by_version {
        let files: std::collections::BTreeSet<&str> = builds.iter().map(|(_, f)| f.as_str()).collect();
        let labels: std::collections::BTreeSet<&str> = builds.iter().map(|(b, _)| b.label.as_str()).collect();
        let comments = Comments {
            header: vec![format!(
                "Generated by `envctl import python-build-standalone` from {}.",
                files.iter().copied().collect::<Vec<_>>().join(", ")
            )],
            ..Comments::default()
        };
        let problem =
            |message: String| Problem { file: files.iter().copied().collect::<Vec<_>>().join(", "), message };
        let mut recipe = super::recipe("python", &version.to_string()).map_err(&problem)?;
        recipe.summary = format!(
            "CPython {version} (python-build-standalone, {})",
            labels.into_iter().collect::<Vec<_>>().join(", ")
        );
        recipe.license = "PSF-2.0".into();
        recipe.system.glibc = Some(super::requirement(">=2.17").map_err(&problem)?);
        for (b, _) in builds {
            let unpack = match &b.root {
                Some(root) => Unpack { root: Some(root.clone()), ..Unpack::default() },
                None => Unpack { strip_components: 1, ..Unpack::default() },
            };
            recipe.sources.push(Source {
                platform: Some(b.platform.to_owned()),
                ..super::source(mirror_url(&b.url), &b.sha256, unpack)
            });
        }
        out.push(Generated::new(format!("python/{version}.toml"), &recipe, &comments));
    }
    Ok(out)
}
