//! Profile files: a team's declarative wish (`vision.toml`).
//!
//! ```toml
//! name = "vision"              # optional: the file's stem otherwise
//! [packages]
//! tensorflow = "1.15"
//! [env]                        # optional
//! TF_FORCE_GPU_ALLOW_GROWTH = "true"
//! [priority]                   # optional: who wins a path two packages ship
//! tensorflow = 10
//! [system]                     # optional: facts to assume instead of detecting
//! driver = "535.104.05"
//!
//! [feature.cpu.packages]       # optional: package sets environments are made of
//! torch = "2.8.0+cpu"
//! [feature.cuda.packages]
//! torch = "2.8.0"
//! [environments]               # optional: named environments, each its features
//! default = ["cuda"]           # the default one: `[packages]` plus these
//! cpu = ["cpu"]                # `envctl -e cpu …`: the profile `vision-cpu`
//! ```
//!
//! An environment is `[packages]`, `[env]` and `[priority]` with its features' on top (a
//! feature's requirement for a package replaces the shared one); each is locked in the same lock
//! file and applied as its own profile, `NAME-ENV` (pixi's features and environments).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result, line_of};
use crate::system::{RawOverrides, SystemOverrides};
use crate::version::Requirement;
use envctl_core::PackageName;

/// One requested package, with the line that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The requirement.
    pub requirement: Requirement,
    /// 1-based line in the profile file.
    pub line: usize,
    /// The line as written, trimmed (`tensorflow = "1.15"`).
    pub text: String,
}

/// A parsed profile file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileFile {
    /// The file.
    pub path: PathBuf,
    /// The profile's name.
    pub name: String,
    /// Requested packages.
    pub packages: BTreeMap<PackageName, Requested>,
    /// Environment variables for sessions.
    pub env: BTreeMap<String, String>,
    /// Priorities for file collisions.
    pub priority: BTreeMap<PackageName, i64>,
    /// Facts to assume.
    pub system: SystemOverrides,
    /// Recipe repositories the profile is resolved against, by name, as written: a directory
    /// relative to the file (a team's repository in the same clone) or absolute.
    pub recipes: BTreeMap<String, String>,
    /// Package indexes (`index = "NAME"` sources), by name, as written: bases, each a URL or a
    /// local directory relative to the file.
    pub indexes: BTreeMap<String, Vec<String>>,
    /// The named environment this is (`None`: the default one).
    pub environment: Option<String>,
    /// Every named environment the file defines (`default` aside).
    pub environments: Vec<String>,
}

/// The name of the environment that `[packages]` alone (plus `[environments].default`) makes.
pub const DEFAULT_ENVIRONMENT: &str = "default";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<Spanned<String>>,
    #[serde(default)]
    packages: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    priority: BTreeMap<Spanned<String>, i64>,
    #[serde(default)]
    recipes: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    indexes: BTreeMap<Spanned<String>, Vec<String>>,
    #[serde(default)]
    system: RawOverrides,
    #[serde(default)]
    feature: BTreeMap<Spanned<String>, RawFeature>,
    #[serde(default)]
    environments: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

/// A feature's tables, the same three the top of the file has (written out there too: serde's
/// `flatten` cannot be combined with `deny_unknown_fields`, and a misspelt key must be refused).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    #[serde(default)]
    packages: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    priority: BTreeMap<Spanned<String>, i64>,
}

/// Whether `name` can name a profile: lowercase letters, digits, `.`, `_` and `-`, starting with
/// a letter or digit, at most 100 characters, and not the shape of a generation link
/// (`NAME-N-link`). The store checks the same before it makes a profile's links.
pub fn check_profile_name(name: &str) -> std::result::Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 100
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
    if !ok {
        return Err(format!(
            "`{name}` is not a profile name: use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit"
        ));
    }
    let link = name
        .strip_suffix("-link")
        .and_then(|r| r.rsplit_once('-'))
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
    if link {
        return Err(format!("`{name}` has the shape of a generation link (`NAME-N-link`); choose another"));
    }
    Ok(())
}

/// Whether `name` can name an environment or a feature: lowercase letters, digits and `-`,
/// starting with a letter (an environment's profile is `NAME-ENV`).
fn check_environment_name(name: &str) -> std::result::Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 40
        && b[0].is_ascii_lowercase()
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "`{name}` cannot name an environment or a feature: use lowercase letters, digits and `-`, starting with a letter"
        )),
    }
}

impl ProfileFile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<ProfileFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        ProfileFile::parse(&text, path)
    }

    /// Reads a profile file as one of its environments (`None`: the default one).
    pub fn load_environment(path: &Path, environment: Option<&str>) -> Result<ProfileFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        ProfileFile::parse_environment(&text, path, environment)
    }

    /// Parses profile text; `path` names the file in errors and gives the default name.
    pub fn parse(text: &str, path: &Path) -> Result<ProfileFile> {
        ProfileFile::parse_environment(text, path, None)
    }

    /// Parses profile text as one of its environments (`None`, or `default`: the default one).
    pub fn parse_environment(text: &str, path: &Path, environment: Option<&str>) -> Result<ProfileFile> {
        let environment = environment.filter(|e| *e != DEFAULT_ENVIRONMENT);
        let raw: RawProfile = toml::from_str(text)
            .map_err(|e| Error::Toml { path: path.to_path_buf(), message: e.to_string() })?;
        let bad = |span: std::ops::Range<usize>, key: String, message: String| Error::Value {
            path: path.to_path_buf(),
            line: line_of(text, span.start),
            key,
            message,
        };
        // The rules a profile is applied under (the store's), so that a file that reads is one
        // that applies.
        let name = match &raw.name {
            Some(n) => {
                check_profile_name(n.get_ref()).map_err(|m| bad(n.span(), "name".into(), m))?;
                n.get_ref().clone()
            }
            None => {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "default".into());
                check_profile_name(&stem).map_err(|m| Error::Value {
                    path: path.to_path_buf(),
                    line: 1,
                    key: "name".into(),
                    message: format!(
                        "the profile is named after the file, and {m}; set `name = \"…\"` in the file, or rename it"
                    ),
                })?;
                stem
            }
        };
        let packages_of = |table: &BTreeMap<Spanned<String>, Spanned<String>>, prefix: &str| {
            let mut packages = BTreeMap::new();
            for (pkg, req) in table {
                let key = format!("{prefix}packages.{}", pkg.get_ref());
                let n = PackageName::parse(pkg.get_ref()).map_err(|m| bad(pkg.span(), key.clone(), m))?;
                let requirement =
                    Requirement::parse(req.get_ref()).map_err(|e| bad(req.span(), key, e.to_string()))?;
                let line = line_of(text, pkg.span().start);
                let line_text = text.lines().nth(line - 1).unwrap_or("").trim().to_owned();
                packages.insert(n, Requested { requirement, line, text: line_text });
            }
            Ok::<_, Error>(packages)
        };
        let priority_of = |table: &BTreeMap<Spanned<String>, i64>, prefix: &str| {
            let mut priority = BTreeMap::new();
            for (pkg, p) in table {
                let n = PackageName::parse(pkg.get_ref())
                    .map_err(|m| bad(pkg.span(), format!("{prefix}priority.{}", pkg.get_ref()), m))?;
                priority.insert(n, *p);
            }
            Ok::<_, Error>(priority)
        };
        let mut packages = packages_of(&raw.packages, "")?;
        let mut priority = priority_of(&raw.priority, "")?;
        let system = raw.system.check(text, path, "system.")?;
        let mut env = crate::env::check(&raw.env, bad)?;

        // Every environment is checked, whichever is asked for: a file that reads is one whose
        // environments all make sense.
        let mut features = BTreeMap::new();
        for (f, raw_feature) in &raw.feature {
            check_environment_name(f.get_ref())
                .map_err(|m| bad(f.span(), format!("feature.{}", f.get_ref()), m))?;
            let prefix = format!("feature.{}.", f.get_ref());
            let feature = (
                packages_of(&raw_feature.packages, &prefix)?,
                crate::env::check(&raw_feature.env, bad)?,
                priority_of(&raw_feature.priority, &prefix)?,
            );
            features.insert(f.get_ref().clone(), feature);
        }
        let mut environments = Vec::new();
        let mut chosen = None;
        for (e, list) in &raw.environments {
            let key = format!("environments.{}", e.get_ref());
            check_environment_name(e.get_ref()).map_err(|m| bad(e.span(), key.clone(), m))?;
            for f in list {
                if !features.contains_key(f.get_ref()) {
                    let defined: Vec<&str> = features.keys().map(String::as_str).collect();
                    return Err(bad(
                        f.span(),
                        key.clone(),
                        format!(
                            "no feature `{}` is defined; {}",
                            f.get_ref(),
                            match defined.is_empty() {
                                true => "define it as a [feature.NAME.packages] table".to_owned(),
                                false => format!("the file defines {}", defined.join(", ")),
                            }
                        ),
                    ));
                }
            }
            if e.get_ref() != DEFAULT_ENVIRONMENT {
                environments.push(e.get_ref().clone());
            }
            if e.get_ref() == environment.unwrap_or(DEFAULT_ENVIRONMENT) {
                chosen = Some(list);
            }
        }
        if let (Some(asked), None) = (environment, chosen) {
            return Err(Error::Value {
                path: path.to_path_buf(),
                line: 1,
                key: "environments".into(),
                message: match environments.is_empty() {
                    true => format!("no environment `{asked}`: the file defines none ([environments])"),
                    false => {
                        format!("no environment `{asked}`; the file defines {}", environments.join(", "))
                    }
                },
            });
        }
        // The chosen environment's features, on top of what every environment shares.
        let mut from_feature: BTreeMap<PackageName, (String, usize)> = BTreeMap::new();
        for f in chosen.into_iter().flatten() {
            let (f_packages, f_env, f_priority) = &features[f.get_ref()];
            for (n, requested) in f_packages {
                if let Some((other, line)) = from_feature.get(n) {
                    return Err(Error::Value {
                        path: path.to_path_buf(),
                        line: requested.line,
                        key: format!("feature.{}.packages.{n}", f.get_ref()),
                        message: format!(
                            "the features `{other}` (line {line}) and `{}` of one environment both ask for `{n}`; keep it in one of them",
                            f.get_ref()
                        ),
                    });
                }
                from_feature.insert(n.clone(), (f.get_ref().clone(), requested.line));
                packages.insert(n.clone(), requested.clone());
            }
            env.extend(f_env.clone());
            priority.extend(f_priority.clone());
        }
        if packages.is_empty() {
            return Err(Error::Value {
                path: path.to_path_buf(),
                line: 1,
                key: "packages".into(),
                message: "a profile file needs a [packages] table with at least one package".into(),
            });
        }
        let name = match environment {
            Some(e) => {
                let named = format!("{name}-{e}");
                check_profile_name(&named).map_err(|m| Error::Value {
                    path: path.to_path_buf(),
                    line: 1,
                    key: "environments".into(),
                    message: format!("the environment `{e}` is applied as the profile `{named}`, and {m}"),
                })?;
                named
            }
            None => name,
        };
        let named = |key: &Spanned<String>, table: &str| -> Result<String> {
            let n = key.get_ref();
            if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(bad(
                    key.span(),
                    format!("{table}.{n}"),
                    format!("`{n}` cannot name a {table} entry: letters, digits, `-`, `_` and `.`"),
                ));
            }
            Ok(n.clone())
        };
        let mut recipes = BTreeMap::new();
        for (k, v) in &raw.recipes {
            if v.get_ref().trim().is_empty() {
                return Err(bad(
                    v.span(),
                    format!("recipes.{}", k.get_ref()),
                    "a repository needs a directory".into(),
                ));
            }
            recipes.insert(named(k, "recipes")?, v.get_ref().clone());
        }
        let mut indexes = BTreeMap::new();
        for (k, v) in &raw.indexes {
            if v.is_empty() {
                return Err(bad(
                    k.span(),
                    format!("indexes.{}", k.get_ref()),
                    "an index needs at least one base".into(),
                ));
            }
            indexes.insert(named(k, "indexes")?, v.clone());
        }
        Ok(ProfileFile {
            path: path.to_path_buf(),
            name,
            packages,
            env,
            priority,
            system,
            recipes,
            indexes,
            environment: environment.map(str::to_owned),
            environments,
        })
    }

    /// The directories of [`ProfileFile::recipes`], relative ones resolved against the file's
    /// directory.
    pub fn recipe_dirs(&self) -> Vec<PathBuf> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.recipes.values().map(|d| dir.join(d)).collect()
    }

    /// [`ProfileFile::indexes`] with each local base made absolute against the file's directory.
    pub fn index_bases(&self) -> BTreeMap<String, Vec<String>> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        self.indexes
            .iter()
            .map(|(name, bases)| {
                let bases = bases
                    .iter()
                    .map(|b| match b.contains("://") || Path::new(b).is_absolute() {
                        true => b.clone(),
                        false => dir.join(b).display().to_string(),
                    })
                    .collect();
                (name.clone(), bases)
            })
            .collect()
    }

    /// Where this file's lock lives: beside it, `.lock` instead of `.toml`.
    pub fn lock_path(&self) -> PathBuf {
        self.path.with_extension("lock")
    }

    /// A hash of everything the resolution answers: packages and requirements, priorities and
    /// system overrides. A lock whose `request` differs is stale.
    pub fn request_hash(&self, platform: &str) -> String {
        let mut s = String::from("envctl-request-v1\n");
        s.push_str(&format!("platform={platform}\n[packages]\n"));
        for (n, r) in &self.packages {
            s.push_str(&format!("{n}={}\n", r.requirement));
        }
        s.push_str("[priority]\n");
        for (n, p) in &self.priority {
            s.push_str(&format!("{n}={p}\n"));
        }
        s.push_str("[system]\n");
        s.push_str(&self.system.canonical());
        // Only when set, so that the hash of a file without them stays what it was.
        if !self.recipes.is_empty() || !self.indexes.is_empty() {
            s.push_str("[recipes]\n");
            for (n, d) in &self.recipes {
                s.push_str(&format!("{n}={d}\n"));
            }
            s.push_str("[indexes]\n");
            for (n, bases) in &self.indexes {
                s.push_str(&format!("{n}={}\n", bases.join(" ")));
            }
        }
        blake3::hash(s.as_bytes()).to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_keep_their_lines_and_the_name_defaults_to_the_stem() {
        let p = ProfileFile::parse(
            "[packages]\ntensorflow = \"1.15\"\n\ncuda = \"11.8\"\n",
            Path::new("/x/vision.toml"),
        )
        .unwrap();
        assert_eq!(p.name, "vision");
        let cuda = &p.packages[&PackageName::parse("cuda").unwrap()];
        assert_eq!((cuda.line, cuda.text.as_str()), (4, "cuda = \"11.8\""));
        assert_eq!(p.lock_path(), Path::new("/x/vision.lock"));
    }

    #[test]
    fn the_request_hash_changes_with_the_request_only() {
        let a = ProfileFile::parse("[packages]\na = \"1\"\nb = \"2\"\n", Path::new("p.toml")).unwrap();
        let b =
            ProfileFile::parse("# comment\n[packages]\nb = \"2\"\na = \"1\"\n", Path::new("p.toml")).unwrap();
        let c = ProfileFile::parse("[packages]\na = \"1\"\nb = \"3\"\n", Path::new("p.toml")).unwrap();
        assert_eq!(a.request_hash("linux-x86_64"), b.request_hash("linux-x86_64"));
        assert_ne!(a.request_hash("linux-x86_64"), c.request_hash("linux-x86_64"));
        assert_ne!(a.request_hash("linux-x86_64"), a.request_hash("linux-aarch64"));
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = ProfileFile::parse("[packages]\ntensorflow = \"1.x\"\n", Path::new("v.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("v.toml") && e.contains("line 2") && e.contains("packages.tensorflow"), "{e}");
        let e = ProfileFile::parse("[packages]\na = \"1\"\n[sytem]\n", Path::new("v.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sytem"), "{e}");
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// The request hash says which request a lock answers: a change in how it is computed makes
    /// every committed lock stale at once (`apply --frozen` fails on every machine).
    #[test]
    fn golden_the_request_hash_is_pinned() {
        let p = ProfileFile::parse(
            "[packages]\ntensorflow = \"1.15\"\npython = \"3.7\"\ncudnn = \">=7.6,<8\"\n[priority]\ntensorflow = 10\n[system]\ndriver = \"535.104.05\"\n",
            Path::new("/x/vision.toml"),
        )
        .unwrap();
        assert_eq!(
            p.request_hash("linux-x86_64"),
            "894e5aa46acc1f35dd16760e37e2ab14047301d981686272f649ed43f296f9e6"
        );
        let bare = ProfileFile::parse("[packages]\nhello = \"*\"\n", Path::new("h.toml")).unwrap();
        assert_eq!(
            bare.request_hash("linux-x86_64"),
            "db95f4d8022495aed10c5444224016bc2259c2dedf512af545d65cd667df9f95"
        );
    }

    #[test]
    fn repositories_and_indexes_are_named_resolved_against_the_file_and_count_in_the_request() {
        let plain = ProfileFile::parse("[packages]\nhello = \"1\"\n", Path::new("/p/a.toml")).unwrap();
        let named = ProfileFile::parse(
            "[packages]\nhello = \"1\"\n[recipes]\nteam = \"recipes\"\n[indexes]\nlab = [\"wheels\", \"https://pypi.lab/simple\"]\n",
            Path::new("/p/a.toml"),
        )
        .unwrap();
        assert_eq!(named.recipe_dirs(), [PathBuf::from("/p/recipes")]);
        assert_eq!(named.index_bases()["lab"], ["/p/wheels", "https://pypi.lab/simple"]);
        assert!(plain.recipes.is_empty() && plain.indexes.is_empty());
        assert_ne!(plain.request_hash("linux-x86_64"), named.request_hash("linux-x86_64"));
        let err = ProfileFile::parse(
            "[packages]\nhello = \"1\"\n[indexes]\n\"a/b\" = [\"x\"]\n",
            Path::new("a.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("a.toml") && err.contains("line 4") && err.contains("cannot name a indexes entry"),
            "{err}"
        );
        let err = ProfileFile::parse("[packages]\nhello = \"1\"\n[indexes]\nlab = []\n", Path::new("a.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one base"), "{err}");
    }

    #[test]
    fn a_name_that_reads_is_a_name_that_applies() {
        for bad in ["Vision", "team-2-link", "-x"] {
            let text = format!("name = \"{bad}\"\n[packages]\nhello = \"1\"\n");
            let err = ProfileFile::parse(&text, Path::new("p.toml")).unwrap_err().to_string();
            assert!(err.contains("p.toml") && err.contains("line 1") && err.contains(bad), "{err}");
        }
        let err = ProfileFile::parse("[packages]\nhello = \"1\"\n", Path::new("My Team.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("named after the file") && err.contains("set `name"), "{err}");
        assert!(ProfileFile::parse("[packages]\nhello = \"1\"\n", Path::new("tf_2.15-gpu.toml")).is_ok());
    }
}
