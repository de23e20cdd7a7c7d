//! `envctl kernel`: a profile as a Jupyter kernel. The kernel spec (`kernel.json` in Jupyter's
//! data directory, where `jupyter kernelspec list` looks) starts the kernel as an envctl session,
//! `envctl run PROFILE -- python3 -m ipykernel_launcher`, by the absolute path of the envctl and
//! home that wrote it: each start takes the profile's current generation (an apply or a rollback
//! takes effect at the next kernel start), holds its GC root for as long as the kernel runs, and
//! gets the session's variables (CUDA_HOME and the rest) as `envctl run` gives them.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Status;
use crate::args::{Cli, JsonArgs, KernelCommand, KernelInstallArgs, KernelRemoveArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::settings::Settings;

pub fn run(command: &KernelCommand, settings: &Settings, cli: &Cli) -> Result<Status> {
    match command {
        KernelCommand::Install(args) => install(args, settings, cli),
        KernelCommand::List(args) => list(args),
        KernelCommand::Remove(args) => remove(args),
    }
}

/// Jupyter's data directory, as jupyter_core finds it on Linux.
fn data_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("JUPYTER_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("jupyter"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
        Failure::new("cannot find Jupyter's data directory", "neither JUPYTER_DATA_DIR nor HOME is set")
            .hint("set JUPYTER_DATA_DIR to the directory whose `kernels/` Jupyter reads")
    })?;
    Ok(PathBuf::from(home).join(".local/share/jupyter"))
}

/// The frameworks a display name mentions, as their projects write them.
const FRAMEWORKS: &[(&str, &str)] = &[
    ("tensorflow", "TensorFlow"),
    ("tensorflow-gpu", "TensorFlow"),
    ("tensorflow-cpu", "TensorFlow"),
    ("torch", "PyTorch"),
    ("jax", "JAX"),
    ("keras", "Keras"),
    ("cuda", "CUDA"),
    ("cuda-cudart", "CUDA"),
    ("cudnn", "cuDNN"),
    ("python", "Python"),
];

fn install(args: &KernelInstallArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let t = super::session::target(Some(&args.profile), &[], settings, cli, &mut |_| Ok(()))?;
    let has = |name: &str| t.manifest.packages.iter().find(|p| p.name == name).map(|p| p.version.clone());
    if has("python").is_none() {
        return Err(Failure::new(
            format!("cannot make a Jupyter kernel of `{}`", args.profile),
            "the profile has no Python",
        )
        .hint("add `python = \"3.11\"` and `ipykernel = \"*\"` to its [packages] and apply it"));
    }
    if has("ipykernel").is_none() {
        return Err(Failure::new(
            format!("cannot make a Jupyter kernel of `{}`", args.profile),
            "the profile lacks `ipykernel`, the package that runs Python as a Jupyter kernel",
        )
        .hint("add it: `envctl add ipykernel --file FILE` (the profile's file), or `ipykernel = \"*\"` in its [packages], then apply")
        .hint("then run `envctl kernel install` again"));
    }
    let name = args.name.clone().unwrap_or_else(|| format!("envctl-{}", args.profile.replace('/', "-")));
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(Failure::new(
            format!("invalid kernel name `{name}`"),
            "Jupyter's kernel names are letters, digits, `.`, `_` and `-`",
        ));
    }
    let mut parts = Vec::new();
    for (package, label) in FRAMEWORKS {
        if let Some(version) = has(package)
            && !parts.iter().any(|p: &String| p.starts_with(&format!("{label} ")))
        {
            parts.push(format!("{label} {version}"));
        }
    }
    let display =
        args.display_name.clone().unwrap_or_else(|| format!("{} ({})", args.profile, parts.join(", ")));
    let exe = std::env::current_exe().map_err(|e| Failure::new("cannot find envctl's own path", e))?;
    let spec = serde_json::json!({
        "argv": [
            exe, "--home", settings.home, "run", args.profile, "--",
            "python3", "-m", "ipykernel_launcher", "-f", "{connection_file}",
        ],
        "display_name": display,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": { "envctl": { "profile": args.profile, "home": settings.home } },
    });
    let dir = data_dir()?.join("kernels").join(&name);
    if let Some(other) = read_spec(&dir).filter(|s| envctl_profile(s).is_none()) {
        return Err(Failure::new(
            format!("cannot install the kernel `{name}`"),
            format!(
                "`{}` is a kernel envctl did not make (`{}`)",
                dir.display(),
                other["display_name"].as_str().unwrap_or("?")
            ),
        )
        .hint("choose another name with `--name`"));
    }
    let text = serde_json::to_vec_pretty(&spec).expect("a kernel spec serializes");
    std::fs::create_dir_all(&dir)
        .map_err(envctl_store::Error::from)
        .and_then(|()| envctl_store::write_atomically(&dir.join("kernel.json"), |f| Ok(f.write_all(&text)?)))
        .map_err(|e| Failure::new(format!("cannot write the kernel spec in `{}`", dir.display()), e))?;
    printer::info(&format!("installed the Jupyter kernel `{name}` ({display}) in {}", dir.display()));
    printer::info(
        "it starts the profile's current generation each time: no reinstall after an apply or a rollback",
    );
    Ok(Status::Success)
}

/// The kernel spec in `dir`, if there is one that parses.
fn read_spec(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read(dir.join("kernel.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The profile of a kernel spec envctl wrote.
fn envctl_profile(spec: &serde_json::Value) -> Option<&str> {
    spec["metadata"]["envctl"]["profile"].as_str()
}

fn list(args: &JsonArgs) -> Result<Status> {
    let kernels = data_dir()?.join("kernels");
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&kernels) {
        for entry in entries.flatten() {
            let Some(spec) = read_spec(&entry.path()) else { continue };
            let Some(profile) = envctl_profile(&spec) else { continue };
            rows.push(serde_json::json!({
                "name": entry.file_name().to_string_lossy(),
                "profile": profile,
                "display_name": spec["display_name"],
                "home": spec["metadata"]["envctl"]["home"],
                "path": entry.path(),
            }));
        }
    }
    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    if args.json {
        printer::json(&rows);
        return Ok(Status::Success);
    }
    if rows.is_empty() {
        printer::info(&format!("no kernels envctl installed in {}", kernels.display()));
    }
    for row in rows {
        printer::data(&format!(
            "{}\t{}\t{}",
            row["name"].as_str().unwrap_or_default(),
            row["profile"].as_str().unwrap_or_default(),
            row["display_name"].as_str().unwrap_or_default()
        ));
    }
    Ok(Status::Success)
}

fn remove(args: &KernelRemoveArgs) -> Result<Status> {
    let dir = data_dir()?.join("kernels").join(&args.name);
    match read_spec(&dir) {
        Some(spec) if envctl_profile(&spec).is_some() => {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Failure::new(format!("cannot remove `{}`", dir.display()), e))?;
            printer::info(&format!("removed the Jupyter kernel `{}`", args.name));
            Ok(Status::Success)
        }
        Some(_) => Err(Failure::new(
            format!("cannot remove the kernel `{}`", args.name),
            format!("`{}` is a kernel envctl did not make", dir.display()),
        )
        .hint(format!("`jupyter kernelspec remove {}` removes any kernel", args.name))),
        None => Err(Failure::new(
            format!("cannot remove the kernel `{}`", args.name),
            format!("there is no kernel `{}` in `{}`", args.name, dir.parent().unwrap_or(&dir).display()),
        )
        .hint("`envctl kernel list` lists the kernels envctl installed")),
    }
}
