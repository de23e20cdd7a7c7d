//! `envctl store add|ls|info|verify|optimise`

use envctl_store::{Format, InstallRequest, Name, Sha256, Store, Unpack, Version};

use super::Status;
use crate::args::{AddArgs, Cli, StoreCommand};
use crate::error::{Result, StoreContext};
use crate::printer;
use crate::reporter::Bars;
use crate::settings::Settings;

pub fn run(cmd: &StoreCommand, settings: &Settings, cli: &Cli) -> Result<Status> {
    // A shared store: the daemon repairs and optimises (reading and verifying need it not).
    if let Some(daemon) = settings.daemon() {
        use envctl_ops::daemon::{client, protocol::Request};
        let request = match cmd {
            StoreCommand::Verify(a) if a.repair => Some(Request::Repair),
            StoreCommand::Optimise(_) => Some(Request::Optimise),
            _ => None,
        };
        if let Some(request) = request {
            let (value, _) = client::request(settings, &daemon, request).map_err(|(f, _)| f)?;
            match cmd {
                StoreCommand::Verify(a) if a.json => printer::json(&value),
                StoreCommand::Optimise(a) if a.json => printer::json(&value),
                StoreCommand::Verify(_) => printer::status(&format!(
                    "checked {} store paths; repaired {}",
                    value["checked"],
                    value["repaired"].as_array().map_or(0, Vec::len)
                )),
                _ => printer::status(&format!(
                    "replaced {} files by hard links, saved {}",
                    value["linked"],
                    printer::bytes(value["bytes_saved"].as_u64().unwrap_or(0))
                )),
            }
            return Ok(Status::Success);
        }
    }
    let dir = settings.store_dir();
    let store = Store::open(&dir, settings.store_options())
        .context(|| format!("cannot open the store at `{}`", dir.display()))?;
    match cmd {
        StoreCommand::Add(args) => {
            let caches = settings.caches(&settings.store_options().fetch);
            add(&envctl_store::Installer::new(&store, &caches), args, cli)
        }
        StoreCommand::Ls(a) => ls(&store, a.json),
        StoreCommand::Info(a) => info(&store, &a.path, a.json),
        StoreCommand::Verify(a) => verify(&store, a.repair, a.json, cli),
        StoreCommand::Optimise(a) => optimise(&store, a.json),
        StoreCommand::Export(_) | StoreCommand::Import(_) => unreachable!("dispatched to cache.rs"),
    }
}

fn add(installer: &envctl_store::Installer, args: &AddArgs, cli: &Cli) -> Result<Status> {
    let what = || format!("cannot add `{}` to the store", args.source);
    let url = if args.source.contains("://") {
        args.source.clone()
    } else {
        // A plain path means the same file whatever directory the install runs in later.
        std::path::absolute(&args.source)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| args.source.clone())
    };
    let format = args
        .format
        .as_deref()
        .map(Format::parse)
        .transpose()
        .map_err(envctl_store::Error::from)
        .context(what)?;
    let request = InstallRequest {
        url,
        sha256: Sha256::parse(&args.sha256).map_err(envctl_store::Error::from).context(what)?,
        name: Name::parse(&args.name).context(what)?,
        version: Version::parse(&args.version).context(what)?,
        unpack: Unpack {
            format,
            strip_components: args.strip_components,
            subdir: args.subdir.clone(),
            ..Unpack::default()
        },
        bytecode: false,
        references: Vec::new(),
        store_path: None,
    };
    let bars = Bars::for_cli(cli);
    let installed = installer.install(&request, &bars).context(what)?;
    for skipped in &installed.skipped {
        printer::info(&format!(
            "warning: skipped `{skipped}` (device nodes and fifos are not kept in the store)"
        ));
    }
    if !installed.fetched {
        printer::status("already in the store; nothing fetched");
    }
    printer::data(&installed.path.display().to_string());
    Ok(Status::Success)
}

fn ls(store: &Store, json: bool) -> Result<Status> {
    let records = store.list().context(|| "cannot list the store".into())?;
    if json {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            path: std::path::PathBuf,
            #[serde(flatten)]
            record: &'a envctl_store::PathRecord,
        }
        let rows: Vec<Row<'_>> =
            records.iter().map(|r| Row { path: store.dir().join(&r.name), record: r }).collect();
        printer::json(&rows);
    } else {
        for r in &records {
            printer::data(&format!("{}\t{}", store.dir().join(&r.name).display(), printer::bytes(r.size)));
        }
    }
    Ok(Status::Success)
}

fn info(store: &Store, path: &str, json: bool) -> Result<Status> {
    let what = || format!("cannot show `{path}`");
    let name = store.resolve(path).context(what)?;
    let info = store.info(&name).context(what)?;
    if json {
        printer::json(&info);
        return Ok(Status::Success);
    }
    let r = &info.record;
    printer::data(&format!("path:        {}", info.path.display()));
    printer::data(&format!("package:     {} {}", r.package, r.version));
    printer::data(&format!("tree hash:   {}", r.tree_hash));
    printer::data(&format!("size:        {} in {} files", printer::bytes(r.size), r.files));
    printer::data(&format!("registered:  {}", printer::timestamp(r.registered_at)));
    for s in &info.sources {
        printer::data(&format!("source:      {} (sha256 {})", s.url, s.sha256));
    }
    for reference in &info.references {
        printer::data(&format!("references:  {reference}"));
    }
    Ok(Status::Success)
}

fn verify(store: &Store, repair: bool, json: bool, cli: &Cli) -> Result<Status> {
    let mut report = store.verify().context(|| "cannot verify the store".into())?;
    let mut repaired = Vec::new();
    if repair && !report.corrupted.is_empty() {
        let bars = Bars::for_cli(cli);
        let mut left = Vec::new();
        for c in report.corrupted {
            let result = match c.damage {
                envctl_store::Damage::Modes => store.repair_modes(&c.name).map(|_| ()),
                _ => store.repair(&c.name, &bars),
            };
            match result {
                Ok(()) => repaired.push(c),
                Err(e) => left.push(envctl_store::Corruption { problem: format!("{}; {e}", c.problem), ..c }),
            }
        }
        report.corrupted = left;
    }
    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a envctl_store::VerifyReport,
            repaired: Vec<&'a str>,
        }
        printer::json(&Out { report: &report, repaired: repaired.iter().map(|c| c.name.as_str()).collect() });
    } else {
        for c in &repaired {
            printer::info(&format!("repaired: {} (was: {})", store.dir().join(&c.name).display(), c.problem));
        }
        for c in &report.corrupted {
            printer::info(&format!("corrupted: {}: {}", store.dir().join(&c.name).display(), c.problem));
        }
        let fixed = if repair { format!(", {} repaired", repaired.len()) } else { String::new() };
        printer::status(&format!(
            "checked {}{fixed}, {} corrupted",
            printer::count(report.checked, "store path"),
            report.corrupted.len()
        ));
        if !repair && !report.corrupted.is_empty() {
            printer::info(
                "hint: `envctl store verify --repair` restores modes, fetches packages' sources again and rebuilds generations",
            );
        }
    }
    Ok(if report.corrupted.is_empty() { Status::Success } else { Status::Failure })
}

fn optimise(store: &Store, json: bool) -> Result<Status> {
    let report = store.optimise().context(|| "cannot optimise the store".into())?;
    if json {
        printer::json(&report);
    } else {
        printer::status(&format!(
            "scanned {} files in {} store paths new since the last optimise, replaced {} by hard links, saved {}",
            report.files,
            report.paths,
            report.linked,
            printer::bytes(report.bytes_saved)
        ));
    }
    Ok(Status::Success)
}
