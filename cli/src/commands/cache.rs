//! `envctl cache keygen|push`, `envctl store export|import`: store paths that travel between
//! machines, signed (see the store's `transfer` and `caches` modules).

use std::io::Read;
use std::path::Path;

use envctl_store::{PathObject, SecretKey, Store};

use super::Status;
use crate::args::{CacheCommand, Cli, ExportArgs, KeygenArgs, PushArgs, StoreImportArgs};
use crate::error::{Failure, Result, StoreContext};
use crate::printer;
use crate::settings::Settings;

/// The first entry of an export file, and its format.
const EXPORT_MARK: &str = "envctl-export";
const EXPORT_FORMAT: &str = "1";

pub fn run(cmd: &CacheCommand, settings: &Settings, _cli: &Cli) -> Result<Status> {
    match cmd {
        CacheCommand::Keygen(args) => keygen(args),
        CacheCommand::Push(args) => push(args, settings),
    }
}

fn keygen(args: &KeygenArgs) -> Result<Status> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = SecretKey::generate(&args.name).map_err(|e| Failure::new("cannot make a key", e))?;
    fs_err::create_dir_all(&args.out).map_err(|e| Failure::new("cannot make a key", e))?;
    let secret = args.out.join(format!("{}.secret", args.name));
    let public = args.out.join(format!("{}.public", args.name));
    for path in [&secret, &public] {
        if path.exists() {
            return Err(Failure::new("cannot make a key", format!("`{}` exists", path.display()))
                .hint("choose another name or directory; a key is never overwritten"));
        }
    }
    let write = |path: &Path, text: &str, mode: u32| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    write(&secret, &key.to_text(), 0o600)
        .map_err(|e| Failure::new(format!("cannot write `{}`", secret.display()), e))?;
    write(&public, &key.public().to_text(), 0o644)
        .map_err(|e| Failure::new(format!("cannot write `{}`", public.display()), e))?;
    printer::data(&key.public().to_text());
    printer::status(&format!(
        "wrote `{}` (keep it secret) and `{}`; machines that should trust it add the line above to `trusted-keys`",
        secret.display(),
        public.display()
    ));
    Ok(Status::Success)
}

fn load_key(path: &Path) -> Result<SecretKey> {
    SecretKey::load(path).map_err(|e| {
        Failure::new("cannot read the signing key", e).hint("`envctl cache keygen NAME --out DIR` writes one")
    })
}

/// The packages of `what` (profiles' current generations, or store paths) and everything they
/// need, each after what it refers to.
fn closure(store: &Store, what: &[String], settings: &Settings) -> Result<Vec<String>> {
    let mut roots = Vec::new();
    for w in what {
        // A profile (`NAME`, `TEAM/NAME` in a shared home), else a store path.
        let current = settings
            .profile(w)
            .ok()
            .and_then(|(profile, profiles)| profiles.current(&profile.name).ok().flatten());
        match current {
            Some(generation) => {
                roots.push(generation.path.file_name().unwrap_or_default().to_string_lossy().into_owned())
            }
            None => roots.push(
                store
                    .resolve(w)
                    .context(|| format!("`{w}` is neither a profile nor a store path"))?
                    .to_string(),
            ),
        }
    }
    store.transferable_closure(&roots).context(|| "cannot compute the closure".into())
}

fn open_store(settings: &Settings) -> Result<Store> {
    let dir = settings.store_dir();
    Store::open(&dir, settings.store_options())
        .context(|| format!("cannot open the store at `{}`", dir.display()))
}

fn push(args: &PushArgs, settings: &Settings) -> Result<Status> {
    let key = load_key(&args.key)?;
    let store = open_store(settings)?;
    let names = closure(&store, &args.what, settings)?;
    let report =
        store.push(&args.target, &names, &key).context(|| format!("cannot push to `{}`", args.target))?;
    if args.json {
        printer::json(&report);
    } else {
        printer::status(&format!(
            "pushed {} ({}) to `{}`; {} there already",
            printer::count(report.pushed.len(), "path"),
            printer::bytes(report.bytes),
            args.target,
            report.skipped.len()
        ));
    }
    Ok(Status::Success)
}

pub fn export(args: &ExportArgs, settings: &Settings) -> Result<Status> {
    let key = load_key(&args.key)?;
    let store = open_store(settings)?;
    let names = closure(&store, &args.what, settings)?;
    let fail = |e: &dyn std::fmt::Display| {
        Failure::new(format!("cannot write `{}`", args.output.display()), e.to_string())
    };
    // Staged as a directory cache, then packed into one tar; the file appears whole or not at all.
    let staging = tempfile::Builder::new()
        .prefix(".envctl-export")
        .tempdir_in(args.output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
        .map_err(|e| fail(&e))?;
    store.push(&staging.path().display().to_string(), &names, &key).map_err(|e| fail(&e))?;
    let tmp = staging.path().join("export.tar");
    {
        let file = fs_err::File::create(&tmp).map_err(|e| fail(&e))?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        tar.mode(tar::HeaderMode::Deterministic);
        let mut add = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, name, bytes)
        };
        add(EXPORT_MARK, format!("{EXPORT_FORMAT}\n").as_bytes()).map_err(|e| fail(&e))?;
        add("index.json", &serde_json::to_vec_pretty(&names).expect("names serialize"))
            .map_err(|e| fail(&e))?;
        for name in &names {
            for file in [format!("{name}.json"), format!("{name}.tar.zst")] {
                tar.append_path_with_name(staging.path().join(&file), &file).map_err(|e| fail(&e))?;
            }
        }
        let mut out = tar.into_inner().map_err(|e| fail(&e))?;
        std::io::Write::flush(&mut out).map_err(|e| fail(&e))?;
        out.get_ref().sync_all().map_err(|e| fail(&e))?;
    }
    fs_err::rename(&tmp, &args.output).map_err(|e| fail(&e))?;
    let size = fs_err::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    printer::status(&format!(
        "wrote `{}`: {}, {}, signed by `{}`",
        args.output.display(),
        printer::count(names.len(), "store path"),
        printer::bytes(size),
        key.name()
    ));
    Ok(Status::Success)
}

pub fn import(args: &StoreImportArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let store = open_store(settings)?;
    let what = || format!("cannot import `{}`", args.file.display());
    let staging = tempfile::Builder::new()
        .prefix("import")
        .tempdir_in(settings.store_dir().join(".tmp"))
        .map_err(|e| Failure::new(what(), e))?;
    // The outer file is a flat tar of plain names that export wrote; anything else is refused
    // before a byte is unpacked into the store.
    let file = fs_err::File::open(&args.file).map_err(|e| Failure::new(what(), e))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let mut seen_mark = false;
    for entry in tar.entries().map_err(|e| Failure::new(what(), e))? {
        let mut entry = entry.map_err(|e| Failure::new(what(), e))?;
        let name = entry.path().map_err(|e| Failure::new(what(), e))?.to_string_lossy().into_owned();
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains('/')
            && entry.header().entry_type() == tar::EntryType::Regular;
        if !plain {
            return Err(Failure::new(what(), format!("it holds `{name}`, which no export writes"))
                .hint("give a file that `envctl store export` wrote"));
        }
        if !seen_mark {
            // The mark is one short line: nothing longer is read, whatever the file holds.
            let mut text = String::new();
            (&mut entry).take(64).read_to_string(&mut text).map_err(|e| Failure::new(what(), e))?;
            if name != EXPORT_MARK || text.trim() != EXPORT_FORMAT {
                return Err(Failure::new(what(), "it is not an envctl export (format 1)")
                    .hint("give a file that `envctl store export` wrote"));
            }
            seen_mark = true;
            continue;
        }
        entry.unpack(staging.path().join(&name)).map_err(|e| Failure::new(what(), e))?;
    }
    let index = fs_err::read(staging.path().join("index.json")).map_err(|e| Failure::new(what(), e))?;
    let names: Vec<String> = serde_json::from_slice(&index).map_err(|e| Failure::new(what(), e))?;
    // Each name becomes a file name to open: a store path name, or nothing is opened (`../`
    // would reach any `*.json` on the machine, a FIFO would hang the import).
    for name in &names {
        envctl_store::StorePathName::parse(name).map_err(|e| {
            Failure::new(
                what(),
                format!("its index names `{}`, which is not a store path: {e}", name.escape_debug()),
            )
            .hint("give a file that `envctl store export` wrote")
        })?;
    }
    let trusted = &settings.trusted_keys;
    let bars = crate::reporter::Bars::for_cli(cli);
    let mut added = 0;
    for name in &names {
        let object_file = staging.path().join(format!("{name}.json"));
        let bytes = fs_err::read(&object_file).map_err(|e| Failure::new(what(), e))?;
        let object = PathObject::parse(&bytes, name).map_err(|e| Failure::new(what(), e))?;
        if object.name != *name || object.archive.file != format!("{name}.tar.zst") {
            return Err(Failure::new(what(), format!("its object for `{name}` describes `{}`", object.name)));
        }
        let archive = staging.path().join(&object.archive.file);
        let installed =
            store.receive(&object, &archive.display().to_string(), trusted, &bars).map_err(|e| {
                Failure::new(what(), e).hint(
                    "nothing of that path was registered; paths imported before it are complete and verified",
                )
            })?;
        added += usize::from(installed.fetched);
    }
    printer::status(&format!(
        "imported `{}`: {} checked, {added} added to the store",
        args.file.display(),
        printer::count(names.len(), "store path")
    ));
    Ok(Status::Success)
}
