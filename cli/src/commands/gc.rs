//! `envctl gc`: remove store paths no generation, session or explicit root can reach.

use envctl_store::Store;

use super::Status;
use crate::args::{Cli, GcArgs};
use crate::error::{Result, StoreContext};
use crate::printer;
use crate::settings::Settings;

pub fn run(args: &GcArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    if let Some(age) = &args.delete_older_than {
        delete_older(age, args.dry_run, settings)?;
    }
    let dir = settings.store_dir();
    let report = match settings.daemon() {
        Some(daemon) => {
            let request = envctl_ops::daemon::protocol::Request::Gc { dry_run: args.dry_run };
            let (value, _) =
                envctl_ops::daemon::client::request(settings, &daemon, request).map_err(|(f, _)| f)?;
            serde_json::from_value(value)
                .map_err(|e| crate::error::Failure::new("the daemon's answer does not parse", e))?
        }
        None => {
            let store = Store::open_collector(&dir, settings.store_options())
                .context(|| format!("cannot open the store at `{}`", dir.display()))?;
            store.gc(&settings.home, args.dry_run).context(|| "garbage collection failed".into())?
        }
    };
    if !args.dry_run {
        // The files behind ad-hoc environments (`shell -p …`) are only inputs: a live session needs
        // its generation (kept by its root), not them, and the next `-p` writes them again.
        // Only files no `-p` has touched for ten minutes, so one being applied right now stays.
        if let Ok(entries) = std::fs::read_dir(settings.home.join("adhoc")) {
            for entry in entries.flatten() {
                let idle = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if idle.is_some_and(|d| d > std::time::Duration::from_secs(600)) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    if args.json {
        printer::json(&serde_json::json!({
            "dry_run": args.dry_run,
            "removed": report.removed.iter().map(|(n, s)| serde_json::json!({ "path": dir.join(n), "bytes": s })).collect::<Vec<_>>(),
            "bytes": report.bytes,
            "kept": report.kept,
            "stale_roots": report.stale_roots,
        }));
        return Ok(Status::Success);
    }
    // By what they are (`cuda-12.4.131`), not by hash, so one package's versions sit together.
    let mut removed: Vec<_> = report.removed.iter().collect();
    removed.sort_by(|(a, _), (b, _)| {
        let what = |n: &str| n.split_once('-').map_or(n, |(_, rest)| rest).to_owned();
        what(a).cmp(&what(b)).then(a.cmp(b))
    });
    for (name, size) in removed {
        printer::data(&format!("{}\t{}", dir.join(name).display(), printer::bytes(*size)));
    }
    printer::status(&format!(
        "{} {}, {}; {} kept alive by roots",
        if args.dry_run { "would remove" } else { "removed" },
        printer::count(report.removed.len(), "store path"),
        printer::bytes(report.bytes),
        report.kept
    ));
    Ok(Status::Success)
}

/// `--delete-older-than AGE`: every profile's generations older than AGE, never a current one, each
/// under its profile's lock (as `envctl generations P --older-than AGE` does).
fn delete_older(age: &str, dry_run: bool, settings: &Settings) -> Result<()> {
    let secs = super::profiles::parse_age(age)?;
    if let Some(daemon) = settings.daemon() {
        // A shared store: each of this user's own profiles, through the daemon.
        let me = settings.daemon_user().unwrap_or_default();
        let own = envctl_ops::profiles::ProfileRef::parse("x", Some(&me))?.profiles(&settings.home);
        for name in own.names().context(|| "cannot list profiles".into())? {
            let profile = envctl_ops::profiles::ProfileRef::parse(&name, Some(&me))?;
            let what = envctl_ops::generations::Deletion {
                older_than_secs: Some(secs),
                dry_run,
                ..Default::default()
            };
            let request = envctl_ops::daemon::protocol::Request::DeleteGenerations { profile, what };
            let (value, _) =
                envctl_ops::daemon::client::request(settings, &daemon, request).map_err(|(f, _)| f)?;
            let doomed: Vec<u32> = serde_json::from_value(value["deleted"].clone()).unwrap_or_default();
            if !doomed.is_empty() {
                let list = doomed.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
                let verb = if dry_run { "would delete" } else { "deleted" };
                printer::status(&format!("{verb} generations {list} of `{name}`"));
            }
        }
        return Ok(());
    }
    let profiles = envctl_store::Profiles::open(&settings.home)
        .context(|| "cannot open the profiles directory".into())?;
    for name in profiles.names().context(|| "cannot list profiles".into())? {
        let lock = profiles.lock(&name).context(|| format!("cannot lock profile `{name}`"))?;
        let gens = profiles.generations(&name).context(|| format!("cannot read profile `{name}`"))?;
        let doomed = super::profiles::older_than(&gens, secs);
        if doomed.is_empty() {
            continue;
        }
        let list = doomed.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        if dry_run {
            printer::status(&format!("would delete generations {list} of `{name}`"));
        } else {
            profiles
                .delete(&lock, &name, &doomed)
                .context(|| format!("cannot delete generations of `{name}`"))?;
            printer::status(&format!("deleted generations {list} of `{name}`"));
        }
    }
    if dry_run {
        printer::status(
            "(dry run: the store paths below are what a gc would remove now, before those deletions)",
        );
    }
    Ok(())
}
