//! `envctl lock`, `envctl why`, `envctl graph`: a profile file resolved against the recipes and
//! this machine's facts.

use std::collections::BTreeMap;
use std::path::Path;

use envctl_recipes::{LockFile, PackageName};
use envctl_resolver::Solution;

use super::Status;
use crate::args::{Cli, GraphArgs, LockArgs, WhyArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::resolution::{Context, build_lock, load_lock, versions_of};
use crate::settings::Settings;

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
                let mut f = Failure::new(
                    format!("cannot update `{name}`"),
                    format!("`{name}` is neither in `{}` nor in its lock", args.file.display()),
                );
                let known = ctx.profile.packages.keys().chain(preferred.keys()).map(|n| n.as_str());
                if let Some(n) = crate::error::nearest(name, known) {
                    f = f.hint(format!("did you mean `{n}`?"));
                }
                return Err(f.hint("`envctl lock FILE --update` with no name re-resolves everything"));
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

/// `envctl outdated [FILE]`: each locked package that a fresh resolution (no version kept, as
/// `lock --update` does) would move, and the newest version any recipe has. Writes nothing.
pub fn outdated(args: &crate::args::OutdatedArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let file = super::edit::profile_file(args.file.as_deref())?;
    let ctx = Context::load(&file, settings, cli)?;
    let lock_path = ctx.profile.lock_path();
    let Some(lock) = load_lock(&lock_path)? else {
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
    let width = rows.iter().map(|r| r["name"].as_str().unwrap_or("").len()).max().unwrap_or(0).max(7);
    printer::data(&format!("{:<width$}  {:<12}  {:<12}  {:<12}", "PACKAGE", "LOCKED", "ALLOWED", "NEWEST"));
    for r in &rows {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
        printer::data(&format!(
            "{:<width$}  {:<12}  {:<12}  {:<12}",
            text(&r["name"]),
            text(&r["locked"]),
            text(&r["allowed"]),
            text(&r["newest"])
        ));
    }
    printer::status(&format!("`envctl lock {} --update` moves each package to ALLOWED", file.display()));
    Ok(Status::Success)
}
