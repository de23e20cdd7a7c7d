//! `envctl init`, `add` and `remove`: a profile file edited from the command line, as `pixi add`
//! and `uv add` edit theirs. The file is edited with `toml_edit`, so its comments, order and layout
//! stay; then it is locked and applied like any profile file (unless `--no-apply`).

use std::path::{Path, PathBuf};

use super::Status;
use super::apply::apply;
use crate::args::{Cli, EditArgs, InitArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::settings::Settings;
use envctl_ops::apply::ApplyOptions;

/// The file `init` writes and `add`/`remove` look for.
pub const FILE_NAME: &str = "envctl.toml";

/// `envctl init`: writes `envctl.toml` here, refusing to replace one.
pub fn init(args: &InitArgs) -> Result<Status> {
    let here = std::env::current_dir().map_err(|e| Failure::new("cannot find this directory", e))?;
    let path = here.join(FILE_NAME);
    if path.exists() {
        return Err(Failure::new(format!("cannot write `{}`", path.display()), "it exists already")
            .hint("`envctl add NAME` adds packages to it"));
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => here.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "envctl".into()),
    };
    envctl_store::check_profile_name(&name).map_err(|e| {
        Failure::new(format!("cannot name the profile `{name}`"), e).hint("give another with --name")
    })?;
    let text = format!(
        "# The profile `{name}`: `envctl add NAME[@REQ]` adds a package, `envctl apply {FILE_NAME}` builds it.\nname = {}\n\n[packages]\n",
        toml::Value::String(name.clone())
    );
    // create_new: two inits racing do not overwrite each other.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
        .map_err(|e| Failure::new(format!("cannot write `{}`", path.display()), e))?;
    printer::status(&format!(
        "wrote `{}` for profile `{name}`; `envctl add NAME` adds packages",
        path.display()
    ));
    Ok(Status::Success)
}

/// `envctl add NAME[@REQ]…`
pub fn add(args: &EditArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let file = profile_file(args.file.as_deref())?;
    let mut doc = read(&file)?;
    let packages = packages_table(&mut doc, &file)?;
    let mut added = Vec::new();
    for p in &args.packages {
        let (name, req) = p.split_once(['@', '=']).unwrap_or((p.as_str(), "*"));
        let (name, req) = (name.trim(), req.trim());
        let name = envctl_recipes::PackageName::parse(name)
            .map_err(|e| Failure::new(format!("cannot add `{p}`"), e))?;
        envctl_recipes::Requirement::parse(req).map_err(|e| Failure::new(format!("cannot add `{p}`"), e))?;
        // An entry written another way (`Typing_Extensions`) is the same package: replace it.
        let existing: Vec<String> = packages
            .iter()
            .map(|(k, _)| k.to_owned())
            .filter(|k| envctl_recipes::PackageName::parse(k).is_ok_and(|n| n == name))
            .collect();
        let key = existing.first().cloned().unwrap_or_else(|| name.to_string());
        for other in existing.iter().skip(1) {
            packages.remove(other);
        }
        packages.insert(&key, toml_edit::value(req));
        added.push(format!("{name} {req}"));
    }
    write(&file, &doc)?;
    printer::status(&format!("`{}`: added {}", file.display(), added.join(", ")));
    finish(&file, args, settings, cli)
}

/// `envctl remove NAME…`
pub fn remove(args: &EditArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let file = profile_file(args.file.as_deref())?;
    let mut doc = read(&file)?;
    let packages = packages_table(&mut doc, &file)?;
    for p in &args.packages {
        let name = envctl_recipes::PackageName::parse(p)
            .map_err(|e| Failure::new(format!("cannot remove `{p}`"), e))?;
        let key = packages
            .iter()
            .map(|(k, _)| k.to_owned())
            .find(|k| envctl_recipes::PackageName::parse(k).is_ok_and(|n| n == name));
        match key {
            Some(k) => {
                packages.remove(&k);
            }
            None => {
                let keys: Vec<String> = packages.iter().map(|(k, _)| k.to_owned()).collect();
                let f = Failure::new(
                    format!("cannot remove `{p}` from `{}`", file.display()),
                    format!("its [packages] has no `{name}`"),
                );
                return Err(match crate::error::nearest(name.as_str(), keys.iter().map(String::as_str)) {
                    Some(n) => f.hint(format!("did you mean `{n}`?")),
                    None => f,
                });
            }
        }
    }
    write(&file, &doc)?;
    printer::status(&format!("`{}`: removed {}", file.display(), args.packages.join(", ")));
    finish(&file, args, settings, cli)
}

fn finish(file: &Path, args: &EditArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    if args.no_apply {
        return Ok(Status::Success);
    }
    apply(file, &ApplyOptions::default(), settings, cli).map(|_| Status::Success)
}

/// The profile file: the one given, else `envctl.toml` here or in the nearest parent that has one.
pub fn profile_file(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(f) = given {
        return Ok(f.to_path_buf());
    }
    let here = std::env::current_dir().map_err(|e| Failure::new("cannot find this directory", e))?;
    here.ancestors().map(|d| d.join(FILE_NAME)).find(|p| p.is_file()).ok_or_else(|| {
        Failure::new(
            format!("no `{FILE_NAME}` here or in a parent directory"),
            format!("looked from `{}`", here.display()),
        )
        .hint("`envctl init` writes one here, or give the file with --file")
    })
}

fn read(file: &Path) -> Result<toml_edit::DocumentMut> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::new(format!("cannot read `{}`", file.display()), e))?;
    text.parse::<toml_edit::DocumentMut>().map_err(|e| {
        Failure::new(format!("cannot edit `{}`", file.display()), e.to_string().trim().to_owned())
    })
}

fn packages_table<'d>(doc: &'d mut toml_edit::DocumentMut, file: &Path) -> Result<&'d mut toml_edit::Table> {
    let item = doc.entry("packages").or_insert_with(toml_edit::table);
    item.as_table_mut().ok_or_else(|| {
        Failure::new(format!("cannot edit `{}`", file.display()), "`packages` is not a table")
            .hint("write it as a [packages] section")
    })
}

/// Writes the file whole through a temporary file and a rename: an interrupted edit leaves the old
/// file, never half of the new one.
fn write(file: &Path, doc: &toml_edit::DocumentMut) -> Result<()> {
    let tmp = file.with_extension(format!("toml.tmp{}", std::process::id()));
    let fail = |e: std::io::Error| Failure::new(format!("cannot write `{}`", file.display()), e);
    std::fs::write(&tmp, doc.to_string()).map_err(fail)?;
    std::fs::rename(&tmp, file).map_err(fail)
}
