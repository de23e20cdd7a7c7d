//! `envctl init`, `add` and `remove`: a profile file edited from the command line, as `pixi add`
//! and `uv add` edit theirs. The file is edited with `toml_edit`, so its comments, order and layout
//! stay; then it is locked and applied like any profile file (unless `--no-apply`). When that
//! fails (a misspelt name, a conflict, a download), the file and its lock are put back as they
//! were, as uv and pixi do: a failed `add` leaves nothing for the next command to trip over.

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
    let before = Before::read(&file)?;
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
    finish(&file, before, args, settings, cli)
}

/// `envctl remove NAME…`
pub fn remove(args: &EditArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let file = profile_file(args.file.as_deref())?;
    let before = Before::read(&file)?;
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
    finish(&file, before, args, settings, cli)
}

/// The profile file and its lock as they were before an edit, to put back if it fails.
struct Before {
    file: PathBuf,
    text: Vec<u8>,
    lock: PathBuf,
    lock_text: Option<Vec<u8>>,
}

impl Before {
    fn read(file: &Path) -> Result<Before> {
        let text =
            std::fs::read(file).map_err(|e| Failure::new(format!("cannot read `{}`", file.display()), e))?;
        let lock = file.with_extension("lock");
        let lock_text = match std::fs::read(&lock) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Failure::new(format!("cannot read `{}`", lock.display()), e)),
        };
        Ok(Before { file: file.to_path_buf(), text, lock, lock_text })
    }

    /// Puts the file and its lock back; says so, or says what could not be put back.
    fn restore(self) {
        let lock = match &self.lock_text {
            Some(text) => replace(&self.lock, text),
            None => match std::fs::remove_file(&self.lock) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        match replace(&self.file, &self.text).and(lock) {
            Ok(()) => printer::info(&format!("`{}` is left as it was", self.file.display())),
            Err(e) => {
                printer::info(&format!("warning: cannot put `{}` back as it was: {e}", self.file.display()))
            }
        }
    }
}

fn finish(file: &Path, before: Before, args: &EditArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    if args.no_apply {
        return Ok(Status::Success);
    }
    match apply(file, &ApplyOptions::default(), settings, cli) {
        Ok(_) => Ok(Status::Success),
        Err(e) => {
            before.restore();
            Err(e)
        }
    }
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
    replace(file, doc.to_string().as_bytes())
        .map_err(|e| Failure::new(format!("cannot write `{}`", file.display()), e))
}

/// `file`'s contents replaced by `text` through a temporary file beside it and a rename.
fn replace(file: &Path, text: &[u8]) -> std::io::Result<()> {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
