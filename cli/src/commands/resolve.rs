//! `envctl lock`, `envctl why`, `envctl graph`: a profile file resolved against the recipes and
//! this machine's facts.

use std::path::{Path, PathBuf};

pub use envctl_ops::lock::Update;
use envctl_ops::lock::{Locked, Outcome};
use envctl_recipes::{LockFile, PackageName};

use super::Status;
use crate::args::{GraphArgs, LockArgs, WhyArgs};
use crate::error::{Failure, Result};
use crate::manifest::Change;
use crate::printer;
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
/// the file defines (`ops::lock::environments`), each rendered as it is written.
pub fn relock_environments(file: &Path, update: &Update, settings: &Settings, json: bool) -> Result<Status> {
    let each = envctl_ops::lock::environments(file, update, settings)?;
    // Of several environments, each updates the names it has (`environments` refused the rest).
    let skip_unknown = each.len() > 1;
    for own in &each {
        let mut warnings = Vec::new();
        let locked = envctl_ops::lock::lock(file, update, own, skip_unknown, &mut warnings);
        for w in &warnings {
            printer::info(&format!("warning: {w}"));
        }
        render(&locked?, json);
    }
    Ok(Status::Success)
}

/// Says what locking one environment did.
fn render(locked: &Locked, json: bool) {
    let path = locked.path.display();
    let environment =
        locked.environment.as_ref().map(|e| format!(", environment `{e}`,")).unwrap_or_default();
    match &locked.outcome {
        Outcome::UpToDate { unmet } => {
            printer::status(&format!("`{path}`{environment} is up to date"));
            for need in unmet {
                printer::info(&format!("warning: it does not fit this machine: {need}"));
            }
            if json {
                printer::json(&lock_report(&locked.path, "up-to-date", &locked.lock, &[], unmet));
            }
        }
        Outcome::Written { changes } => {
            for c in changes {
                printer::status(&format!("  {c}"));
            }
            printer::status(&format!(
                "wrote `{path}`{environment} ({})",
                printer::count(locked.lock.packages.len(), "package")
            ));
            if json {
                printer::json(&lock_report(&locked.path, "written", &locked.lock, changes, &[]));
            }
        }
    }
}

/// `lock --json`'s object.
fn lock_report(
    path: &Path,
    outcome: &str,
    lock: &LockFile,
    changes: &[Change],
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

pub fn why(args: &WhyArgs, settings: &Settings) -> Result<Status> {
    let v = envctl_ops::graph::view(&args.target, settings)?;
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
    let v = envctl_ops::graph::view(&args.target, settings)?;
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
    let (lock_path, outdated) = envctl_ops::lock::outdated(&file, settings)?;
    let rows: Vec<_> = outdated
        .iter()
        .map(|o| serde_json::json!({"name": o.name, "locked": o.locked, "allowed": o.allowed, "newest": o.newest}))
        .collect();
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
