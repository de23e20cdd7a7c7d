//! Applying a profile file, in two steps with a value between them (uv's planner, cargo's ops):
//! [`plan`] reads the file, its lock and the current generation and decides what to do, touching
//! nothing; [`execute`] carries a [`Plan`] out. A dry run renders the plan; a real run executes
//! the same value, so the two cannot drift apart, and a daemon can receive a plan from a client.
//!
//! Order matters for crash safety: packages are installed and the generation is registered while
//! the store lock is held shared (GC waits), and the profile link is switched last, by one
//! rename. A kill at any point leaves the previous generation current.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use envctl_recipes::{LockFile, LockedPackage, ProfileFile, SystemFacts};
use envctl_store::{FarmInput, FetchOptions, Fetcher, Installer, Profiles, Reporter, Store};

use crate::error::{Failure, Result, StoreContext};
use crate::manifest::{self, Change, MANIFEST_VERSION, Manifest, ManifestPackage};
use crate::profiles::ProfileRef;
use crate::request::install_request;
use crate::resolution::{Context, build_lock, load_profile, parse_versions, versions_of};
use crate::settings::Settings;

/// How to apply a profile file.
#[derive(Debug, Default, Clone)]
pub struct ApplyOptions {
    /// The profile to build, instead of the file's name (`NAME`, or `TEAM/NAME` in a shared
    /// home).
    pub profile: Option<String>,
    /// In a shared home: the team (Unix group) whose profile to build, named after the file.
    pub team: Option<String>,
    /// Refuse a missing lock, or one the profile file changed since (uv's and pixi's
    /// `--locked`).
    pub locked: bool,
    /// Use the lock as it is, even one the profile file changed since (it is not re-resolved);
    /// refuse a missing one (uv's and pixi's `--frozen`).
    pub frozen: bool,
    /// Only the store and local sources.
    pub offline: bool,
    /// An ad-hoc environment, named by the flags that asked for it (`-p tensorflow=2.15`):
    /// explanations use those words instead of envctl's own file, and the generation is built
    /// but no profile is switched to it, so it is garbage once no session holds it.
    pub adhoc: Option<String>,
    /// Plan for a dry run: look into source distributions only if the store has them (fetch
    /// nothing), and find out download sizes.
    pub dry_run: bool,
    /// Leave a profile that was rolled back where it is while the file and its lock are what
    /// built the generation the rollback left: a session started from a project's file does
    /// not undo an explicit rollback; `apply` does.
    pub keep_rollback: bool,
}

/// What applying a profile file will do.
#[derive(Debug)]
pub struct Plan {
    /// The profile, as messages name it (`vision`, `vision/tf115`).
    pub name: String,
    /// The profile: whose, and its name.
    pub profile: ProfileRef,
    /// The profile file.
    pub file: PathBuf,
    /// Its lock file.
    pub lock_path: PathBuf,
    /// The file's environment this applies (`None`: the default one): its part of the lock file.
    pub environment: Option<String>,
    /// What to do.
    pub action: Action,
    /// The lock to apply (resolved now, or the file's own).
    pub lock: LockFile,
    /// The lock file as it is on disk, if any.
    pub old_lock: Option<LockFile>,
    /// The current generation, if the profile has one.
    pub current: Option<envctl_store::Generation>,
    /// The current generation's manifest.
    pub current_manifest: Option<Manifest>,
    /// The manifest the new generation will have (its store paths filled in when built).
    pub manifest: Manifest,
    /// What changes against the current generation.
    pub changes: Vec<Change>,
    /// Packages the store does not have yet, in lock order, and where each comes from.
    pub fetch: Vec<Fetch>,
    /// Mirrors the packages to fetch name that the configuration does not define.
    pub unconfigured_mirrors: Vec<String>,
    /// `[priority]` of the profile file, by package.
    pub priorities: BTreeMap<String, i64>,
    /// Options it was made with.
    pub options: ApplyOptions,
    /// Warnings met while planning (a source distribution that cannot be looked into now).
    pub warnings: Vec<String>,
    /// The recipe repositories the profile file names (see `Settings::for_profile`).
    pub recipe_dirs: Vec<PathBuf>,
    /// The package indexes it names, local bases made absolute.
    pub indexes: BTreeMap<String, Vec<String>>,
}

/// What a plan does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The file and its lock built the current generation: nothing to do.
    UpToDate,
    /// The file changed in a way that does not matter (a loosened requirement): the lock is
    /// written again, the generation stays.
    KeepGeneration,
    /// Install what is missing, build a generation and switch to it.
    Build,
}

/// A package to fetch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fetch {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Where it comes from: the binary cache that offers it, else its source URL.
    pub url: String,
    /// Whether a binary cache gives it.
    pub cache: bool,
    /// Its download size, when known (dry runs ask).
    pub bytes: Option<u64>,
}

/// What applying did.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    /// The profile.
    pub name: String,
    /// The generation's store path (the one in force afterwards).
    pub generation: PathBuf,
    /// Its number (none for an ad-hoc environment).
    pub number: Option<u32>,
    /// What happened.
    pub outcome: Outcome,
    /// Packages in the generation.
    pub packages: usize,
    /// Packages fetched (not found in the store).
    pub fetched: usize,
    /// Of those, how many came from binary caches.
    pub from_caches: usize,
    /// What changed against the previous generation.
    pub changes: Vec<Change>,
}

/// How an apply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// Nothing to do.
    UpToDate,
    /// The lock was recorded; the generation stays.
    Unchanged,
    /// A new generation is current.
    Switched,
    /// An ad-hoc environment's generation was built (no profile switched).
    Built,
}

impl Outcome {
    /// The word `apply --json` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::UpToDate => "up-to-date",
            Outcome::Unchanged => "unchanged",
            Outcome::Switched => "switched",
            Outcome::Built => "built",
        }
    }
}

/// Plans applying `file` (see the module docs): reads, resolves when the lock is missing or
/// stale, and finds what the store lacks. Writes nothing, fetches nothing (a source distribution
/// is fetched into the store at lock time, as `lock` does, except in a dry run).
pub fn plan(file: &Path, options: &ApplyOptions, settings: &Settings) -> Result<Plan> {
    let profile = load_profile(file, settings)?;
    // The repositories and indexes the file names join the configuration's.
    let settings = &settings.for_profile(&profile);
    let (recipe_dirs, indexes) = (profile.recipe_dirs(), profile.index_bases());
    let spec = match (&options.profile, &options.team) {
        (Some(spec), _) => spec.clone(),
        (None, Some(team)) => format!("{team}/{}", profile.name),
        (None, None) => profile.name.clone(),
    };
    let profile_ref = ProfileRef::parse(&spec, settings.daemon_user().as_deref())
        .map_err(|f| f.context_for(format!("cannot apply `{}`", file.display())))?;
    let name = profile_ref.to_string();
    let platform = crate::system::platform(Some(&profile.system), settings.system())?;
    let request = profile.request_hash(&platform);
    let lock_path = profile.lock_path();
    let old_lock = crate::resolution::load_lock(&profile)?;
    let fresh = old_lock.as_ref().filter(|l| l.request == request || options.frozen).cloned();

    let profiles = profile_ref.profiles(&settings.home);
    // An ad-hoc environment has no profile, so nothing current to keep or compare with (even if
    // a user's profile happens to share its name).
    let current = match options.adhoc {
        Some(_) => None,
        None => profiles.current(&profile_ref.name).context(|| format!("cannot read profile `{name}`"))?,
    };
    let current_manifest = current.as_ref().and_then(|g| Manifest::load(&g.path).ok());
    let priorities: BTreeMap<String, i64> =
        profile.priority.iter().map(|(n, v)| (n.to_string(), *v)).collect();

    // A rollback stands while the file is what built the generation it left.
    if options.keep_rollback
        && let (Some(lock), Some(g), Some(m)) = (&fresh, &current, &current_manifest)
        && g.path.is_dir()
        && let Some(note) =
            profiles.held(&profile_ref.name).context(|| format!("cannot read profile `{name}`"))?
    {
        let packages = lock.packages.iter().map(|p| {
            (
                p.name.as_str(),
                p.version.as_str(),
                p.source.sha256.as_str(),
                p.store_path.as_deref().unwrap_or(""),
            )
        });
        let digest = crate::manifest::origin_digest(&lock.request, packages, Some(&profile.env));
        if let Some((left, held)) = note.trim().split_once(' ')
            && held == digest
        {
            let warning = format!(
                "`{name}` stays at generation {}, to which it was rolled back from {left}; `envctl apply {}` builds the file again",
                g.number,
                file.display()
            );
            return Ok(Plan {
                name,
                profile: profile_ref,
                file: file.to_path_buf(),
                lock_path,
                environment: profile.environment.clone(),
                action: Action::UpToDate,
                lock: lock.clone(),
                manifest: m.clone(),
                old_lock,
                current,
                current_manifest,
                changes: Vec::new(),
                fetch: Vec::new(),
                unconfigured_mirrors: Vec::new(),
                priorities,
                options: options.clone(),
                warnings: vec![warning],
                recipe_dirs: recipe_dirs.clone(),
                indexes: indexes.clone(),
            });
        }
    }

    // Fast path: an unchanged file whose lock built the current generation.
    if let (Some(lock), Some(m)) = (&fresh, &current_manifest)
        && !lock.migrated
        && m.request == lock.request
        && same_packages(lock, m)
        && same_env(&profile, m)
        && current.as_ref().is_some_and(|g| g.path.is_dir())
    {
        return Ok(Plan {
            name,
            profile: profile_ref,
            file: file.to_path_buf(),
            lock_path,
            environment: profile.environment.clone(),
            action: Action::UpToDate,
            lock: lock.clone(),
            manifest: m.clone(),
            old_lock,
            current,
            current_manifest,
            changes: Vec::new(),
            fetch: Vec::new(),
            unconfigured_mirrors: Vec::new(),
            priorities,
            options: options.clone(),
            warnings: Vec::new(),
            recipe_dirs: recipe_dirs.clone(),
            indexes: indexes.clone(),
        });
    }

    let facts: SystemFacts = crate::system::facts(Some(&profile.system), settings.system())?;
    let environment = profile.environment.clone();
    let mut ctx = Context::from_parts(profile, facts, settings.repository()?);
    ctx.label = options.adhoc.clone();
    let mut warnings = Vec::new();
    let mut lock = match fresh {
        Some(lock) => {
            ctx.check_lock(&lock)?;
            ctx.check_fits(&lock)?;
            lock
        }
        None if options.frozen || options.locked => {
            let flag = if options.frozen { "--frozen" } else { "--locked" };
            return Err(Failure::new(
                format!("cannot apply `{}` with {flag}", file.display()),
                format!(
                    "`{}` is {}",
                    lock_path.display(),
                    if old_lock.is_some() {
                        "stale: the profile file changed since it was written"
                    } else {
                        "missing"
                    }
                ),
            )
            .hint(format!("run `envctl lock {}` and commit the lock, or drop {flag}", file.display())));
        }
        None => {
            // Keep what the lock, or else the current generation, has wherever it still fits.
            let preferred = match (&old_lock, &current_manifest) {
                (Some(lock), _) => versions_of(lock),
                (None, Some(m)) => {
                    parse_versions(m.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())))
                }
                (None, None) => BTreeMap::new(),
            };
            let started = std::time::Instant::now();
            let solution = ctx.solve(preferred)?;
            tracing::info!(packages = solution.packages.len(), elapsed = ?started.elapsed(), "resolved");
            build_lock(
                &solution,
                request.clone(),
                &platform,
                old_lock.as_ref(),
                settings,
                // A store this process cannot write (a daemon's) is not fetched into now: the
                // daemon looks into a source distribution before it builds it.
                !options.dry_run && settings.daemon().is_none(),
                &mut warnings,
            )
            .map(|mut lock| {
                // The repositories and indexes the file names travel with the lock.
                lock.recipes = ctx.profile.recipes.clone();
                lock.indexes = ctx.profile.indexes.clone();
                lock
            })?
        }
    };
    check_priorities(&ctx, &lock)?;
    let manifest = build_manifest(&ctx, &lock, &name);

    // Same packages and environment as the current generation (the file changed in a way that
    // does not matter, say a loosened requirement): record the lock, keep the generation.
    if !lock.migrated
        && let (Some(m), Some(g)) = (&current_manifest, &current)
        && g.path.is_dir()
        && same_versions(&lock, m)
        && manifest.env == m.env
    {
        for p in &mut lock.packages {
            if let Some(mp) = m.packages.iter().find(|mp| mp.name == p.name) {
                p.store_path = Some(mp.store_path.clone());
            }
            if p.tree_hash.is_none() {
                p.tree_hash =
                    old_lock.as_ref().and_then(|o| o.get(&p.name)).and_then(|o| o.tree_hash.clone());
            }
        }
        return Ok(Plan {
            name,
            profile: profile_ref,
            file: file.to_path_buf(),
            lock_path,
            environment: environment.clone(),
            action: Action::KeepGeneration,
            lock,
            manifest,
            old_lock,
            current,
            current_manifest,
            changes: Vec::new(),
            fetch: Vec::new(),
            unconfigured_mirrors: Vec::new(),
            priorities,
            options: options.clone(),
            warnings,
            recipe_dirs: recipe_dirs.clone(),
            indexes: indexes.clone(),
        });
    }

    let changes = manifest::diff(current_manifest.as_ref(), &manifest);
    let (fetch, unconfigured_mirrors) = to_fetch(&lock, settings, options.dry_run);
    Ok(Plan {
        name,
        profile: profile_ref,
        file: file.to_path_buf(),
        lock_path,
        environment,
        action: Action::Build,
        lock,
        manifest,
        old_lock,
        current,
        current_manifest,
        changes,
        fetch,
        unconfigured_mirrors,
        priorities,
        options: options.clone(),
        warnings,
        recipe_dirs: recipe_dirs.clone(),
        indexes: indexes.clone(),
    })
}

/// The packages of `lock` the store does not have, each with where it would come from (the
/// first binary cache that offers it, else its source), and the undefined mirrors they name.
/// Binary caches are asked and download sizes found out (a `HEAD` request, a file's length) only
/// with `sizes` (a dry run).
fn to_fetch(lock: &LockFile, settings: &Settings, sizes: bool) -> (Vec<Fetch>, Vec<String>) {
    let store_dir = settings.store_dir();
    let store = Store::open_existing(&store_dir, settings.store_options()).ok().flatten();
    let missing: Vec<&LockedPackage> = lock
        .packages
        .iter()
        .filter(|p| {
            store.as_ref().zip(install_request(p)).and_then(|(s, r)| s.find(&r).ok().flatten()).is_none()
        })
        .collect();
    let options = settings.store_options();
    let mut unconfigured = std::collections::BTreeSet::new();
    for p in &missing {
        if let Some(name) = envctl_store::mirror_name(&p.source.url)
            && options.fetch.mirrors.get(name).is_none_or(|bases| bases.is_empty())
        {
            unconfigured.insert(name.to_owned());
        }
    }
    // What a binary cache would give, checked as far as can be without fetching it (a dry run
    // only: a real run asks the caches as it installs).
    let caches = settings.caches(&options.fetch);
    let offers: Vec<Option<(String, u64)>> = missing
        .iter()
        .map(|p| if sizes { install_request(p).and_then(|r| caches.offer(&r)) } else { None })
        .collect();
    // The network is asked only for sizes the lock does not record.
    let unknown: Vec<&LockedPackage> = missing
        .iter()
        .zip(&offers)
        .filter(|(p, o)| o.is_none() && p.archive_size.is_none())
        .map(|(p, _)| *p)
        .collect();
    let mut probed =
        if sizes { download_sizes(&unknown, options.fetch, options.jobs) } else { vec![None; unknown.len()] }
            .into_iter();
    let fetch = missing
        .iter()
        .zip(offers)
        .map(|(p, offer)| {
            let (url, bytes, cache) = match offer {
                Some((cache, size)) => (cache, Some(size), true),
                None => (p.source.url.clone(), p.archive_size.or_else(|| probed.next().flatten()), false),
            };
            Fetch { name: p.name.clone(), version: p.version.clone(), url, cache, bytes }
        })
        .collect();
    (fetch, unconfigured.into_iter().collect())
}

/// Carries a plan out (see the module docs), reporting downloads to `reporter`. The lock, once it
/// records what was installed and built (also when building the generation fails after that),
/// goes to `write_lock` when it differs from the file's: the lock file beside the profile file,
/// or, in the daemon, back to the client that owns that file.
pub fn execute(
    plan: Plan,
    settings: &Settings,
    reporter: &dyn Reporter,
    write_lock: &dyn Fn(&LockFile) -> Result<()>,
) -> Result<Applied> {
    // Fetching goes through the indexes the profile file names too.
    let settings = &settings.with_indexes(plan.recipe_dirs.clone(), plan.indexes.clone());
    let Plan {
        name, profile, file, lock_path, action, mut lock, old_lock, current, current_manifest, ..
    } = plan;
    match action {
        Action::UpToDate => {
            let (number, path) = current.map(|g| (g.number, g.path)).unwrap_or_default();
            return Ok(Applied {
                name,
                generation: path,
                number: Some(number),
                outcome: Outcome::UpToDate,
                packages: lock.packages.len(),
                fetched: 0,
                from_caches: 0,
                changes: Vec::new(),
            });
        }
        Action::KeepGeneration => {
            if old_lock.as_ref() != Some(&lock) {
                write_lock(&lock)?;
            }
            let g = current.expect("a kept generation exists");
            return Ok(Applied {
                name,
                generation: g.path,
                number: Some(g.number),
                outcome: Outcome::Unchanged,
                packages: lock.packages.len(),
                fetched: 0,
                from_caches: 0,
                changes: Vec::new(),
            });
        }
        Action::Build => {}
    }
    let adhoc = plan.options.adhoc.is_some();
    let store_dir = settings.store_dir();
    let mut store_options = settings.store_options();
    store_options.fetch.offline = plan.options.offline;
    let store = Store::open(&store_dir, store_options.clone())
        .context(|| format!("cannot open the store at `{}`", store_dir.display()))?;
    let caches = settings.caches(&store_options.fetch);
    let installer = Installer::new(&store, &caches);
    if plan.options.offline {
        check_offline(&installer, &lock, &store_options, &file)?;
    }

    // Install the closure.
    let mut requests = Vec::new();
    for p in &lock.packages {
        requests.push(install_request(p).ok_or_else(|| {
            Failure::new(
                format!("cannot install {} {}", p.name, p.version),
                "its lock entry does not pass the store's checks",
            )
            .hint(format!("re-lock with `envctl lock {} --update`", file.display()))
        })?);
    }
    let started = std::time::Instant::now();
    let results = install_largest_first(&installer, requests, &lock, reporter);
    tracing::info!(packages = results.len(), elapsed = ?started.elapsed(), "installed the closure");
    let mut fetched = 0;
    let mut from_caches = 0;
    for (p, result) in lock.packages.iter_mut().zip(results) {
        let out_of_room = result.as_ref().is_err_and(envctl_store::Error::is_out_of_room);
        let installed = result
            .context(|| format!("cannot install {} {} from `{}`", p.name, p.version, p.source.url))
            .map_err(|f| match out_of_room {
                true => f.hint(format!(
                    "free space on the disk of `{}` (`envctl gc` removes what no generation uses), then apply again",
                    store_dir.display()
                )),
                false => mirror_hints(f, &p.source.url, settings),
            })?;
        fetched += usize::from(installed.fetched);
        from_caches += usize::from(installed.cache.is_some());
        // What the lock promised is what was installed, or nothing of it becomes a generation.
        let promised = [(&p.tree_hash, &installed.record.tree_hash), (&p.store_path, &installed.record.name)];
        if let Some((Some(want), got)) =
            promised.into_iter().find(|(want, got)| want.as_ref().is_some_and(|w| w != *got))
        {
            return Err(Failure::new(
                format!("refusing the lock `{}`", lock_path.display()),
                format!(
                    "package `{} {}`: the lock says `{want}`, its source unpacked to `{got}`",
                    p.name, p.version
                ),
            )
            .hint(format!("re-resolve with `envctl lock {} --update`", file.display())));
        }
        p.store_path = Some(installed.record.name.clone());
        p.tree_hash = Some(installed.record.tree_hash.clone());
        if installed.archive_size.is_some() {
            p.archive_size = installed.archive_size;
        }
    }

    // Build the generation.
    let mut manifest = plan.manifest;
    for (mp, p) in manifest.packages.iter_mut().zip(&lock.packages) {
        mp.store_path = p.store_path.clone().unwrap_or_default();
    }
    let package_paths: Vec<PathBuf> =
        lock.packages.iter().map(|p| store_dir.join(p.store_path.as_deref().unwrap_or_default())).collect();
    manifest.search = Some(manifest::search_dirs(&package_paths));
    let mut inputs: Vec<FarmInput> = lock
        .packages
        .iter()
        .map(|p| FarmInput {
            name: p.name.clone(),
            path: store_dir.join(p.store_path.as_deref().unwrap_or_default()),
            priority: plan.priorities.get(&p.name).copied().unwrap_or(0),
            remap: BTreeMap::new(),
            real_dirs: Vec::new(),
        })
        .collect();
    let started = std::time::Instant::now();
    let layered = crate::python::add_layer(&installer, &store_dir, &mut lock, &lock_path, &mut inputs);
    tracing::info!(elapsed = ?started.elapsed(), "python layer ready (bytecode, pyvenv.cfg)");
    // What was installed and built is recorded even when the Python layer failed after it.
    if old_lock.as_ref() != Some(&lock) {
        write_lock(&lock)?;
    }
    layered?;
    let started = std::time::Instant::now();
    let profiles = Profiles::open_dir(&profile.dir(&settings.home))
        .context(|| "cannot open the profiles directory".into())?;
    let profile_lock = match adhoc {
        false => Some(profiles.lock(&profile.name).context(|| format!("cannot lock profile `{name}`"))?),
        true => None,
    };
    let previous = current.as_ref().map(|g| g.path.as_path());
    let generation =
        store.add_generation(&profile.name, &inputs, &manifest.to_text(), previous).map_err(|e| {
            let hint = matches!(e, envctl_store::Error::Collision { .. }).then(|| {
                format!(
                    "give one of them priority in `{}`:\n\n    [priority]\n    PACKAGE = 10",
                    file.display()
                )
            });
            let mut f = Failure::new(format!("cannot build a generation of `{name}`"), e);
            if let Some(h) = hint {
                f = f.hint(h);
            }
            f
        })?;
    tracing::info!(path = %generation.path.display(), elapsed = ?started.elapsed(), "built the generation");
    let packages = lock.packages.len();
    if adhoc {
        return Ok(Applied {
            name,
            generation: generation.path,
            number: None,
            outcome: Outcome::Built,
            packages,
            fetched,
            from_caches,
            changes: Vec::new(),
        });
    }
    // Re-read under the profile lock: another apply may have switched meanwhile.
    let now = profiles.current(&profile.name).context(|| format!("cannot read profile `{name}`"))?;
    if let Some(g) = now.as_ref().filter(|g| g.path == generation.path) {
        return Ok(Applied {
            name,
            generation: generation.path,
            number: Some(g.number),
            outcome: Outcome::UpToDate,
            packages,
            fetched,
            from_caches,
            changes: Vec::new(),
        });
    }
    let held = profile_lock.as_ref().expect("a profile (not an ad-hoc environment) is locked above");
    let number = profiles
        .add_generation(held, &profile.name, &generation.path)
        .context(|| format!("cannot switch profile `{name}`"))?;
    let changes = manifest::diff(current_manifest.as_ref(), &manifest);
    Ok(Applied {
        name,
        generation: generation.path,
        number: Some(number),
        outcome: Outcome::Switched,
        packages,
        fetched,
        from_caches,
        changes,
    })
}

/// Installs `requests` (one per locked package, in the lock's order) with the interpreter first
/// and then the largest archives first, and gives the results in the lock's order. The cores stay
/// busy to the end: a large wheel started last would unpack alone (its largest file on one
/// thread) while the other core idles, and the interpreter's standard library is compiled too.
fn install_largest_first(
    installer: &Installer<'_>,
    requests: Vec<envctl_store::InstallRequest>,
    lock: &LockFile,
    reporter: &dyn Reporter,
) -> Vec<envctl_store::Result<envctl_store::Installed>> {
    let size = |i: usize| lock.packages.get(i).and_then(|p| p.archive_size).unwrap_or(0);
    let mut indexed: Vec<(usize, envctl_store::InstallRequest)> = requests.into_iter().enumerate().collect();
    indexed.sort_by_key(|(i, r)| (!r.bytecode, std::cmp::Reverse(size(*i))));
    let (order, ordered): (Vec<usize>, Vec<_>) = indexed.into_iter().unzip();
    let mut results: Vec<_> = order.into_iter().zip(installer.install_all(&ordered, reporter)).collect();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

fn same_packages(lock: &LockFile, m: &Manifest) -> bool {
    lock.packages.len() == m.packages.len()
        && lock.packages.iter().zip(&m.packages).all(|(l, p)| {
            l.name == p.name
                && l.version == p.version
                && l.source.sha256 == p.sha256
                && l.store_path.as_deref() == Some(&p.store_path)
        })
}

fn same_versions(lock: &LockFile, m: &Manifest) -> bool {
    lock.packages.len() == m.packages.len()
        && lock
            .packages
            .iter()
            .zip(&m.packages)
            .all(|(l, p)| l.name == p.name && l.version == p.version && l.source.sha256 == p.sha256)
}

/// Whether the profile file's `[env]` is the one the generation was built from: equal, so that a
/// removed variable is a change too. A generation that did not record it is rebuilt to find out.
fn same_env(profile: &ProfileFile, m: &Manifest) -> bool {
    m.profile_env.as_ref() == Some(&profile.env)
}

/// The manifest a generation of `lock` records (store paths as the lock has them).
fn build_manifest(ctx: &Context, lock: &LockFile, name: &str) -> Manifest {
    // Recipes' in install order, then the profile's; a later entry that names its own variable
    // (`PYTHONPATH = "/src:${PYTHONPATH}"`) builds on the earlier one instead of replacing it.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let layers = lock
        .packages
        .iter()
        .filter_map(|p| ctx.repo.get(&p.name, &envctl_recipes::Version::parse(&p.version).ok()?))
        .map(|recipe| &recipe.env)
        .chain([&ctx.profile.env]);
    for layer in layers {
        for (k, v) in layer {
            let value = match env.get(k) {
                Some(previous) => envctl_recipes::compose_env(k, v, previous),
                None => v.clone(),
            };
            env.insert(k.clone(), value);
        }
    }
    Manifest {
        version: MANIFEST_VERSION,
        profile: name.to_owned(),
        request: lock.request.clone(),
        platform: lock.platform.clone(),
        env,
        profile_env: Some(ctx.profile.env.clone()),
        system: (!ctx.profile.system.is_empty()).then(|| ctx.profile.system.canonical()),
        search: None,
        packages: lock
            .packages
            .iter()
            .map(|p| ManifestPackage {
                name: p.name.clone(),
                version: p.version.clone(),
                store_path: p.store_path.clone().unwrap_or_default(),
                sha256: p.source.sha256.clone(),
                url: p.source.url.clone(),
                dependencies: {
                    let mut d = p.dependencies.clone();
                    d.sort();
                    d
                },
            })
            .collect(),
        requested: ctx.profile.packages.keys().map(|n| n.to_string()).collect(),
    }
}

/// A `[priority]` entry must name a package of the resolution: a typo would otherwise be ignored
/// and the collision it was meant to settle would come back.
fn check_priorities(ctx: &Context, lock: &LockFile) -> Result<()> {
    for name in ctx.profile.priority.keys() {
        if lock.get(name.as_str()).is_some() {
            continue;
        }
        let near = crate::error::nearest(name.as_str(), lock.packages.iter().map(|p| p.name.as_str()));
        let f = Failure::new(
            format!("cannot apply `{}`", ctx.profile.path.display()),
            format!("[priority] names `{name}`, which is not in its resolution"),
        );
        return Err(match near {
            Some(n) => f.hint(format!("did you mean `{n}`?")),
            None => f.hint("a priority settles a collision between two packages the profile installs"),
        });
    }
    Ok(())
}

/// Offline: every package must be in the store or have a local source; the failure names each
/// one that would need the network.
fn check_offline(
    installer: &Installer,
    lock: &LockFile,
    options: &envctl_store::StoreOptions,
    file: &Path,
) -> Result<()> {
    let fetcher = Fetcher::new(options.fetch.clone());
    let mut lacking = Vec::new();
    for p in &lock.packages {
        let Some(request) = install_request(p) else { continue };
        let in_store = installer.store().find(&request).ok().flatten().is_some();
        // `options` is offline: only caches on a local directory are asked.
        if !in_store
            && fetcher.locations(&p.source.url).is_err()
            && installer.caches().offer(&request).is_none()
        {
            let size = p.archive_size.map(|n| format!(", {}", crate::error::bytes(n))).unwrap_or_default();
            lacking.push(format!("{} {} ({}{size})", p.name, p.version, p.source.url));
        }
    }
    if lacking.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        format!("cannot apply `{}` offline", file.display()),
        format!(
            "{} neither in the store nor with a local source:\n    {}",
            match lacking.len() {
                1 => "1 package is".to_owned(),
                n => format!("{n} packages are"),
            },
            lacking.join("\n    ")
        ),
    )
    .hint("bring them in first: a `file://` mirror base in [mirrors], a binary cache on a local directory, `envctl store import`, `envctl store add`, or an apply on a machine with network"))
}

/// Hints for a failed download from a `mirror://NAME/…` source: where the mirror is configured
/// and what `--offline` does.
fn mirror_hints(mut f: Failure, url: &str, settings: &Settings) -> Failure {
    if let Some(name) = envctl_store::mirror_name(url) {
        f = f
            .hint(format!(
                "`{name}` is a mirror: point `[mirrors] {name}` in {} at a base that serves the publisher's layout (a site mirror, or a `file://` copy)",
                settings.config_file()
            ))
            .hint("on a machine without the network, apply with `--offline` once the artifacts are in the store or on a local mirror");
    }
    f
}

/// The download size of each package's source, asked of its locations (a `HEAD` request, or a
/// local file's length) at most `jobs` at a time; nothing is downloaded.
fn download_sizes(packages: &[&LockedPackage], fetch: FetchOptions, jobs: usize) -> Vec<Option<u64>> {
    let fetcher = Fetcher::new(fetch);
    let size = |_: &mut (), _, p: &&LockedPackage| fetcher.size(&p.source.url);
    envctl_store::parallel::map_on_threads(jobs, packages, || (), size, |_| false)
        .into_iter()
        .flatten()
        .collect()
}

/// Writes `lock` as the lock of the environment `environment` (`None`: the default) of the
/// profile file `file`, at `lock_path` (the [`execute`] callback of a process that owns the file).
pub fn write_lock_file(
    lock: &LockFile,
    file: &Path,
    lock_path: &Path,
    environment: Option<&str>,
) -> Result<()> {
    let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    lock.write_for(lock_path, &file_name, environment)
        .map_err(|e| Failure::new("cannot write the lock file", e))
}
