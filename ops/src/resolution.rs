//! Resolving a profile file: the file, this machine's facts and the recipes together
//! ([`Context`]), its lock, and the store requests a lock turns into. The commands that resolve
//! (`lock`, `why`, `graph`), apply (`apply`, `shell`) or check (`doctor`) share it.

use std::collections::BTreeMap;
use std::path::Path;

use envctl_python::WheelTags;
use envctl_recipes::{
    LockFile, LockedPackage, LockedSource, PackageName, ProfileFile, Repository, SystemFacts, Version,
};
use envctl_resolver::{Request, Solution, Task, solve};

use crate::error::{Failure, Result, StoreContext};
use crate::settings::Settings;

/// Reads a profile file as the environment the invocation names (`-e`); the one place its
/// errors get their hint.
pub fn load_profile(file: &Path, settings: &Settings) -> Result<ProfileFile> {
    ProfileFile::load_environment(file, settings.invocation.environment.as_deref()).map_err(|e| {
        let hint = if matches!(e, envctl_recipes::Error::Read { .. }) {
            "give the path of a profile file (a TOML file with a [packages] table), such as examples/vision.toml"
        } else {
            "the keys are documented in docs/reference/profile-and-lock.md"
        };
        Failure::new(format!("cannot read the profile file `{}`", file.display()), e).hint(hint)
    })
}

/// A profile file with everything needed to resolve it.
pub struct Context {
    /// The profile file.
    pub profile: ProfileFile,
    /// The machine's facts (detected, or as the file or `--system` say).
    pub facts: SystemFacts,
    /// The recipe repositories in force.
    pub repo: Repository,
    /// What explanations call an ad-hoc request instead of its file (`-p tensorflow=2.15`); each
    /// package is then named as `-p NAME=REQ` instead of by file and line.
    pub label: Option<String>,
}

impl Context {
    /// Reads `file` and gathers the facts and recipes its resolution needs.
    pub fn load(file: &Path, settings: &Settings) -> Result<Context> {
        let profile = load_profile(file, settings)?;
        let facts = crate::system::facts(Some(&profile.system), settings.system())?;
        let repo = settings.for_profile(&profile).repository()?;
        Ok(Context { profile, facts, repo, label: None })
    }

    /// A context from its parts.
    pub fn from_parts(profile: ProfileFile, facts: SystemFacts, repo: Repository) -> Context {
        Context { profile, facts, repo, label: None }
    }

    /// The platform sources are chosen for (`linux-x86_64`).
    pub fn platform(&self) -> String {
        self.facts.platform()
    }

    /// Resolves the profile, keeping `preferred` versions wherever they still fit.
    pub fn solve(&self, preferred: BTreeMap<PackageName, Version>) -> Result<Solution> {
        let file = self.label.clone().unwrap_or_else(|| self.profile.path.display().to_string());
        let mut asked: Vec<_> = self.profile.packages.iter().collect();
        asked.sort_by_key(|(_, r)| r.line);
        let requested = asked
            .into_iter()
            .map(|(name, r)| Request {
                name: name.clone(),
                requirement: r.requirement.clone(),
                origin: match (&self.label, r.requirement.as_str()) {
                    // An ad-hoc request: the words the user typed.
                    (Some(_), "*") => format!("-p {name}"),
                    (Some(_), req) => format!("-p {name}={req}"),
                    (None, _) => format!("{file}:{}: {}", r.line, r.text),
                },
            })
            .collect();
        let task = Task { repo: &self.repo, requested, preferred, system: &self.facts };
        let solution = solve(&task).map_err(|e| {
            let hints = e.hints().to_vec();
            let mut f = Failure::new(format!("cannot resolve `{file}`"), e);
            for h in hints {
                f = f.hint(h);
            }
            f
        })?;
        self.check_wheels(&solution, &file)?;
        Ok(solution)
    }

    /// Every wheel of a resolution must run on its Python and on this machine (or the one
    /// `--system` describes): its tags are checked now, so a wrong wheel fails the lock, naming
    /// the tag, instead of an import.
    fn check_wheels(&self, solution: &Solution, file: &str) -> Result<()> {
        let platform = self.facts.platform();
        let arch = self.facts.arch.as_deref().unwrap_or("x86_64");
        let python = solution.packages.iter().find(|(n, _)| n.as_str() == "python").map(|(_, r)| &r.version);
        for (name, recipe) in &solution.packages {
            let Some(source) = recipe.source_for(&platform, python) else { continue };
            let Some(tags) = WheelTags::from_file_name(&source.url) else { continue };
            let failure = |why: String| {
                Failure::new(format!("cannot resolve `{file}`"), format!("{name} {}: {why}", recipe.version))
                    .hint(format!("its recipe is `{}`", recipe.origin.display()))
            };
            let Some(python) = python else {
                return Err(failure(
                    "it is a Python wheel and the resolution has no package named `python`".into(),
                )
                .hint("add `python = \"3.11\"` (or the version it needs) to [packages]"));
            };
            tags.check(python, arch, self.facts.glibc.as_ref())
                .map_err(|why| failure(format!("the wheel `{}` cannot run here: {why}", tags.text())))?;
        }
        Ok(())
    }

    /// What the lock's packages need from this machine and it lacks, one line per need, from
    /// their recipes (a package whose recipe is gone is not checked). A lock is used as it is
    /// while its request is unchanged, so it may have been resolved on another machine, or
    /// before this machine's driver changed.
    pub fn unmet_by(&self, lock: &LockFile) -> Vec<String> {
        let packages = lock.packages.iter().map(|p| (p.name.as_str(), p.version.as_str()));
        unmet_needs(packages, &self.repo, &self.facts, "").0
    }

    /// The failure of using `lock` on a machine that lacks what it needs (see [`Context::unmet_by`]).
    pub fn check_fits(&self, lock: &LockFile) -> Result<()> {
        let unmet = self.unmet_by(lock);
        if unmet.is_empty() {
            return Ok(());
        }
        let file = self.profile.path.display();
        Err(Failure::new(
            format!("the lock of `{file}` does not fit this machine"),
            unmet.join("; "),
        )
        .hint(format!(
            "re-resolve for this machine with `envctl lock {file} --update`, or, to build for the machine \
             the lock was made on, give its facts (ENVCTL_SYSTEM_DRIVER=VERSION, --system FILE)"
        )))
    }

    /// Checks a lock that is about to be used as it is against the profile file and the recipes
    /// it claims, before anything is installed: the request hash only says which request the lock
    /// answers, not that its entries do. Every requested package is there and meets its
    /// requirement; every entry is a recipe of the repositories with exactly that recipe's source
    /// for this platform; every dependency is there and meets the recipe's requirement; no name is
    /// there twice; store paths and tree hashes are well formed.
    pub fn check_lock(&self, lock: &LockFile) -> Result<()> {
        self.lock_mismatch(lock).map_err(|m| {
            Failure::new(format!("refusing the lock `{}`", self.profile.lock_path().display()), m.to_string())
                .hint(format!(
                    "the lock does not match the profile file and the recipes: re-resolve with `envctl lock {} --update`",
                    self.profile.path.display()
                ))
        })
    }

    /// The first thing in `lock` that the profile file and the recipes do not give (see
    /// [`Context::check_lock`]).
    pub fn lock_mismatch(&self, lock: &LockFile) -> std::result::Result<(), LockMismatch> {
        let refuse = |entry: &str, why: String| LockMismatch { entry: entry.to_owned(), why, changed: None };
        let platform = self.platform();
        if lock.platform != platform {
            return Err(refuse(
                "platform",
                format!("the lock is for `{}`, this machine is `{platform}`", lock.platform),
            ));
        }
        let mut by_name: BTreeMap<&str, &LockedPackage> = BTreeMap::new();
        for p in &lock.packages {
            if by_name.insert(p.name.as_str(), p).is_some() {
                return Err(refuse(&format!("package `{}`", p.name), "it is listed twice".into()));
            }
        }
        let version_of = |p: &LockedPackage| {
            Version::parse(&p.version).map_err(|e| refuse(&format!("package `{}`", p.name), e.to_string()))
        };
        for (name, requested) in &self.profile.packages {
            let Some(p) = by_name.get(name.as_str()) else {
                return Err(refuse(
                    &format!("package `{name}`"),
                    "the profile asks for it and the lock lacks it".into(),
                ));
            };
            if !requested.requirement.matches(&version_of(p)?) {
                return Err(refuse(
                    &format!("package `{name}`"),
                    format!(
                        "version {} does not meet `{}` ({})",
                        p.version,
                        requested.requirement.as_str(),
                        requested.text
                    ),
                ));
            }
        }
        let python = match by_name.get("python") {
            Some(p) => Some(version_of(p)?),
            None => None,
        };
        for p in &lock.packages {
            let entry = format!("package `{} {}`", p.name, p.version);
            let Some(recipe) = self.repo.get(&p.name, &version_of(p)?) else {
                return Err(refuse(&entry, "no recipe of the repositories has this name and version".into()));
            };
            let Some(source) = recipe.source_for(&platform, python.as_ref()) else {
                return Err(refuse(
                    &entry,
                    format!("its recipe has no source for `{platform}`{}", for_python(python.as_ref())),
                ));
            };
            if LockedSource::from(source) != p.source {
                return Err(LockMismatch {
                    entry,
                    why: format!(
                        "its source is `{}` (sha256 {}), but its recipe `{}` says `{}` (sha256 {})",
                        p.source.url,
                        p.source.sha256,
                        recipe.origin.display(),
                        source.url,
                        source.sha256
                    ),
                    changed: Some(p.name.clone()),
                });
            }
            for (dep, requirement) in &recipe.dependencies {
                let Some(d) = by_name.get(dep.as_str()) else {
                    return Err(refuse(&entry, format!("it depends on `{dep}`, which the lock lacks")));
                };
                if !requirement.matches(&version_of(d)?) {
                    return Err(refuse(
                        &entry,
                        format!("it needs {dep} {}, the lock has {}", requirement.as_str(), d.version),
                    ));
                }
            }
            if let Some(tree) = &p.tree_hash
                && !(tree.len() == 64 && tree.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(refuse(&entry, format!("tree hash `{tree}` is not 64 hex digits")));
            }
            if let Some(path) = &p.store_path
                && (envctl_store::StorePathName::parse(path).is_err()
                    || !path.ends_with(&format!("-{}-{}", p.name, p.version)))
            {
                return Err(refuse(&entry, format!("`{path}` is not a store path of this package")));
            }
        }
        Ok(())
    }

    /// The lock beside the profile file, if it answers the current request.
    pub fn fresh_lock(&self) -> Result<Option<LockFile>> {
        let lock = load_lock(&self.profile)?;
        Ok(lock.filter(|l| l.request == self.profile.request_hash(&self.platform())))
    }
}

/// Reads the lock of a profile file's environment, if there is one.
pub fn load_lock(profile: &ProfileFile) -> Result<Option<LockFile>> {
    let path = &profile.lock_path();
    LockFile::load_for(path, profile.environment.as_deref()).map_err(|e| {
        Failure::new(format!("cannot read the lock file `{}`", path.display()), e)
            .hint("delete it and run `envctl lock` again to re-resolve from the profile file")
    })
}

/// What the packages need from the machine and it lacks, from their recipes, one line each
/// (`{prefix}cuda 12.4.131 needs the NVIDIA driver >=525.60.13 (this machine: 418.40, …)`); and the
/// packages (`name version`) whose recipe is not in the repositories, which are not checked.
pub fn unmet_needs<'a>(
    packages: impl Iterator<Item = (&'a str, &'a str)>,
    repo: &Repository,
    facts: &SystemFacts,
    prefix: &str,
) -> (Vec<String>, Vec<String>) {
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for (name, version) in packages {
        let Some(recipe) = Version::parse(version).ok().and_then(|v| repo.get(name, &v)) else {
            missing.push(format!("{name} {version}"));
            continue;
        };
        for need in facts.unmet(&recipe.system) {
            found.push(format!("{prefix}{name} {version} needs {need}"));
        }
    }
    (found, missing)
}

/// The versions a lock holds, by name.
pub fn versions_of(lock: &LockFile) -> BTreeMap<PackageName, Version> {
    parse_versions(lock.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())))
}

/// `(name, version)` pairs as the solver's preferences; pairs that do not parse are left out.
pub fn parse_versions<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> BTreeMap<PackageName, Version> {
    pairs.filter_map(|(n, v)| Some((PackageName::parse(n).ok()?, Version::parse(v).ok()?))).collect()
}

/// The lock for a solution, keeping the store paths of an old lock where nothing changed. With
/// `look_into_sdists`, source distributions are fetched and looked into (see sdist.rs); a dry
/// run passes false and fetches nothing.
pub fn build_lock(
    solution: &Solution,
    request: String,
    platform: &str,
    old: Option<&LockFile>,
    settings: &Settings,
    look_into_sdists: bool,
    warnings: &mut Vec<String>,
) -> Result<LockFile> {
    // Store paths are recorded when the store already has them; nothing else is fetched here.
    let store_dir = settings.store_dir();
    let mut store = envctl_store::Store::open_existing(&store_dir, settings.store_options()).ok().flatten();
    let python = solution.packages.iter().find(|(n, _)| n.as_str() == "python").map(|(_, r)| &r.version);
    let mut packages = Vec::new();
    for (name, recipe) in &solution.packages {
        let source = recipe.source_for(platform, python).ok_or_else(|| {
            Failure::new(
                format!("cannot lock {name} {}", recipe.version),
                format!("its recipe has no source for `{platform}`{}", for_python(python)),
            )
            .hint(format!(
                "its recipe `{}` has sources for: {}",
                recipe.origin.display(),
                sources_shown(recipe)
            ))
        })?;
        let mut locked = LockedPackage {
            name: name.to_string(),
            version: recipe.version.to_string(),
            dependencies: solution.graph.dependencies(name).iter().map(|d| d.to_string()).collect(),
            store_path: None,
            tree_hash: None,
            archive_size: None,
            source: LockedSource::from(source),
            built: None,
        };
        // What this store holds for the source (verified when it was installed) is recorded;
        // else what the old lock promised for the same version and source. A re-lock thus
        // replaces a promise this machine's install contradicted (one written by an older envctl
        // that unpacked the source otherwise), instead of writing it again.
        // A source distribution is fetched and looked into now, as uv reads one at lock time:
        // one that needs a compiler fails the lock, not a later apply.
        if look_into_sdists && crate::request::is_sdist(&locked) {
            if store.is_none() {
                store = Some(
                    envctl_store::Store::open(&store_dir, settings.store_options())
                        .context(|| format!("cannot open the store at `{}`", store_dir.display()))?,
                );
            }
            let caches = settings.caches(&settings.store_options().fetch);
            let installer = envctl_store::Installer::new(store.as_ref().expect("opened above"), &caches);
            crate::sdist::check_at_lock(&installer, &locked, warnings)?;
        }
        let same_as_before = old
            .and_then(|o| o.get(name.as_str()))
            .filter(|prev| prev.version == locked.version && prev.source == locked.source);
        // The wheel a source distribution was first built into stays promised across re-locks,
        // and the size of the same archive stays known.
        locked.built = same_as_before.and_then(|prev| prev.built.clone());
        locked.archive_size = same_as_before.and_then(|prev| prev.archive_size);
        let installed = store
            .as_ref()
            .zip(crate::request::install_request(&locked))
            .and_then(|(s, r)| s.find(&r).ok().flatten());
        if let Some(found) = installed {
            locked.store_path = Some(found.record.name.clone());
            locked.tree_hash = Some(found.record.tree_hash.clone());
        } else if let Some(prev) = same_as_before {
            locked.store_path = prev.store_path.clone();
            locked.tree_hash = prev.tree_hash.clone();
        }
        packages.push(locked);
    }
    Ok(LockFile {
        version: envctl_recipes::LOCK_VERSION,
        request,
        platform: platform.to_owned(),
        recipes: Default::default(),
        indexes: Default::default(),
        packages,
        environments: Default::default(),
        migrated: false,
    })
}

/// What in a lock the profile file and the recipes do not give.
#[derive(Debug)]
pub struct LockMismatch {
    /// The entry (`package `hello 1.0``, `platform`).
    pub entry: String,
    /// What is wrong with it.
    pub why: String,
    /// The package whose recipe's source changed under the same version, if that is it.
    pub changed: Option<String>,
}

impl std::fmt::Display for LockMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.entry, self.why)
    }
}

/// ` and Python X.Y.Z` when a Python is resolved.
fn for_python(python: Option<&Version>) -> String {
    python.map(|v| format!(" and Python {v}")).unwrap_or_default()
}

/// A recipe's sources as `platform (python)` pairs, for a hint.
fn sources_shown(recipe: &envctl_recipes::Recipe) -> String {
    let shown: Vec<String> = recipe
        .sources
        .iter()
        .map(|s| {
            let platform = s.platform.as_deref().unwrap_or("any platform");
            match &s.python {
                Some(p) => format!("{platform} with Python {}", p.as_str()),
                None => platform.to_owned(),
            }
        })
        .collect();
    shown.join("; ")
}
