//! `envctl apply FILE`: lock, install the closure, build the generation, switch to it.
//!
//! Order matters for crash safety: packages are installed and the generation is registered while
//! this process holds the store lock shared (GC waits), and the profile link is switched last, by
//! one rename. A kill at any point leaves the previous generation current.

use std::collections::BTreeMap;
use std::path::Path;

use envctl_recipes::{LockFile, LockedPackage, ProfileFile, SystemFacts};
use envctl_store::{FarmInput, FetchOptions, Fetcher, Profiles, Store};

use super::Status;
use crate::args::{ApplyArgs, Cli};
use crate::error::{Failure, Result, StoreContext};
use crate::manifest::{self, MANIFEST_VERSION, Manifest, ManifestPackage};
use crate::printer;
use crate::reporter::Bars;
use crate::resolution::{Context, build_lock, install_request, load_profile, parse_versions, versions_of};
use crate::settings::Settings;

/// The result of applying a profile file.
pub struct Applied {
    pub name: String,
    pub generation: std::path::PathBuf,
    /// What happened, for `apply --json`.
    pub report: serde_json::Value,
}

/// `apply --json`'s object: the profile, the outcome (`up-to-date`, `unchanged`, `switched`,
/// `planned` for a dry run, `built` for an ad-hoc environment), and `extra` fields.
fn report(
    name: &str,
    outcome: &str,
    generation: Option<u32>,
    path: &Path,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "profile": name,
        "outcome": outcome,
        "generation": generation,
        "path": (!path.as_os_str().is_empty()).then(|| path.display().to_string()),
    });
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

pub fn run(args: &ApplyArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let options = ApplyOptions {
        profile: args.profile.as_deref(),
        dry_run: args.dry_run,
        frozen: args.frozen,
        offline: args.offline,
        adhoc: None,
        json: args.json,
    };
    let applied = apply(&args.file, &options, settings, cli)?;
    if args.json {
        printer::json(&applied.report);
    }
    Ok(Status::Success)
}

/// How to apply a profile file.
#[derive(Debug, Default)]
pub struct ApplyOptions<'a> {
    /// The profile to build, instead of the file's name.
    pub profile: Option<&'a str>,
    /// Print the plan, touch nothing.
    pub dry_run: bool,
    /// Refuse a missing or stale lock.
    pub frozen: bool,
    /// Only the store and local sources.
    pub offline: bool,
    /// An ad-hoc environment, named by the flags that asked for it (`-p tensorflow=2.15`):
    /// explanations use those words instead of envctl's own file, and the generation is built
    /// but no profile is switched to it, so it is garbage once no session holds it.
    pub adhoc: Option<&'a str>,
    /// Leave stdout to the caller's JSON (a dry run's plan goes into the report only).
    pub json: bool,
}

pub fn apply(file: &Path, options: &ApplyOptions<'_>, settings: &Settings, cli: &Cli) -> Result<Applied> {
    let ApplyOptions { profile: profile_name, dry_run, frozen, offline, adhoc, json } = *options;
    let profile = load_profile(file)?;
    let name = profile_name.unwrap_or(&profile.name).to_owned();
    envctl_store::check_profile_name(&name).context(|| format!("cannot apply `{}`", file.display()))?;
    let platform = crate::system::platform(Some(&profile.system), settings.system())?;
    let request = profile.request_hash(&platform);
    let lock_path = profile.lock_path();
    let old_lock = LockFile::load(&lock_path).map_err(|e| Failure::new("cannot read the lock file", e))?;
    let fresh = old_lock.as_ref().filter(|l| l.request == request).cloned();

    let profiles = Profiles::open(&settings.home).context(|| "cannot open the profiles directory".into())?;
    // An ad-hoc environment has no profile, so nothing current to keep or compare with (even if
    // a user's profile happens to share its name).
    let current = match adhoc {
        Some(_) => None,
        None => profiles.current(&name).context(|| format!("cannot read profile `{name}`"))?,
    };
    let current_manifest = current.as_ref().and_then(|g| Manifest::load(&g.path).ok());

    // Fast path: an unchanged file whose lock built the current generation.
    if let (Some(lock), Some(m)) = (&fresh, &current_manifest)
        && !lock.migrated
        && m.request == lock.request
        && same_packages(lock, m)
        && same_env(&profile, m)
        && current.as_ref().is_some_and(|g| g.path.is_dir())
    {
        printer::status(&format!(
            "`{name}` is up to date (generation {})",
            current.as_ref().map_or(0, |g| g.number)
        ));
        let (number, path) = current.map(|g| (g.number, g.path)).unwrap_or_default();
        let report = report(&name, "up-to-date", Some(number), &path, serde_json::json!({}));
        return Ok(Applied { name, generation: path, report });
    }

    let facts: SystemFacts = crate::system::facts(Some(&profile.system), settings.system())?;
    let mut ctx = Context::from_parts(profile, facts, settings.repository()?);
    ctx.label = adhoc.map(str::to_owned);
    let mut lock = match fresh {
        Some(lock) => {
            ctx.check_lock(&lock)?;
            ctx.check_fits(&lock)?;
            lock
        }
        None if frozen => {
            return Err(Failure::new(
                format!("cannot apply `{}` with --frozen", file.display()),
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
            .hint(format!("run `envctl lock {}` and commit the lock, or drop --frozen", file.display())));
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
            let mut warnings = Vec::new();
            let built = build_lock(
                &solution,
                request.clone(),
                &platform,
                old_lock.as_ref(),
                settings,
                !dry_run,
                &mut warnings,
            );
            for w in &warnings {
                printer::info(&format!("warning: {w}"));
            }
            built?
        }
    };

    check_priorities(&ctx, &lock)?;
    let store_dir = settings.store_dir();
    let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Same packages and environment as the current generation (the file changed in a way that
    // does not matter, say a loosened requirement): record the lock, keep the generation.
    if !dry_run
        && !lock.migrated
        && let (Some(m), Some(g)) = (&current_manifest, &current)
        && g.path.is_dir()
        && same_versions(&lock, m)
        && build_manifest(&ctx, &lock, &name).env == m.env
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
        if old_lock.as_ref() != Some(&lock) {
            lock.write(&lock_path, &file_name).map_err(|e| Failure::new("cannot write the lock file", e))?;
        }
        printer::status(&format!("`{name}`: no package changes; it stays at generation {}", g.number));
        let report = report(&name, "unchanged", Some(g.number), &g.path, serde_json::json!({}));
        return Ok(Applied { name, generation: g.path.clone(), report });
    }
    if dry_run {
        return dry_run_plan(&ctx, &lock, current_manifest.as_ref(), &name, settings, json);
    }
    let mut store_options = settings.store_options();
    store_options.fetch.offline = offline;
    let store = Store::open(&store_dir, store_options.clone())
        .context(|| format!("cannot open the store at `{}`", store_dir.display()))?;
    if offline {
        check_offline(&store, &lock, &store_options, file)?;
    }

    // Install the closure.
    let order: Vec<usize> = (0..lock.packages.len()).collect();
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
    let bars = Bars::for_cli(cli);
    let started = std::time::Instant::now();
    let results = store.install_all(&requests, &bars);
    tracing::info!(packages = requests.len(), elapsed = ?started.elapsed(), "installed the closure");
    let mut fetched = 0;
    let mut from_caches = 0;
    for (i, result) in order.iter().zip(results) {
        let p = &mut lock.packages[*i];
        let installed = result
            .context(|| format!("cannot install {} {} from `{}`", p.name, p.version, p.source.url))
            .map_err(|f| mirror_hints(f, &p.source.url, settings))?;
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
    }

    // Build the generation.
    let mut manifest = build_manifest(&ctx, &lock, &name);
    let package_paths: Vec<std::path::PathBuf> =
        lock.packages.iter().map(|p| store_dir.join(p.store_path.as_deref().unwrap_or_default())).collect();
    manifest.search = Some(manifest::search_dirs(&package_paths));
    let mut inputs: Vec<FarmInput> = lock
        .packages
        .iter()
        .map(|p| FarmInput {
            name: p.name.clone(),
            path: store_dir.join(p.store_path.as_deref().unwrap_or_default()),
            priority: ctx.profile.priority.iter().find(|(n, _)| n.as_str() == p.name).map_or(0, |(_, v)| *v),
            remap: BTreeMap::new(),
        })
        .collect();
    let started = std::time::Instant::now();
    let layered = crate::python::add_layer(&store, &store_dir, &mut lock, &lock_path, &mut inputs);
    tracing::info!(elapsed = ?started.elapsed(), "python layer ready (bytecode, pyvenv.cfg)");
    // What was installed and built is recorded even when the Python layer failed after it.
    if old_lock.as_ref() != Some(&lock) {
        lock.write(&lock_path, &file_name).map_err(|e| Failure::new("cannot write the lock file", e))?;
    }
    layered?;
    let started = std::time::Instant::now();
    let _profile_lock = match adhoc {
        None => Some(profiles.lock(&name).context(|| format!("cannot lock profile `{name}`"))?),
        Some(_) => None,
    };
    let previous = current.as_ref().map(|g| g.path.as_path());
    let generation = store.add_generation(&name, &inputs, &manifest.to_text(), previous).map_err(|e| {
        let hint = matches!(e, envctl_store::Error::Collision { .. }).then(|| {
            format!("give one of them priority in `{}`:\n\n    [priority]\n    PACKAGE = 10", file.display())
        });
        let mut f = Failure::new(format!("cannot build a generation of `{name}`"), e);
        if let Some(h) = hint {
            f = f.hint(h);
        }
        f
    })?;
    tracing::info!(path = %generation.path.display(), elapsed = ?started.elapsed(), "built the generation");
    if adhoc.is_some() {
        let report = report(&name, "built", None, &generation.path, serde_json::json!({}));
        return Ok(Applied { name, generation: generation.path, report });
    }
    // Re-read under the profile lock: another apply may have switched meanwhile.
    let current = profiles.current(&name).context(|| format!("cannot read profile `{name}`"))?;
    if current.as_ref().is_some_and(|g| g.path == generation.path) {
        let number = current.as_ref().map_or(0, |g| g.number);
        printer::status(&format!("`{name}` is up to date (generation {number})"));
        let report = report(&name, "up-to-date", Some(number), &generation.path, serde_json::json!({}));
        return Ok(Applied { name, generation: generation.path, report });
    }
    let number = profiles
        .add_generation(&name, &generation.path)
        .context(|| format!("cannot switch profile `{name}`"))?;
    let changes = manifest::diff(current_manifest.as_ref(), &manifest);
    let caches = match from_caches {
        0 => String::new(),
        n if n == fetched => ", all from caches".to_owned(),
        n => format!(", {n} of them from caches"),
    };
    printer::status(&format!(
        "`{name}` is now generation {number} ({}, {fetched} fetched{caches})",
        printer::count(lock.packages.len(), "package")
    ));
    for c in &changes {
        printer::status(&format!("  {c}"));
    }
    let extra =
        serde_json::json!({ "packages": lock.packages.len(), "fetched": fetched, "changes": changes });
    let report = report(&name, "switched", Some(number), &generation.path, extra);
    Ok(Applied { name, generation: generation.path, report })
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

fn dry_run_plan(
    ctx: &Context,
    lock: &LockFile,
    current: Option<&Manifest>,
    name: &str,
    settings: &Settings,
    json: bool,
) -> Result<Applied> {
    let store_dir = settings.store_dir();
    let store = if store_dir.join(".envctl/db.sqlite").exists() {
        Store::open(&store_dir, settings.store_options()).ok()
    } else {
        None
    };
    let mut to_fetch = Vec::new();
    for p in &lock.packages {
        let have =
            store.as_ref().zip(install_request(p)).and_then(|(s, r)| s.find(&r).ok().flatten()).is_some();
        if !have {
            to_fetch.push(p);
        }
    }
    printer::info(&format!("plan for `{name}` (dry run: nothing is fetched, written or switched)"));
    if to_fetch.is_empty() {
        printer::info("  nothing to fetch: every package is in the store");
    }
    let options = settings.store_options();
    let mut unconfigured = std::collections::BTreeSet::new();
    for p in &to_fetch {
        if let Some(name) = envctl_store::mirror_name(&p.source.url)
            && options.fetch.mirrors.get(name).is_none_or(|bases| bases.is_empty())
        {
            unconfigured.insert(name.to_owned());
        }
    }
    for name in &unconfigured {
        printer::info(&format!(
            "  mirror `{name}` is not configured: its packages cannot be fetched; define it in {}:\n\n      [mirrors]\n      {name} = [\"https://…\"]\n",
            settings.config_file()
        ));
    }
    // What a binary cache would give, checked as far as can be without fetching it.
    let caches = envctl_store::Caches::new(&options);
    let offers: Vec<Option<(String, u64)>> =
        to_fetch.iter().map(|p| install_request(p).and_then(|r| caches.offer(&r))).collect();
    let upstream: Vec<&LockedPackage> =
        to_fetch.iter().zip(&offers).filter(|(_, o)| o.is_none()).map(|(p, _)| *p).collect();
    let mut upstream_sizes = download_sizes(&upstream, options.fetch, options.jobs).into_iter();
    let sizes: Vec<Option<u64>> = offers
        .iter()
        .map(|o| match o {
            Some((_, size)) => Some(*size),
            None => upstream_sizes.next().flatten(),
        })
        .collect();
    let mut fetch = Vec::new();
    for ((p, size), offer) in to_fetch.iter().zip(&sizes).zip(&offers) {
        let from = offer.as_ref().map_or(p.source.url.as_str(), |(cache, _)| cache.as_str());
        fetch.push(serde_json::json!({
            "name": p.name, "version": p.version, "url": from, "bytes": size, "cache": offer.is_some(),
        }));
        if !json {
            let size = size.map_or_else(|| "size unknown".to_owned(), printer::bytes);
            let from = match offer {
                Some((cache, _)) => format!("from cache {cache}"),
                None => p.source.url.clone(),
            };
            printer::data(&format!("fetch {} {} {from} ({size})", p.name, p.version));
        }
    }
    if !to_fetch.is_empty() {
        let known: u64 = sizes.iter().flatten().sum();
        let unknown = sizes.iter().filter(|s| s.is_none()).count();
        let rest = if unknown > 0 { format!(" (and {unknown} of unknown size)") } else { String::new() };
        printer::info(&format!(
            "  {} to fetch, {} to download{rest}",
            printer::count(to_fetch.len(), "package"),
            printer::bytes(known)
        ));
    }
    let planned = build_manifest(ctx, lock, name);
    let changes = manifest::diff(current, &planned);
    if changes.is_empty() && current.is_some() {
        printer::info("  no package changes against the current generation");
    }
    if !json {
        for c in &changes {
            printer::change(&format!("change {c}"));
        }
    }
    let extra = serde_json::json!({ "packages": lock.packages.len(), "fetch": fetch, "changes": changes });
    let report = report(name, "planned", None, Path::new(""), extra);
    Ok(Applied { name: name.to_owned(), generation: Default::default(), report })
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
    store: &Store,
    lock: &LockFile,
    options: &envctl_store::StoreOptions,
    file: &Path,
) -> Result<()> {
    let fetcher = Fetcher::new(options.fetch.clone());
    let mut lacking = Vec::new();
    for p in &lock.packages {
        let Some(request) = install_request(p) else { continue };
        let in_store = store.find(&request).ok().flatten().is_some();
        // `options` is offline: only caches on a local directory are asked.
        if !in_store && fetcher.locations(&p.source.url).is_err() && store.caches().offer(&request).is_none()
        {
            lacking.push(format!("{} {} ({})", p.name, p.version, p.source.url));
        }
    }
    if lacking.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        format!("cannot apply `{}` offline", file.display()),
        format!("not in the store and without a local source: {}", lacking.join("; ")),
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
    let mut sizes = vec![None; packages.len()];
    for (chunk, out) in packages.chunks(jobs.max(1)).zip(sizes.chunks_mut(jobs.max(1))) {
        std::thread::scope(|scope| {
            for (p, slot) in chunk.iter().zip(out.iter_mut()) {
                let fetcher = &fetcher;
                scope.spawn(move || *slot = fetcher.size(&p.source.url));
            }
        });
    }
    sizes
}
