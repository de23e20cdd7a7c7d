//! A generation's `.envctl/manifest.toml`: what it was built from and the environment it sets.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The manifest format version this build writes.
pub const MANIFEST_VERSION: u32 = 1;

/// A generation's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    /// The manifest format ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// The profile it was built for.
    pub profile: String,
    /// The request hash of the lock it was built from.
    pub request: String,
    /// The platform its sources were chosen for.
    pub platform: String,
    /// Variables sessions get: recipes' `[env]` in install order, then the profile's. Values may
    /// use `${profile}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The profile file's own `[env]`, so that an apply can tell a removed variable from an
    /// unchanged file without loading recipes (absent in generations built before it was recorded).
    #[serde(default, rename = "profile-env", skip_serializing_if = "Option::is_none")]
    pub profile_env: Option<BTreeMap<String, String>>,
    /// The profile file's `[system]` (the facts it asserts, in `SystemOverrides::canonical`
    /// form), so that `envctl doctor` judges the profile as `envctl doctor FILE` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Search-path variables and the generation's directories for each, relative to its root,
    /// found when the generation was built so that starting a session reads no directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<BTreeMap<String, Vec<String>>>,
    /// The packages the profile file asked for (absent in generations built before it was
    /// recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested: Vec<String>,
    /// Its packages, in install order.
    #[serde(default, rename = "package")]
    pub packages: Vec<ManifestPackage>,
}

/// One package of a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ManifestPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Its store path's name.
    pub store_path: String,
    /// Its source's sha256.
    pub sha256: String,
    /// Its source's URL.
    pub url: String,
    /// The packages of the generation it depends on, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
}

/// A digest of what a generation is built from: the lock's request, its packages (name,
/// version, source sha256, store path, in order) and the profile file's own `[env]`. A file
/// and lock with the digest of a generation's manifest build that generation again (what
/// `apply`'s fast path checks, condensed); a rollback records the digest of the generation it
/// left (see `generations::rollback`).
pub fn origin_digest<'a>(
    request: &str,
    packages: impl Iterator<Item = (&'a str, &'a str, &'a str, &'a str)>,
    env: Option<&BTreeMap<String, String>>,
) -> String {
    let mut h = blake3::Hasher::new();
    h.update(request.as_bytes());
    for (name, version, sha256, store_path) in packages {
        for part in [name, version, sha256, store_path] {
            h.update(b"\0");
            h.update(part.as_bytes());
        }
        h.update(b"\n");
    }
    h.update(serde_json::to_string(&env).unwrap_or_default().as_bytes());
    h.finalize().to_hex().to_string()
}

impl Manifest {
    /// [`origin_digest`] of this generation.
    pub fn origin(&self) -> String {
        let packages = self
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.sha256.as_str(), p.store_path.as_str()));
        origin_digest(&self.request, packages, self.profile_env.as_ref())
    }

    /// Reads `<generation>/.envctl/manifest.toml`.
    pub fn load(generation: &Path) -> Result<Manifest, String> {
        read(generation)
    }

    /// The store paths of the packages a generation holds, read without the rest of the
    /// manifest (what `profiles` shows of each generation).
    pub fn load_store_paths(generation: &Path) -> Result<Vec<String>, String> {
        #[derive(Deserialize)]
        struct Paths {
            #[serde(default, rename = "package")]
            packages: Vec<PathOnly>,
        }
        #[derive(Deserialize)]
        struct PathOnly {
            #[serde(rename = "store-path")]
            store_path: String,
        }
        let paths: Paths = read(generation)?;
        Ok(paths.packages.into_iter().map(|p| p.store_path).collect())
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        format!(
            "# envctl generation manifest\n{}",
            toml::to_string(self).expect("a manifest always serializes")
        )
    }

    /// Package name → version.
    pub fn versions(&self) -> BTreeMap<&str, &str> {
        self.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect()
    }
}

/// Reads `<generation>/.envctl/manifest.toml` as `T` (the whole manifest, or the part of it a
/// caller needs).
fn read<T: serde::de::DeserializeOwned>(generation: &Path) -> Result<T, String> {
    let path = generation.join(".envctl/manifest.toml");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("`{}`: {e}", path.display()))
}

/// What changed between two generations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "lowercase")]
#[allow(missing_docs)] // the fields say what they are
pub enum Change {
    /// A package that appeared.
    Added { name: String, version: String },
    /// A package that went away.
    Removed { name: String, version: String },
    /// A package whose version moved.
    Changed { name: String, old: String, new: String },
    /// A session variable that appeared.
    Set { variable: String, value: String },
    /// A session variable that went away.
    Unset { variable: String, value: String },
    /// A session variable whose value changed.
    Reset { variable: String, old: String, new: String },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Added { name, version } => write!(f, "+ {name} {version}"),
            Change::Removed { name, version } => write!(f, "- {name} {version}"),
            Change::Changed { name, old, new } => write!(f, "~ {name} {old} -> {new}"),
            Change::Set { variable, value } => write!(f, "+ ${variable}={value:?}"),
            Change::Unset { variable, .. } => write!(f, "- ${variable}"),
            Change::Reset { variable, old, new } => write!(f, "~ ${variable} {old:?} -> {new:?}"),
        }
    }
}

/// The changes from `old` to `new`.
pub fn diff(old: Option<&Manifest>, new: &Manifest) -> Vec<Change> {
    let before = old.map(Manifest::versions).unwrap_or_default();
    let after = new.versions();
    let mut out = Vec::new();
    for (name, v) in &after {
        match before.get(name) {
            None => out.push(Change::Added { name: (*name).into(), version: (*v).into() }),
            Some(b) if b != v => {
                out.push(Change::Changed { name: (*name).into(), old: (*b).into(), new: (*v).into() })
            }
            _ => {}
        }
    }
    for (name, v) in &before {
        if !after.contains_key(name) {
            out.push(Change::Removed { name: (*name).into(), version: (*v).into() });
        }
    }
    // Session variables, for a generation that differs from the previous one (the first
    // generation's variables are part of what it is, not a change).
    if let Some(old) = old {
        for (k, v) in &new.env {
            match old.env.get(k) {
                None => out.push(Change::Set { variable: k.clone(), value: v.clone() }),
                Some(o) if o != v => {
                    out.push(Change::Reset { variable: k.clone(), old: o.clone(), new: v.clone() })
                }
                _ => {}
            }
        }
        for (k, v) in &old.env {
            if !new.env.contains_key(k) {
                out.push(Change::Unset { variable: k.clone(), value: v.clone() });
            }
        }
    }
    out
}

/// The search-path variables of a session and the directories (relative to a tree's root) that
/// feed each, in order.
pub const SEARCH: &[(&str, &[&str])] = &[
    ("PATH", &["bin"]),
    ("LD_LIBRARY_PATH", &["lib64", "lib"]),
    ("LIBRARY_PATH", &["lib64", "lib"]),
    ("CPATH", &["include"]),
    ("PKG_CONFIG_PATH", &["lib64/pkgconfig", "lib/pkgconfig", "share/pkgconfig"]),
];

/// Which search directories the merged tree of `packages` will have: a directory exists in the
/// farm exactly when some package has it. `lib/python*/site-packages` feeds PYTHONPATH.
pub fn search_dirs(packages: &[std::path::PathBuf]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (var, rels) in SEARCH {
        let found: Vec<String> = rels
            .iter()
            .filter(|r| packages.iter().any(|p| p.join(r).is_dir()))
            .map(|r| (*r).to_owned())
            .collect();
        if !found.is_empty() {
            out.insert((*var).to_owned(), found);
        }
    }
    let mut site = std::collections::BTreeSet::new();
    for p in packages {
        // Only the packages' own lib/ directories are read, at build time.
        if let Ok(rd) = std::fs::read_dir(p.join("lib")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("python") && e.path().join("site-packages").is_dir() {
                    site.insert(format!("lib/{n}/site-packages"));
                }
            }
        }
    }
    if !site.is_empty() {
        out.insert("PYTHONPATH".into(), site.into_iter().collect());
    }
    out
}

/// The library directories of NVIDIA's CUDA wheels in the generation at `root` whose Python is
/// `python` (the version of its package named `python`): `lib/python3.11/site-packages/nvidia/
/// cudnn/lib`, …, relative to the root.
///
/// Those wheels (`nvidia-*-cu12`) keep their libraries in `site-packages/nvidia/*/lib`, where the
/// frameworks look through `$ORIGIN/../nvidia/…/lib` run paths. In a profile, a framework's
/// directory is a link into its own store path, and `..` from there leads out of the profile; a
/// session's library path, searched before run paths, names these directories instead. Read
/// when the session starts (one small directory; never `lib/`, which can hold thousands of
/// entries), so generations built before this work too.
pub fn wheel_library_dirs(root: &std::path::Path, python: Option<&str>) -> Vec<String> {
    let Some(series) = python.and_then(|v| {
        let mut parts = v.split(['.', '+']);
        Some(format!("{}.{}", parts.next()?, parts.next()?))
    }) else {
        return Vec::new();
    };
    let base = format!("lib/python{series}/site-packages/nvidia");
    let Ok(rd) = std::fs::read_dir(root.join(&base)) else { return Vec::new() };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| root.join(&base).join(n).join("lib").is_dir())
        .collect();
    names.sort();
    names.into_iter().map(|n| format!("{base}/{n}/lib")).collect()
}

#[cfg(test)]
mod golden {
    use super::*;

    /// A generation's manifest is part of its tree, so of its store path and tree hash: a change
    /// in how it is written makes every profile's next apply a new generation, and `verify
    /// --repair` of an old one rebuild something else. Changing it is a new MANIFEST_VERSION.
    #[test]
    fn golden_the_manifest_text_is_pinned() {
        let zeros = "0".repeat(32);
        let m = Manifest {
            version: MANIFEST_VERSION,
            profile: "vision".into(),
            request: "f".repeat(64),
            platform: "linux-x86_64".into(),
            env: [("TF_CPP_MIN_LOG_LEVEL".to_owned(), "1".to_owned())].into(),
            profile_env: Some([("A".to_owned(), "${profile}/a".to_owned())].into()),
            system: Some("driver=535.104.05\n".into()),
            search: Some([("PATH".to_owned(), vec!["bin".to_owned()])].into()),
            requested: vec!["tensorflow".into()],
            packages: vec![ManifestPackage {
                name: "tensorflow".into(),
                version: "1.15.5".into(),
                store_path: format!("{zeros}-tensorflow-1.15.5"),
                sha256: "a".repeat(64),
                url: "index://pypi/tensorflow-1.15.5-cp37-cp37m-manylinux2010_x86_64.whl".into(),
                dependencies: vec!["python".into()],
            }],
        };
        let text = m.to_text();
        assert_eq!(
            text,
            concat!(
                "# envctl generation manifest\n",
                "version = 1\n",
                "profile = \"vision\"\n",
                "request = \"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\"\n",
                "platform = \"linux-x86_64\"\n",
                "system = \"\"\"\ndriver=535.104.05\n\"\"\"\n",
                "requested = [\"tensorflow\"]\n",
                "\n[env]\nTF_CPP_MIN_LOG_LEVEL = \"1\"\n",
                "\n[profile-env]\nA = \"${profile}/a\"\n",
                "\n[search]\nPATH = [\"bin\"]\n",
                "\n[[package]]\n",
                "name = \"tensorflow\"\n",
                "version = \"1.15.5\"\n",
                "store-path = \"00000000000000000000000000000000-tensorflow-1.15.5\"\n",
                "sha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
                "url = \"index://pypi/tensorflow-1.15.5-cp37-cp37m-manylinux2010_x86_64.whl\"\n",
                "dependencies = [\"python\"]\n",
            )
        );
        assert_eq!(toml::from_str::<Manifest>(text.split_once('\n').unwrap().1).unwrap(), m);
    }
}
