//! A cache of parsed recipe repositories, so that a large repository loads without parsing TOML.
//!
//! One file per repository directory, `<cache>/<blake3 of the directory path>.json`, holding a
//! fingerprint of the directory and the parsed recipes. The fingerprint covers every recipe file's
//! relative path, size, modification time (nanoseconds) and inode, so an edit, an addition, a
//! removal or a rename invalidates it. A missing, stale, unreadable or newer-format cache is
//! ignored and rewritten (temp file, then rename); the cache never changes what loads, only how
//! fast.
//!
//! Modification times advance at the kernel's coarse clock tick, so a same-size edit made within
//! the tick a cache was written in would look unchanged (git's "racy clean" problem). A cache is
//! therefore only written when every recipe file is at least two seconds old; until then the
//! directory is parsed each time.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::recipe::{Recipe, Source, SystemRequirements};
use crate::repo::Repository;
use crate::version::{Requirement, Version};
use envctl_core::{PackageName, Unpack};

/// 2: sources gained `move`; 3: `python` and `hints`; 4: a source's unpack options as one
/// `unpack` object (envctl-core's `Unpack`).
const FORMAT: u32 = 4;

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    fingerprint: String,
    recipes: Vec<Cached>,
}

#[derive(Serialize, Deserialize)]
struct Cached {
    name: String,
    version: String,
    summary: String,
    license: String,
    dependencies: BTreeMap<String, String>,
    system: [Option<String>; 5],
    sources: Vec<CachedSource>,
    env: BTreeMap<String, String>,
    #[serde(default)]
    hints: BTreeMap<String, String>,
    origin: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct CachedSource {
    platform: Option<String>,
    url: String,
    sha256: String,
    unpack: Unpack,
    #[serde(default)]
    relative: bool,
    #[serde(default)]
    python: Option<String>,
}

fn to_cached(r: &Recipe) -> Cached {
    let s = &r.system;
    let req = |o: &Option<Requirement>| o.as_ref().map(|r| r.as_str().to_owned());
    Cached {
        name: r.name.to_string(),
        version: r.version.to_string(),
        summary: r.summary.clone(),
        license: r.license.clone(),
        dependencies: r.dependencies.iter().map(|(n, q)| (n.to_string(), q.as_str().to_owned())).collect(),
        system: [req(&s.driver), req(&s.cuda), req(&s.sm), req(&s.glibc), s.arch.clone()],
        sources: r
            .sources
            .iter()
            .map(|s| CachedSource {
                platform: s.platform.clone(),
                url: s.url.clone(),
                sha256: s.sha256.clone(),
                unpack: s.unpack.clone(),
                relative: s.relative,
                python: req(&s.python),
            })
            .collect(),
        env: r.env.clone(),
        hints: r.hints.iter().map(|(n, h)| (n.to_string(), h.clone())).collect(),
        origin: r.origin.clone(),
    }
}

/// Rebuilds a recipe; `None` if anything no longer parses (then the cache is not used).
fn from_cached(c: Cached) -> Option<Recipe> {
    let req = |o: &Option<String>| -> Option<Option<Requirement>> {
        match o {
            None => Some(None),
            Some(t) => Requirement::parse(t).ok().map(Some),
        }
    };
    let mut dependencies = BTreeMap::new();
    for (n, q) in &c.dependencies {
        dependencies.insert(PackageName::parse(n).ok()?, Requirement::parse(q).ok()?);
    }
    Some(Recipe {
        name: PackageName::parse(&c.name).ok()?,
        version: Version::parse(&c.version).ok()?,
        summary: c.summary,
        license: c.license,
        dependencies,
        system: SystemRequirements {
            driver: req(&c.system[0])?,
            cuda: req(&c.system[1])?,
            sm: req(&c.system[2])?,
            glibc: req(&c.system[3])?,
            arch: c.system[4].clone(),
        },
        sources: c
            .sources
            .into_iter()
            .map(|s| {
                Some(Source {
                    python: req(&s.python)?,
                    platform: s.platform,
                    url: s.url,
                    sha256: s.sha256,
                    unpack: s.unpack,
                    relative: s.relative,
                })
            })
            .collect::<Option<_>>()?,
        env: c.env,
        hints: c
            .hints
            .into_iter()
            .map(|(n, h)| Some((PackageName::parse(&n).ok()?, h)))
            .collect::<Option<_>>()?,
        origin: c.origin,
    })
}

/// The directory's fingerprint, and its newest file's modification time (unix seconds).
fn fingerprint(dir: &Path) -> Result<(String, i64)> {
    let mut files: Vec<(PathBuf, u64, i64, i64, u64)> = Vec::new();
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, u64, i64, i64, u64)>) -> Result<()> {
        let rd = std::fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
        for entry in rd {
            let entry = entry.map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|source| Error::Read { path: path.clone(), source })?;
            if ft.is_dir() {
                walk(&path, root, out)?;
            } else if path.extension().is_some_and(|e| e == "toml") {
                let m =
                    std::fs::metadata(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
                let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                out.push((rel, m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
            }
        }
        Ok(())
    }
    walk(dir, dir, &mut files)?;
    files.sort();
    let newest = files.iter().map(|f| f.2).max().unwrap_or(0);
    let mut h = blake3::Hasher::new();
    h.update(format!("envctl-recipe-cache-v{FORMAT} {}\0", env!("CARGO_PKG_VERSION")).as_bytes());
    for (rel, len, secs, nsec, ino) in &files {
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(format!("\0{len} {secs}.{nsec} {ino}\n").as_bytes());
    }
    Ok((h.finalize().to_hex().to_string(), newest))
}

impl Repository {
    /// Loads `dir` through a cache in `cache_dir` (see the module docs). Cache trouble is never an
    /// error: the directory is parsed instead.
    pub fn load_dir_cached(dir: &Path, cache_dir: &Path) -> Result<Repository> {
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let (print, newest) = fingerprint(&abs)?;
        let key = blake3::hash(abs.as_os_str().as_encoded_bytes()).to_hex();
        let file = cache_dir.join(format!("{}.json", &key[..32]));
        if let Some(repo) = read(&file, &print) {
            return Ok(repo);
        }
        let repo = Repository::load_dir(dir)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(i64::MAX);
        if newest < now - 2 {
            let _ = write(&file, &print, &repo);
        }
        Ok(repo)
    }
}

fn read(file: &Path, print: &str) -> Option<Repository> {
    let text = std::fs::read(file).ok()?;
    let cached: CacheFile = serde_json::from_slice(&text).ok()?;
    if cached.format != FORMAT || cached.fingerprint != print {
        return None;
    }
    let mut repo = Repository::default();
    for c in cached.recipes {
        repo.insert(from_cached(c)?, false).ok()?;
    }
    Some(repo)
}

fn write(file: &Path, print: &str, repo: &Repository) -> std::io::Result<()> {
    let recipes: Vec<Cached> = repo
        .names()
        .filter_map(|n| repo.versions(n.as_str()))
        .flat_map(|versions| versions.values().map(|r| to_cached(r)))
        .collect();
    let body = serde_json::to_vec(&CacheFile { format: FORMAT, fingerprint: print.to_owned(), recipes })
        .map_err(std::io::Error::other)?;
    std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")))?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(name: &str, version: &str, dep: &str) -> String {
        format!(
            "name = \"{name}\"\nversion = \"{version}\"\n[dependencies]\ncuda = \"{dep}\"\n[system]\ndriver = \">=450\"\n[[source]]\nurl = \"https://example.invalid/{name}.tar\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        )
    }

    /// Writes a recipe file and dates it a minute back, as if written long before the cache.
    fn write_old(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(path).unwrap().set_modified(old).unwrap();
    }

    fn all(repo: &Repository) -> Vec<Recipe> {
        repo.names()
            .flat_map(|n| repo.versions(n.as_str()).unwrap().values().map(|r| (**r).clone()))
            .collect()
    }

    #[test]
    fn the_cache_gives_what_parsing_gives_and_any_change_invalidates_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let repo_dir = dir.path().join("repo");
        std::fs::create_dir_all(repo_dir.join("a")).unwrap();
        write_old(&repo_dir.join("a/1.toml"), &recipe("a", "1.0", ">=11,<12"));
        write_old(&repo_dir.join("b.toml"), &recipe("b", "2.0+cu121", "12"));

        let parsed = Repository::load_dir(&repo_dir).unwrap();
        let first = Repository::load_dir_cached(&repo_dir, cache.path()).unwrap();
        assert_eq!(all(&first), all(&parsed));
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1, "the cache was written");
        let second = Repository::load_dir_cached(&repo_dir, cache.path()).unwrap();
        assert_eq!(all(&second), all(&parsed));

        // An edit of the same size shows (its mtime is now, not a minute ago).
        std::fs::write(repo_dir.join("a/1.toml"), recipe("a", "1.0", ">=12,<13")).unwrap();
        let edited = Repository::load_dir_cached(&repo_dir, cache.path()).unwrap();
        let a = edited.get("a", &Version::parse("1.0").unwrap()).unwrap();
        assert_eq!(a.dependencies.values().next().unwrap().as_str(), ">=12,<13");

        // A file this recent keeps the cache from being written at all.
        for f in std::fs::read_dir(cache.path()).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        Repository::load_dir_cached(&repo_dir, cache.path()).unwrap();
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "a racy cache was written");
        write_old(&repo_dir.join("a/1.toml"), &recipe("a", "1.0", ">=12,<13"));

        // So do an addition and a removal.
        write_old(&repo_dir.join("c.toml"), &recipe("c", "3", "11"));
        assert!(Repository::load_dir_cached(&repo_dir, cache.path()).unwrap().versions("c").is_some());
        std::fs::remove_file(repo_dir.join("b.toml")).unwrap();
        assert!(Repository::load_dir_cached(&repo_dir, cache.path()).unwrap().versions("b").is_none());

        // A corrupt cache is ignored.
        Repository::load_dir_cached(&repo_dir, cache.path()).unwrap();
        for f in std::fs::read_dir(cache.path()).unwrap() {
            std::fs::write(f.unwrap().path(), b"{ not json").unwrap();
        }
        let again = Repository::load_dir_cached(&repo_dir, cache.path()).unwrap();
        assert_eq!(all(&again), all(&Repository::load_dir(&repo_dir).unwrap()));

        // Errors are still reported with their file and line, cache or not.
        std::fs::write(repo_dir.join("bad.toml"), "name = \"x\"\nversion = \"1.x\"\n").unwrap();
        let e = Repository::load_dir_cached(&repo_dir, cache.path()).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("line 2"), "{e}");
    }
}
