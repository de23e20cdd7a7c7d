//! `envctl shell`, `envctl run`, `envctl env`: a profile's environment for a session.
//!
//! The environment points at the generation's store path, not the profile link, so a rollback in
//! another terminal never moves a running session. The session holds a temporary GC root: its
//! locked file descriptor is inherited across `exec`, so the root lives exactly as long as the
//! program (and anything it starts that keeps the descriptor), and dies with it, also on `kill -9`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use envctl_store::TempRoot;

use super::Status;
use crate::args::{Cli, SessionArgs};
use crate::error::{Failure, Result, StoreContext};
use crate::manifest::Manifest;
use crate::printer;
use crate::settings::Settings;

/// What a session runs in.
pub(super) struct Target {
    pub name: String,
    pub generation: PathBuf,
    pub manifest: Manifest,
    /// The profile's link to its current generation (`profiles/NAME`): a path that follows
    /// applies and rollbacks. None for an ad-hoc environment.
    pub link: Option<PathBuf>,
    /// The profile file the target was named by, if it was.
    pub file: Option<PathBuf>,
}

/// The session's target. `chosen` is told the generation as soon as it is known, before its
/// manifest is read (a shared store's session asks the daemon for its root meanwhile).
pub(super) fn target(
    spec: Option<&str>,
    packages: &[String],
    settings: &Settings,
    cli: &Cli,
    chosen: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<Target> {
    let mut file = None;
    let (name, generation) = if !packages.is_empty() {
        adhoc(packages, settings, cli)?
    } else {
        let found;
        let spec = match spec {
            Some(spec) => spec,
            None => {
                let file = super::edit::profile_file(None).map_err(|_| {
                    Failure::new(
                        "no profile given",
                        "name a profile, a profile file, or packages with -p NAME=REQ; no `envctl.toml` is here or in a parent directory",
                    )
                    .hint("`envctl profiles` lists the profiles")
                })?;
                found = file.display().to_string();
                &found
            }
        };
        let path = Path::new(spec);
        if spec.ends_with(".toml") && path.is_file() {
            let options = envctl_ops::apply::ApplyOptions { keep_rollback: true, ..Default::default() };
            let applied = super::apply::apply(path, &options, settings, cli)?;
            file = Some(path.to_path_buf());
            (applied.name, applied.generation)
        } else {
            // `-e` picks an environment of a file; a profile is already one environment.
            if let Some(env) = &settings.invocation.environment {
                return Err(Failure::new(
                    format!("cannot start a session in `{spec}` with `-e {env}`"),
                    format!("`-e` picks an environment of a profile file, and `{spec}` is a profile"),
                )
                .hint(format!("name the environment's own profile (`{spec}-{env}`), or the profile file")));
            }
            let (profile, profiles) = settings.profile(spec)?;
            let current = profiles
                .current(&profile.name)
                .context(|| format!("cannot read profile `{spec}`"))?
                .ok_or_else(|| {
                    super::profiles::no_profile(
                        &profiles,
                        spec,
                        &format!("cannot start a session in `{spec}`"),
                    )
                })?;
            (spec.to_owned(), current.path)
        }
    };
    chosen(&generation)?;
    let manifest =
        Manifest::load(&generation).map_err(|e| Failure::new("cannot read the generation's manifest", e))?;
    let link = match packages.is_empty() {
        true => settings.profile(&name).ok().map(|(profile, profiles)| profiles.dir().join(&profile.name)),
        false => None,
    };
    Ok(Target { name, generation, manifest, link, file })
}

/// `envctl run`'s words: the profile, then the command. `--` is optional after a profile
/// (`envctl run vision python3 x.py`); the profile clap found is part of the command when `--`
/// came before it (`envctl run -- python3 x.py`, in `envctl.toml`'s profile) or `-p` packages
/// name the environment.
pub fn run_words(session: &SessionArgs, command: &[String]) -> (SessionArgs, Vec<String>) {
    let raw: Vec<String> = std::env::args().collect();
    let dashdash = raw.iter().position(|a| a == "--");
    let mut session = session.clone();
    let mut command = command.to_vec();
    if let Some(profile) = &session.profile {
        let before_dashdash = dashdash.is_none_or(|i| raw[..i].contains(profile));
        if !session.packages.is_empty() || !before_dashdash {
            command.insert(0, profile.clone());
            session.profile = None;
        }
    }
    (session, command)
}

/// Resolves and installs `-p NAME=REQ` packages into a generation no profile points at; the
/// session's temporary root is what keeps it.
fn adhoc(packages: &[String], settings: &Settings, cli: &Cli) -> Result<(String, PathBuf)> {
    let mut text = String::from("name = \"adhoc\"\n[packages]\n");
    for p in packages {
        // `NAME=REQ`, or `NAME@REQ` as `envctl show` spells it.
        let (n, r) = p.split_once(['=', '@']).unwrap_or((p.as_str(), "*"));
        let (n, r) = (n.trim(), r.trim());
        envctl_recipes::PackageName::parse(n).map_err(|e| Failure::new(format!("invalid `-p {p}`"), e))?;
        envctl_recipes::Requirement::parse(r).map_err(|e| Failure::new(format!("invalid `-p {p}`"), e))?;
        text.push_str(&format!("{n} = {}\n", toml::Value::String(r.to_owned())));
    }
    // A shared store's home is the daemon's: the request file is the user's own.
    let dir = match settings.daemon() {
        Some(_) => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("envctl/adhoc"),
        None => settings.home.join("adhoc"),
    };
    fs_err::create_dir_all(&dir).map_err(|e| Failure::new("cannot prepare an ad-hoc environment", e))?;
    let key = blake3::hash(text.as_bytes()).to_hex();
    let file = dir.join(format!("{}.toml", &key[..16]));
    if !file.exists() {
        fs_err::write(&file, &text).map_err(|e| Failure::new("cannot prepare an ad-hoc environment", e))?;
    }
    let label = format!("-p {}", packages.join(" -p "));
    let options = envctl_ops::apply::ApplyOptions {
        profile: Some("adhoc".into()),
        adhoc: Some(label),
        ..Default::default()
    };
    let applied = super::apply::apply(&file, &options, settings, cli)?;
    Ok((applied.name, applied.generation))
}

/// The variable in which a session records, for every variable it sets, the value it had before
/// (or `null`): entering another session first puts those back, so sessions replace each other
/// instead of stacking (two Pythons' site-packages on one PYTHONPATH).
const RESTORE: &str = "ENVCTL_RESTORE";

/// `base` as it was before the envctl session it is inside of, if any, and that session's profile.
pub(super) fn outside_sessions(
    mut base: BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Option<String>) {
    let Some(saved) = base.remove(RESTORE) else { return (base, None) };
    let Ok(saved) = serde_json::from_str::<BTreeMap<String, Option<String>>>(&saved) else {
        return (base, None);
    };
    let left = base.get("ENVCTL_PROFILE").cloned();
    for (k, v) in saved {
        // The variable is anyone's to set: what it names reaches `export`/`unset` lines and
        // `exec`, so only variable names and values a program can receive are taken.
        if !envctl_recipes::is_variable_name(&k) {
            printer::info(&format!(
                "warning: {RESTORE} names `{}`, which is not a variable name; left out",
                k.escape_debug()
            ));
            continue;
        }
        match v {
            Some(v) if v.contains('\0') => printer::info(&format!(
                "warning: {RESTORE} gives `{k}` a value with a NUL byte, which no program can receive; left out"
            )),
            Some(v) => {
                base.insert(k, v);
            }
            None => {
                base.remove(&k);
            }
        }
    }
    (base, left)
}

/// Records in `env` what `base` had for each variable `env` sets (see [`RESTORE`]).
pub(super) fn remember(env: &mut BTreeMap<String, String>, base: &BTreeMap<String, String>) {
    let saved: BTreeMap<&String, Option<&String>> = env.keys().map(|k| (k, base.get(k))).collect();
    let text = serde_json::to_string(&saved).expect("strings serialize");
    env.insert(RESTORE.to_owned(), text);
}

fn prepend(
    var: &str,
    dirs: Vec<PathBuf>,
    base: &BTreeMap<String, String>,
    env: &mut BTreeMap<String, String>,
) {
    if dirs.is_empty() {
        return;
    }
    let mut parts: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if let Some(old) = base.get(var).filter(|v| !v.is_empty()) {
        parts.push(old.clone());
    }
    env.insert(var.to_owned(), parts.join(":"));
}

/// The session's variables: search paths into the generation, CUDA_HOME, then recipe and profile
/// `[env]` with its `${NAME}` references expanded. `base` is the environment it extends.
pub(super) fn environment(t: &Target, base: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    environment_at(t, &t.generation, base)
}

/// [`environment`] with the generation reached through `g` (the profile's link, say).
pub(super) fn environment_at(
    t: &Target,
    g: &Path,
    base: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut search = match &t.manifest.search {
        Some(s) => s.clone(),
        // Generations from before the manifest recorded them: look (slower on huge farms).
        None => crate::manifest::search_dirs(&[g.to_path_buf()]),
    };
    let python = t.manifest.packages.iter().find(|p| p.name == "python").map(|p| p.version.as_str());
    let wheel_libs = crate::manifest::wheel_library_dirs(g, python);
    if !wheel_libs.is_empty() {
        search.entry("LD_LIBRARY_PATH".into()).or_default().extend(wheel_libs);
    }
    for &var in envctl_recipes::SEARCH_VARIABLES {
        let dirs: Vec<PathBuf> =
            search.get(var).map(|rels| rels.iter().map(|r| g.join(r)).collect()).unwrap_or_default();
        prepend(var, dirs, base, &mut env);
    }
    if t.manifest
        .packages
        .iter()
        .any(|p| p.name == "cuda" || p.name.starts_with("cuda-") || p.name.starts_with("cuda_"))
    {
        env.insert("CUDA_HOME".into(), g.display().to_string());
        env.insert("CUDA_PATH".into(), g.display().to_string());
    }
    // `${NAME}` in a value is what the session has so far, else what it started with; the
    // variable's own name is its value without the `[env]` entry (checked when files are read).
    let computed = env.clone();
    for (k, v) in &t.manifest.env {
        let value = envctl_recipes::expand_env(v, |name| match name {
            "profile" => Some(g.display().to_string()),
            _ => computed.get(name).or_else(|| base.get(name)).cloned(),
        });
        env.insert(k.clone(), value);
    }
    env.insert("ENVCTL_PROFILE".into(), t.name.clone());
    env.insert("ENVCTL_GENERATION".into(), g.display().to_string());
    env
}

/// What `--pure` keeps from the caller's environment.
const PURE_KEEP: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "TERM",
    "LANG",
    "LC_ALL",
    "TZ",
    "DISPLAY",
    "SHELL",
    "TMPDIR",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
];

pub(super) fn base_env(pure: bool) -> BTreeMap<String, String> {
    let all: BTreeMap<String, String> = std::env::vars().collect();
    if !pure {
        return all;
    }
    let mut kept: BTreeMap<String, String> =
        all.into_iter().filter(|(k, _)| PURE_KEEP.contains(&k.as_str())).collect();
    kept.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
    kept
}

pub fn session(args: &SessionArgs, command: Vec<String>, settings: &Settings, cli: &Cli) -> Result<Status> {
    // The store lock, shared, from before the generation is chosen until the session's root holds
    // it: GC needs the lock exclusively, so it cannot remove the generation in between (an ad-hoc
    // one has no other root; a profile's could be rolled back and deleted meanwhile).
    let daemon = settings.daemon();
    let daemon_mode = daemon.is_some();
    // No store yet: there is no generation to protect, and the lookup below says so (a session
    // creates no home of its own, unless it builds an ad-hoc one). A shared store's lock is the
    // daemon's: its root comes from the daemon instead.
    let hold = match daemon {
        Some(_) => None,
        None => envctl_store::Store::shared_lock(&settings.store_dir(), !args.packages.is_empty())
            .context(|| "cannot lock the store".into())?,
    };
    // A shared store: the daemon registers the root while this process reads the manifest and
    // computes the environment; the answer is awaited just before the program starts.
    let mut pending = None;
    let mut ask = |generation: &Path| -> Result<()> {
        if let Some(daemon) = &daemon {
            let name = generation.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            pending = Some(envctl_ops::daemon::client::request_roots(settings, daemon, vec![name])?);
        }
        Ok(())
    };
    let t = target(args.profile.as_deref(), &args.packages, settings, cli, &mut ask)?;
    let (base, left) = outside_sessions(base_env(args.pure));
    if let Some(left) = left.filter(|l| *l != t.name) {
        printer::status(&format!("leaving the environment of `{left}` for `{}`", t.name));
    }
    let mut env = environment(&t, &base);
    let lease = match args.gpus {
        Some(count) => super::gpus::for_session(count, args.wait, &t.name, settings, &base, &mut env)?,
        None => None,
    };
    remember(&mut env, &base);
    let gen_name = t.generation.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A shared store: the daemon holds the root while this connection, handed to the program
    // across exec, is open.
    if let Some(pending) = pending {
        let conn = pending.wait()?;
        envctl_store::keep_across_exec(&conn)
            .map_err(|e| Failure::new("cannot hand the daemon's connection to the program", e))?;
        // Open until the program ends.
        std::mem::forget(conn);
    }
    // A user who may only read the home cannot register a root; the profile's own generation
    // link keeps the generation alive until its owner deletes it.
    let root = match daemon {
        Some(_) => None,
        None => match TempRoot::create(&settings.home, &[gen_name]) {
            Ok(root) => {
                root.inherit_across_exec().context(|| "cannot register the session's GC root".into())?;
                Some(root)
            }
            Err(e) if is_permission(&e) => {
                tracing::warn!("no GC root for this session (the home is read-only for this user): {e}");
                None
            }
            Err(e) => return Err(Failure::new("cannot register the session's GC root", e)),
        },
    };
    drop(hold);
    // Where a shell's startup files go: beside the root, or (a shared store, whose roots are the
    // daemon's) in a private directory of the user's.
    // Only a shell has startup files.
    let (companion, private) = match &root {
        Some(root) => (Some(root.path().to_path_buf()), None),
        None if daemon_mode && command.is_empty() => match private_companion() {
            Some(dir) => (Some(dir.join("startup")), Some(dir)),
            None => (None, None),
        },
        None => (None, None),
    };

    let mut extra = Vec::new();
    let (program, rest): (String, Vec<String>) = match command.split_first() {
        Some((p, r)) => (p.clone(), r.to_vec()),
        None => {
            let shell = base.get("SHELL").cloned().unwrap_or_else(|| "/bin/sh".into());
            // Without a root (a read-only home) there is nowhere to keep startup files: the shell
            // starts as it is.
            let startup = match &companion {
                Some(companion) => {
                    let zdotdir =
                        base.get("ZDOTDIR").or_else(|| base.get("HOME")).cloned().unwrap_or_default();
                    let startup = crate::shells::startup(
                        &shell,
                        &t.name,
                        &env,
                        companion,
                        &zdotdir,
                        private.as_deref(),
                    )
                    .unwrap_or_else(|e| {
                        tracing::warn!("cannot prepare the shell's startup files: {e}");
                        Default::default()
                    });
                    // A shell that reads no file of ours leaves the private directory empty.
                    if let Some(dir) = &private {
                        let _ = std::fs::remove_dir(dir);
                    }
                    startup
                }
                None => Default::default(),
            };
            extra = startup.env;
            printer::status(&format!(
                "entering `{}` ({}); exit the shell to leave",
                t.name,
                t.generation.display()
            ));
            (shell, startup.args)
        }
    };
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&rest);
    // The whole environment: what an enclosing session set is gone, not only overridden.
    cmd.env_clear();
    cmd.envs(&base);
    cmd.envs(&env);
    cmd.envs(extra);
    // The root's file stays locked in the executed program; its path is kept for GC to find.
    std::mem::forget(root);
    // So do the GPUs' leases: they end with the program.
    if let Some(lease) = lease {
        lease.keep_across_exec().map_err(|e| Failure::new("cannot hand the GPU lease to the program", e))?;
    }
    super::restore_user_umask();
    let err = cmd.exec();
    Err(Failure::new(format!("cannot run `{program}`"), err)
        .hint("check that the command exists in the profile or on PATH"))
}

/// A directory only this user can read, for a shell's startup files when the session's root is
/// the daemon's (the files are read once, as the shell starts, and the first of them removes it).
fn private_companion() -> Option<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    let dir = base.join(format!("envctl-session-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
    Some(dir)
}

fn is_permission(e: &envctl_store::Error) -> bool {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    matches!(e, envctl_store::Error::Io(io) if matches!(io.kind(), PermissionDenied | ReadOnlyFilesystem))
}
