//! `envctl gc`: remove store paths no generation, session or explicit root can reach.

use envctl_store::Store;

use super::Status;
use crate::args::{Cli, GcArgs};
use crate::error::{Result, StoreContext};
use crate::printer;
use crate::settings::Settings;

pub fn run(args: &GcArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let dir = settings.store_dir();
    let store = Store::open(&dir, settings.store_options())
        .context(|| format!("cannot open the store at `{}`", dir.display()))?;
    let report = store.gc(&settings.home, args.dry_run).context(|| "garbage collection failed".into())?;
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
    for (name, size) in &report.removed {
        printer::data(&format!("{}\t{}", dir.join(name).display(), printer::bytes(*size)));
    }
    printer::status(&format!(
        "{} {} store paths, {}; {} kept alive by roots",
        if args.dry_run { "would remove" } else { "removed" },
        report.removed.len(),
        printer::bytes(report.bytes),
        report.kept
    ));
    Ok(Status::Success)
}
