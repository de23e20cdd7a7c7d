//! `envctl lock`, `envctl why`, `envctl graph`: a profile file resolved against the recipes and
//! this machine's facts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use envctl_recipes::{LockFile, PackageName};
use envctl_resolver::DepGraph;

use super::Status;
use crate::args::{GraphArgs, LockArgs, WhyArgs};
use crate::error::{Failure, Result, StoreContext};
use crate::manifest::{Change, Manifest};
use crate::printer;
use crate::resolution::{Context, build_lock, load_lock, versions_of};
use crate::settings::Settings;

pub fn lock(args: &LockArgs, settings: &Settings) -> Result<Status> {
    // `envctl lock --update FILE`: the optional NAME of `--update` took the file.
    let (file, update) = match (&args.file, args.update.as_deref()) {
        (Some(file), None) => (file.clone(), Update::Nothing),
        (Some(file), Some("")) => (file.clone(), Update::Everything),
        (Some(file), Some(name)) => (file.clone(), Update::Packages(vec![name.to_owned()])),
        (None, Some(v)) if v.ends_with(".toml") || Path::new(v).is_file() => {
            (PathBuf::from(v), Update::Everything)
        }
        (None, update) => (
            super::edit::profile_file(None)?,
            match update {
                None => Update::Nothing,
                Some("") => Update::Everything,
                Some(name) => Update::Packages(vec![name.to_owned()]),
            },
        ),
    };
    relock_environments(&file, &update, settings, args.json)
}

/// Locks `file`: the environment `-e` names, else the default one and every named environment
/// the file defines, each in its part of the one lock file (as `pixi lock` does). `--update NAME`
/// then updates NAME wherever an environment has it.
pub fn relock_environments(file: &Path, update: &Update, settings: &Settings, json: bool) -> Result<Status> {
    let default = crate::resolution::load_profile(file, settings)?;
    if settings.invocation.environment.is_some() || default.environments.is_empty() {
        return relock(file, update, settings, json, false);
    }
    let mut each = vec![(None, default.clone())];
    for env in &default.environments {
        let invocation =
            envctl_ops::Invocation { environment: Some(env.clone()), ..settings.invocation.clone() };
        let settings = Settings::load(&invocation)?;
        let profile = crate::resolution::load_profile(file, &settings)?;
        each.push((Some(settings), profile));
    }
    if let Update::Packages(names) = update {
        for name in names {
            let mut known = false;
            for (_, profile) in &each {
                let lock = load_lock(profile)?;
                known |= profile.packages.keys().any(|n| n.as_str() == name)
                    || lock.is_some_and(|l| l.get(name).is_some());
            }
            if !known {
                return Err(Failure::new(
                    format!("cannot update `{name}`"),
                    format!(
                        "no environment of `{}` has `{name}`, in the file or in its lock",
                        file.display()
                    ),
                )
                .hint("`envctl update` with no name re-resolves everything"));
            }
        }
    }
    let mut status = Status::Success;
    for (own, _) in &each {
        status = relock(file, update, own.as_ref().unwrap_or(settings), json, true)?;
    }
    Ok(status)
}

/// How messages name the part of a lock file an environment has: nothing for the default one.
fn environment_of(profile: &envctl_recipes::ProfileFile) -> String {
    profile.environment.as_ref().map(|e| format!(", environment `{e}`,")).unwrap_or_default()
}

/// What a lock re-resolves.
pub enum Update {
    /// Nothing the profile file did not change.
    Nothing,
    /// Every package: the newest that fits.
    Everything,
    /// These packages (and what must move with them).
    Packages(Vec<String>),
}

/// Locks `file` (the environment the settings name), re-resolving what `update` says; writes the
/// lock beside it. With `skip_unknown`, packages to update that this environment lacks are left
/// out instead of refused (another environment has them).
pub fn relock(
    file: &Path,
    update: &Update,
    settings: &Settings,
    json: bool,
    skip_unknown: bool,
) -> Result<Status> {
    let ctx = Context::load(file, settings)?;
    let platform = ctx.platform();
    let request = ctx.profile.request_hash(&platform);
    let lock_path = ctx.profile.lock_path();
    let old = load_lock(&ctx.profile)?;
    if let (Some(old), Update::Nothing) = (&old, update)
        && old.request == request
    {
        // The profile file did not change; the recipes may have (a publisher replaced an
        // artifact under the same version). That is not re-locked silently.
        if let Err(m) = ctx.lock_mismatch(old) {
            let file = file.display();
            let f = Failure::new(
                format!("`{}` no longer matches its recipes", lock_path.display()),
                m.to_string(),
            );
            return Err(match &m.changed {
                Some(name) => f.hint(format!(
                    "the recipe gives another artifact under the same version: if that is expected, `envctl lock {file} --update {name}` records it"
                )),
                None => f.hint(format!("`envctl lock {file} --update` re-resolves")),
            });
        }
        printer::status(&format!("`{}`{} is up to date", lock_path.display(), environment_of(&ctx.profile)));
        let unmet = ctx.unmet_by(old);
        for need in &unmet {
            printer::info(&format!("warning: it does not fit this machine: {need}"));
        }
        if json {
            printer::json(&lock_report(&lock_path, "up-to-date", old, Vec::new(), &unmet));
        }
        return Ok(Status::Success);
    }
    let mut preferred = old.as_ref().map(versions_of).unwrap_or_default();
    match update {
        Update::Nothing => {} // a changed request keeps every version that still fits
        Update::Everything => preferred.clear(),
        Update::Packages(names) => {
            for name in names {
                let known = ctx.profile.packages.keys().any(|n| n.as_str() == name)
                    || preferred.keys().any(|n| n.as_str() == name);
                if !known && !skip_unknown {
                    let mut f = Failure::new(
                        format!("cannot update `{name}`"),
                        format!("`{name}` is neither in `{}` nor in its lock", file.display()),
                    );
                    let known = ctx.profile.packages.keys().chain(preferred.keys()).map(|n| n.as_str());
                    if let Some(n) = crate::error::nearest(name, known) {
                        f = f.hint(format!("did you mean `{n}`?"));
                    }
                    return Err(f.hint("`envctl update` with no name re-resolves everything"));
                }
            }
            preferred.retain(|n, _| !names.iter().any(|name| n.as_str() == name));
        }
    }
    let solution = ctx.solve(preferred)?;
    // Updating a package also forgets the wheel it was built into: the next apply records its
    // own build (the way to accept a build that differs from the first one).
    let mut kept = old.clone();
    if let Some(kept) = &mut kept {
        for p in &mut kept.packages {
            match update {
                Update::Nothing => {}
                Update::Everything => p.built = None,
                Update::Packages(names) if names.contains(&p.name) => p.built = None,
                Update::Packages(_) => {}
            }
        }
    }
    let mut warnings = Vec::new();
    let settings = &settings.for_profile(&ctx.profile);
    let built = build_lock(&solution, request, &platform, kept.as_ref(), settings, true, &mut warnings).map(
        |mut lock| {
            // The repositories and indexes the file names travel with the lock.
            lock.recipes = ctx.profile.recipes.clone();
            lock.indexes = ctx.profile.indexes.clone();
            lock
        },
    );
    for w in &warnings {
        printer::info(&format!("warning: {w}"));
    }
    let new = built?;
    let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    new.write_for(&lock_path, &file_name, ctx.profile.environment.as_deref())
        .map_err(|e| Failure::new("cannot write the lock file", e))?;
    let changes = report_changes(old.as_ref(), &new);
    printer::status(&format!(
        "wrote `{}`{} ({})",
        lock_path.display(),
        environment_of(&ctx.profile),
        printer::count(new.packages.len(), "package")
    ));
    if json {
        printer::json(&lock_report(&lock_path, "written", &new, changes, &[]));
    }
    Ok(Status::Success)
}

/// `lock --json`'s object.
fn lock_report(
    path: &Path,
    outcome: &str,
    lock: &LockFile,
    changes: Vec<Change>,
    unmet: &[String],
) -> serde_json::Value {
    let packages: Vec<_> =
        lock.packages.iter().map(|p| serde_json::json!({ "name": p.name, "version": p.version })).collect();
    serde_json::json!({
        "lock": path.display().to_string(),
        "outcome": outcome,
        "packages": packages,
        "changes": changes,
        "does_not_fit": unmet,
    })
}

/// Prints what changed between two locks, and returns it.
fn report_changes(old: Option<&LockFile>, new: &LockFile) -> Vec<Change> {
    let mut changes = Vec::new();
    let before: BTreeMap<&str, &str> = old
        .map(|o| o.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect())
        .unwrap_or_default();
    let after: BTreeMap<&str, &str> =
        new.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
    for (name, v) in &after {
        let (name, version) = (name.to_string(), v.to_string());
        match before.get(name.as_str()) {
            None => changes.push(Change::Added { name, version }),
            Some(b) if b != v => changes.push(Change::Changed { name, old: b.to_string(), new: version }),
            _ => {}
        }
    }
    for (name, v) in &before {
        if !after.contains_key(name) {
            changes.push(Change::Removed { name: name.to_string(), version: v.to_string() });
        }
    }
    for c in &changes {
        printer::status(&format!("  {c}"));
    }
    changes
}

/// What `why` and `graph` look at: a profile file resolved now (pinned to its lock when that is
/// up to date), or an applied profile's current generation as it was built.
struct View {
    graph: DepGraph,
    versions: BTreeMap<PackageName, String>,
    /// The requirement behind each edge, when resolved from a file.
    needs: BTreeMap<(PackageName, PackageName), String>,
    /// Where each requested package was asked for.
    asked: BTreeMap<PackageName, String>,
    /// What was looked at, for messages.
    what: String,
}

/// A target names a file when it ends in `.toml` or is a file; otherwise a profile.
fn view(target: &str, settings: &Settings) -> Result<View> {
    let path = Path::new(target);
    if target.ends_with(".toml") || path.is_file() {
        let ctx = Context::load(path, settings)?;
        let preferred = ctx.fresh_lock()?.as_ref().map(versions_of).unwrap_or_default();
        let solution = ctx.solve(preferred)?;
        let versions = solution.packages.iter().map(|(n, r)| (n.clone(), r.version.to_string())).collect();
        let needs = solution
            .packages
            .iter()
            .flat_map(|(n, r)| {
                r.dependencies.iter().map(move |(d, q)| ((n.clone(), d.clone()), q.to_string()))
            })
            .collect();
        let asked = ctx
            .profile
            .packages
            .iter()
            .map(|(n, r)| (n.clone(), format!("asked for at {}:{}: {}", path.display(), r.line, r.text)))
            .collect();
        return Ok(View {
            graph: solution.graph,
            versions,
            needs,
            asked,
            what: format!("the resolution of `{}`", path.display()),
        });
    }
    let (profile, profiles) = settings.profile(target)?;
    let current =
        profiles.current(&profile.name).context(|| format!("cannot read profile `{target}`"))?.ok_or_else(
            || super::profiles::no_profile(&profiles, target, &format!("cannot read profile `{target}`")),
        )?;
    let m = Manifest::load(&current.path)
        .map_err(|e| Failure::new(format!("cannot read profile `{target}`"), e))?;
    if m.requested.is_empty() {
        return Err(Failure::new(
            format!("cannot show the dependencies of profile `{target}`"),
            format!("its generation {} was built before envctl recorded them", current.number),
        )
        .hint("apply its profile file again, or give the file instead of the name"));
    }
    let parse = |n: &str| PackageName::parse(n).ok();
    let edges = m
        .packages
        .iter()
        .filter_map(|p| Some((parse(&p.name)?, p.dependencies.iter().filter_map(|d| parse(d)).collect())));
    let roots: Vec<PackageName> = m.requested.iter().filter_map(|n| parse(n)).collect();
    let asked = roots
        .iter()
        .map(|n| (n.clone(), format!("asked for by profile `{target}`, generation {}", current.number)))
        .collect();
    Ok(View {
        graph: DepGraph::from_edges(edges, &roots),
        versions: m.packages.iter().filter_map(|p| Some((parse(&p.name)?, p.version.clone()))).collect(),
        needs: BTreeMap::new(),
        asked,
        what: format!("profile `{target}`'s current generation"),
    })
}

pub fn why(args: &WhyArgs, settings: &Settings) -> Result<Status> {
    let v = view(&args.target, settings)?;
    let target = PackageName::parse(&args.name)
        .map_err(|e| Failure::new(format!("cannot explain `{}`", args.name), e))?;
    let Some(chain) = v.graph.why(&target) else {
        return Err(Failure::new(
            format!("cannot explain `{}`", args.name),
            format!("`{}` is not part of {}", args.name, v.what),
        )
        .hint(format!("`envctl graph {}` lists everything that is", args.target)));
    };
    let asked = v.asked.get(&chain[0]).cloned().unwrap_or_default();
    if args.json {
        let steps: Vec<_> = chain
            .iter()
            .map(|n| serde_json::json!({ "name": n.as_str(), "version": v.versions[n] }))
            .collect();
        printer::json(&serde_json::json!({ "chain": steps, "requested_at": asked }));
    } else {
        printer::data(&format!("{} {}    ({asked})", chain[0], v.versions[&chain[0]]));
        for (depth, n) in chain.iter().enumerate().skip(1) {
            let needs = match v.needs.get(&(chain[depth - 1].clone(), n.clone())) {
                Some(req) => format!("needs {n} {req}"),
                None => format!("needs {n}"),
            };
            printer::data(&format!("{}└─ {} {}    ({needs})", "   ".repeat(depth - 1), n, v.versions[n]));
        }
    }
    Ok(Status::Success)
}

pub fn graph(args: &GraphArgs, settings: &Settings) -> Result<Status> {
    let v = view(&args.target, settings)?;
    if args.dot {
        for line in v.graph.to_dot(|n| v.versions[n].clone()).lines() {
            printer::data(line);
        }
    } else if args.json {
        let nodes: Vec<_> = v
            .graph
            .install_order()
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.as_str(),
                    "version": v.versions[n],
                    "requested": v.graph.roots().contains(n),
                    "dependencies": v.graph.dependencies(n).iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        printer::json(&nodes);
    } else {
        for n in v.graph.install_order() {
            let deps = v.graph.dependencies(&n);
            let arrow = if deps.is_empty() {
                String::new()
            } else {
                format!(" -> {}", deps.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", "))
            };
            printer::data(&format!("{} {}{arrow}", n, v.versions[&n]));
        }
    }
    Ok(Status::Success)
}

/// `envctl outdated [FILE]`: each locked package that a fresh resolution (no version kept, as
/// `lock --update` does) would move, and the newest version any recipe has. Writes nothing.
pub fn outdated(args: &crate::args::OutdatedArgs, settings: &Settings) -> Result<Status> {
    let file = super::edit::profile_file(args.file.as_deref())?;
    let ctx = Context::load(&file, settings)?;
    let lock_path = ctx.profile.lock_path();
    let Some(lock) = load_lock(&ctx.profile)? else {
        return Err(Failure::new(
            format!("cannot compare `{}`", file.display()),
            format!("`{}` does not exist", lock_path.display()),
        )
        .hint(format!("`envctl lock {}` writes it", file.display())));
    };
    let solution = ctx.solve(Default::default())?;
    let mut rows = Vec::new();
    for p in &lock.packages {
        let fresh =
            solution.packages.iter().find(|(n, _)| n.as_str() == p.name).map(|(_, r)| r.version.to_string());
        let newest = ctx.repo.versions(&p.name).and_then(|v| v.keys().next_back()).map(|v| v.to_string());
        if fresh.as_deref() != Some(p.version.as_str()) || newest.as_deref() != Some(p.version.as_str()) {
            rows.push(
                serde_json::json!({"name": p.name, "locked": p.version, "allowed": fresh, "newest": newest}),
            );
        }
    }
    if args.json {
        printer::json(&rows);
        return Ok(Status::Success);
    }
    if rows.is_empty() {
        printer::status(&format!(
            "every package of `{}` is at the newest version there is",
            lock_path.display()
        ));
        return Ok(Status::Success);
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let table: Vec<[String; 4]> = rows
        .iter()
        .map(|r| [text(&r["name"]), text(&r["locked"]), text(&r["allowed"]), text(&r["newest"])])
        .collect();
    let header = ["PACKAGE", "LOCKED", "ALLOWED", "NEWEST"].map(String::from);
    let widths: Vec<usize> =
        (0..4).map(|i| table.iter().chain([&header]).map(|row| row[i].len()).max().unwrap_or(0)).collect();
    for row in std::iter::once(&header).chain(&table) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        printer::data(&line);
    }
    printer::status(&format!("`envctl lock {} --update` moves each package to ALLOWED", file.display()));
    Ok(Status::Success)
}
