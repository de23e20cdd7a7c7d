//! `envctl apply FILE`: plan (envctl-ops), then render the plan (`--dry-run`) or execute it and
//! say what happened.

use std::path::{Path, PathBuf};

use envctl_ops::apply::{self, Action, ApplyOptions, Outcome, Plan};

use super::Status;
use crate::args::{ApplyArgs, Cli};
use crate::error::Result;
use crate::printer;
use crate::reporter::Bars;
use crate::settings::Settings;

/// The result of applying a profile file, as the commands that apply one need it.
pub struct Applied {
    pub name: String,
    pub generation: PathBuf,
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
        profile: args.profile.clone(),
        team: args.team.clone(),
        dry_run: args.dry_run,
        locked: args.locked,
        frozen: args.frozen,
        offline: args.offline,
        adhoc: None,
        keep_rollback: false,
    };
    let applied = if args.dry_run {
        let plan = plan(&args.file, &options, settings)?;
        render_plan(&plan, settings, args.json)
    } else {
        apply(&args.file, &options, settings, cli)?
    };
    if args.json {
        printer::json(&applied.report);
    }
    Ok(Status::Success)
}

/// Plans, printing the plan's warnings.
fn plan(file: &Path, options: &ApplyOptions, settings: &Settings) -> Result<Plan> {
    let plan = apply::plan(file, options, settings)?;
    for w in &plan.warnings {
        printer::info(&format!("warning: {w}"));
    }
    Ok(plan)
}

/// Applies a profile file (plans and executes) and says what happened; `shell`, `run`, `add` and
/// `remove` apply through it too.
pub fn apply(file: &Path, options: &ApplyOptions, settings: &Settings, cli: &Cli) -> Result<Applied> {
    let plan = plan(file, options, settings)?;
    let (file_path, lock_path, environment) =
        (plan.file.clone(), plan.lock_path.clone(), plan.environment.clone());
    let write = |lock: &envctl_recipes::LockFile| {
        apply::write_lock_file(lock, &file_path, &lock_path, environment.as_deref())
    };
    let applied = match settings.daemon() {
        // A shared store: the daemon builds and switches; this process owns the lock file.
        Some(daemon) if plan.action == Action::Build => through_daemon(plan, settings, &daemon, &write)?,
        _ => apply::execute(plan, settings, &Bars::for_cli(cli), &write)?,
    };
    let name = applied.name.clone();
    let (number, path) = (applied.number, applied.generation.clone());
    let report = match applied.outcome {
        Outcome::UpToDate => {
            printer::status(&format!("`{name}` is up to date (generation {})", number.unwrap_or(0)));
            report(&name, "up-to-date", number, &path, serde_json::json!({}))
        }
        Outcome::Unchanged => {
            printer::status(&format!(
                "`{name}`: no package changes; it stays at generation {}",
                number.unwrap_or(0)
            ));
            report(&name, "unchanged", number, &path, serde_json::json!({}))
        }
        Outcome::Built => report(&name, "built", None, &path, serde_json::json!({})),
        Outcome::Switched => {
            let caches = match applied.from_caches {
                0 => String::new(),
                n if n == applied.fetched => ", all from caches".to_owned(),
                n => format!(", {n} of them from caches"),
            };
            printer::status(&format!(
                "`{name}` is now generation {} ({}, {} fetched{caches})",
                number.unwrap_or(0),
                printer::count(applied.packages, "package"),
                applied.fetched
            ));
            for c in &applied.changes {
                printer::status(&format!("  {c}"));
            }
            let extra = serde_json::json!({
                "packages": applied.packages, "fetched": applied.fetched, "changes": applied.changes,
            });
            report(&name, "switched", number, &path, extra)
        }
    };
    Ok(Applied { name, generation: path, report })
}

/// `apply --dry-run`: the plan, printed (or, with `--json`, only returned in the report).
fn render_plan(plan: &Plan, settings: &Settings, json: bool) -> Applied {
    let name = &plan.name;
    if plan.action == Action::UpToDate {
        let (number, path) = plan.current.as_ref().map(|g| (g.number, g.path.clone())).unwrap_or_default();
        printer::status(&format!("`{name}` is up to date (generation {number})"));
        let report = report(name, "up-to-date", Some(number), &path, serde_json::json!({}));
        return Applied { name: name.clone(), generation: path, report };
    }
    printer::info(&format!("plan for `{name}` (dry run: nothing is fetched, written or switched)"));
    if plan.fetch.is_empty() {
        printer::info("  nothing to fetch: every package is in the store");
    }
    for mirror in &plan.unconfigured_mirrors {
        printer::info(&format!(
            "  mirror `{mirror}` is not configured: its packages cannot be fetched; define it in {}:\n\n      [mirrors]\n      {mirror} = [\"https://…\"]\n",
            settings.config_file()
        ));
    }
    if !json {
        for f in &plan.fetch {
            let size = f.bytes.map_or_else(|| "size unknown".to_owned(), printer::bytes);
            let from = if f.cache { format!("from cache {}", f.url) } else { f.url.clone() };
            printer::data(&format!("fetch {} {} {from} ({size})", f.name, f.version));
        }
    }
    if !plan.fetch.is_empty() {
        let known: u64 = plan.fetch.iter().filter_map(|f| f.bytes).sum();
        let unknown = plan.fetch.iter().filter(|f| f.bytes.is_none()).count();
        let rest = if unknown > 0 { format!(" (and {unknown} of unknown size)") } else { String::new() };
        printer::info(&format!(
            "  {} to fetch, {} to download{rest}",
            printer::count(plan.fetch.len(), "package"),
            printer::bytes(known)
        ));
    }
    if plan.changes.is_empty() && plan.current.is_some() {
        printer::info("  no package changes against the current generation");
    }
    if !json {
        for c in &plan.changes {
            printer::change(&format!("change {c}"));
        }
    }
    let extra = serde_json::json!({
        "packages": plan.lock.packages.len(), "fetch": plan.fetch, "changes": plan.changes,
    });
    let report = report(name, "planned", None, Path::new(""), extra);
    Applied { name: name.clone(), generation: Default::default(), report }
}

/// Sends a plan to the daemon of a shared store, writes the lock it returns, and returns what it
/// did.
fn through_daemon(
    plan: Plan,
    settings: &Settings,
    daemon: &envctl_ops::settings::DaemonHome,
    write: &dyn Fn(&envctl_recipes::LockFile) -> Result<()>,
) -> Result<apply::Applied> {
    use envctl_ops::daemon::{client, protocol};
    printer::info(&format!("applying `{}` through envctl's daemon", plan.name));
    let request = protocol::ApplyRequest {
        profile: plan.profile.clone(),
        file: plan.file.clone(),
        lock_path: plan.lock_path.clone(),
        lock: plan.lock.clone(),
        old_lock: plan.old_lock.clone(),
        manifest: plan.manifest.clone(),
        priorities: plan.priorities.clone(),
        offline: plan.options.offline,
        adhoc: plan.options.adhoc.clone(),
    };
    let old = plan.old_lock.clone();
    let write_if_new = |lock: Option<envctl_recipes::LockFile>| -> Result<()> {
        match lock {
            Some(lock) if old.as_ref() != Some(&lock) => write(&lock),
            _ => Ok(()),
        }
    };
    match client::request(settings, daemon, protocol::Request::Apply(Box::new(request))) {
        Ok((value, lock)) => {
            write_if_new(lock)?;
            serde_json::from_value(value)
                .map_err(|e| crate::error::Failure::new("the daemon's answer does not parse", e))
        }
        Err((failure, lock)) => {
            write_if_new(lock.map(|l| *l))?;
            Err(failure)
        }
    }
}
