//! `envctl lock`, `envctl why`, `envctl graph`: a profile file resolved against the recipes and
//! this machine's facts.

use std::collections::BTreeMap;
use std::path::Path;

use envctl_recipes::{
    LockFile, LockedPackage, LockedSource, PackageName, ProfileFile, Repository, SystemFacts, Version,
};
use envctl_resolver::{Request, Solution, Task, solve};

use super::Status;
use crate::args::{Cli, GraphArgs, LockArgs, WhyArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::settings::Settings;

/// A profile file with everything needed to resolve it.
pub struct Context {
    pub profile: ProfileFile,
    pub facts: SystemFacts,
    pub repo: Repository,
    /// What explanations call an ad-hoc request instead of its file (`-p tensorflow=2.15`); each
    /// package is then named as `-p NAME=REQ` instead of by file and line.
    pub label: Option<String>,
}

impl Context {
    pub fn load(file: &Path, settings: &Settings, cli: &Cli) -> Result<Context> {
        let profile = super::apply::load_profile(file)?;
        let facts = crate::system::facts(Some(&profile.system), cli.system.as_deref())?;
        let repo = settings.repository(cli)?;
        Ok(Context { profile, facts, repo, label: None })
    }

    pub fn from_parts(profile: ProfileFile, facts: SystemFacts, repo: Repository) -> Context {
        Context { profile, facts, repo, label: None }
    }

    pub fn platform(&self) -> String {
        self.facts.platform()
    }

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
        solve(&task).map_err(|e| {
            let hints = e.hints().to_vec();
            let mut f = Failure::new(format!("cannot resolve `{file}`"), e);
            for h in hints {
                f = f.hint(h);
            }
            f
        })
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

    /// The lock beside the profile file, if it answers the current request.
    pub fn fresh_lock(&self) -> Result<Option<LockFile>> {
        let lock = load_lock(&self.profile.lock_path())?;
        Ok(lock.filter(|l| l.request == self.profile.request_hash(&self.platform())))
    }
}

fn load_lock(path: &Path) -> Result<Option<LockFile>> {
    LockFile::load(path).map_err(|e| {
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

pub fn versions_of(lock: &LockFile) -> BTreeMap<PackageName, Version> {
    parse_versions(lock.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())))
}

/// `(name, version)` pairs as the solver's preferences; pairs that do not parse are left out.
pub fn parse_versions<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> BTreeMap<PackageName, Version> {
    pairs.filter_map(|(n, v)| Some((PackageName::parse(n).ok()?, Version::parse(v).ok()?))).collect()
}

pub fn lock(args: &LockArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let ctx = Context::load(&args.file, settings, cli)?;
    let platform = ctx.platform();
    let request = ctx.profile.request_hash(&platform);
    let lock_path = ctx.profile.lock_path();
    let old = load_lock(&lock_path)?;
    if let (Some(old), None) = (&old, &args.update)
        && old.request == request
    {
        printer::status(&format!("`{}` is up to date", lock_path.display()));
        for need in ctx.unmet_by(old) {
            printer::info(&format!("warning: it does not fit this machine: {need}"));
        }
        return Ok(Status::Success);
    }
    let mut preferred = old.as_ref().map(versions_of).unwrap_or_default();
    match args.update.as_deref() {
        None => {} // a changed request keeps every version that still fits
        Some("") => preferred.clear(),
        Some(name) => {
            let known = ctx.profile.packages.keys().any(|n| n.as_str() == name)
                || preferred.keys().any(|n| n.as_str() == name);
            if !known {
                return Err(Failure::new(
                    format!("cannot update `{name}`"),
                    format!("`{name}` is neither in `{}` nor in its lock", args.file.display()),
                )
                .hint("`envctl lock FILE --update` with no name re-resolves everything"));
            }
            preferred.retain(|n, _| n.as_str() != name);
        }
    }
    let solution = ctx.solve(preferred)?;
    let new = build_lock(&solution, request, &platform, old.as_ref(), settings)?;
    let file_name = args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    new.write(&lock_path, &file_name).map_err(|e| Failure::new("cannot write the lock file", e))?;
    report_changes(old.as_ref(), &new);
    printer::status(&format!(
        "wrote `{}` ({})",
        lock_path.display(),
        printer::count(new.packages.len(), "package")
    ));
    Ok(Status::Success)
}

pub fn build_lock(
    solution: &Solution,
    request: String,
    platform: &str,
    old: Option<&LockFile>,
    settings: &Settings,
) -> Result<LockFile> {
    // Store paths are recorded when the store already has them; nothing is fetched here.
    let store_dir = settings.store_dir();
    let store = if store_dir.join(".envctl/db.sqlite").exists() {
        envctl_store::Store::open(&store_dir, settings.store_options()).ok()
    } else {
        None
    };
    let mut packages = Vec::new();
    for (name, recipe) in &solution.packages {
        let source = recipe
            .source_for(platform)
            .expect("the solver only picks recipes with a source for the platform");
        let mut locked = LockedPackage {
            name: name.to_string(),
            version: recipe.version.to_string(),
            dependencies: solution.graph.dependencies(name).iter().map(|d| d.to_string()).collect(),
            store_path: None,
            tree_hash: None,
            source: LockedSource::from(source),
        };
        if let Some(prev) = old.and_then(|o| o.get(name.as_str()))
            && prev.version == locked.version
            && prev.source == locked.source
        {
            locked.store_path = prev.store_path.clone();
            locked.tree_hash = prev.tree_hash.clone();
        }
        if locked.store_path.is_none()
            && let Some(store) = &store
            && let Some(request) = super::install_request(&locked)
            && let Ok(Some(found)) = store.find(&request)
        {
            locked.store_path = Some(found.record.name.clone());
            locked.tree_hash = Some(found.record.tree_hash.clone());
        }
        packages.push(locked);
    }
    Ok(LockFile { version: envctl_recipes::LOCK_VERSION, request, platform: platform.to_owned(), packages })
}

fn report_changes(old: Option<&LockFile>, new: &LockFile) {
    let before: BTreeMap<&str, &str> = old
        .map(|o| o.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect())
        .unwrap_or_default();
    let after: BTreeMap<&str, &str> =
        new.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
    for (name, v) in &after {
        match before.get(name) {
            None => printer::status(&format!("  + {name} {v}")),
            Some(b) if b != v => printer::status(&format!("  ~ {name} {b} -> {v}")),
            _ => {}
        }
    }
    for (name, v) in &before {
        if !after.contains_key(name) {
            printer::status(&format!("  - {name} {v}"));
        }
    }
}

/// Resolves the profile file, pinned to its lock when the lock is up to date.
fn resolved(file: &Path, settings: &Settings, cli: &Cli) -> Result<(Context, Solution)> {
    let ctx = Context::load(file, settings, cli)?;
    let preferred = ctx.fresh_lock()?.as_ref().map(versions_of).unwrap_or_default();
    let solution = ctx.solve(preferred)?;
    Ok((ctx, solution))
}

pub fn why(args: &WhyArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let (ctx, solution) = resolved(&args.file, settings, cli)?;
    let target = PackageName::parse(&args.name)
        .map_err(|e| Failure::new(format!("cannot explain `{}`", args.name), e))?;
    let Some(chain) = solution.graph.why(&target) else {
        return Err(Failure::new(
            format!("cannot explain `{}`", args.name),
            format!("`{}` is not part of the resolution of `{}`", args.name, args.file.display()),
        )
        .hint(format!("`envctl graph {}` lists everything that is", args.file.display())));
    };
    let root = &ctx.profile.packages[&chain[0]];
    let asked = format!("{}:{}: {}", args.file.display(), root.line, root.text);
    if args.json {
        let steps: Vec<_> = chain
            .iter()
            .map(|n| serde_json::json!({ "name": n.as_str(), "version": solution.packages[n].version.to_string() }))
            .collect();
        printer::json(&serde_json::json!({ "chain": steps, "requested_at": asked }));
    } else {
        printer::data(&format!(
            "{} {}    (asked for at {asked})",
            chain[0], solution.packages[&chain[0]].version
        ));
        for (depth, n) in chain.iter().enumerate().skip(1) {
            let req = &solution.packages[&chain[depth - 1]].dependencies[n];
            printer::data(&format!(
                "{}└─ {} {}    (needs {n} {req})",
                "   ".repeat(depth - 1),
                n,
                solution.packages[n].version
            ));
        }
    }
    Ok(Status::Success)
}

pub fn graph(args: &GraphArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let (_ctx, solution) = resolved(&args.file, settings, cli)?;
    if args.dot {
        for line in solution.graph.to_dot(&solution.packages).lines() {
            printer::data(line);
        }
    } else if args.json {
        let nodes: Vec<_> = solution
            .graph
            .install_order()
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.as_str(),
                    "version": solution.packages[n].version.to_string(),
                    "requested": solution.graph.roots().contains(n),
                    "dependencies": solution.graph.dependencies(n).iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        printer::json(&nodes);
    } else {
        for n in solution.graph.install_order() {
            let deps = solution.graph.dependencies(&n);
            let arrow = if deps.is_empty() {
                String::new()
            } else {
                format!(" -> {}", deps.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", "))
            };
            printer::data(&format!("{} {}{arrow}", n, solution.packages[&n].version));
        }
    }
    Ok(Status::Success)
}
