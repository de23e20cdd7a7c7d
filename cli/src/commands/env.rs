//! `envctl env`: a profile's environment as text another program evaluates (a shell's `eval`,
//! fish's `source`, direnv's `.envrc`, a modulefile, JSON for tools); and `envctl module`, which
//! writes that modulefile.

use std::collections::BTreeMap;
use std::path::Path;

use super::Status;
use super::session::{base_env, environment, environment_at, outside_sessions, remember, target};
use crate::args::{Cli, EnvArgs, EnvFormat, ModuleArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::settings::Settings;

pub fn env(args: &EnvArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let t = target(args.profile.as_deref(), &[], settings, cli, &mut |_| Ok(()))?;
    let outer = base_env(false);
    let (base, _) = outside_sessions(outer.clone());
    let mut env = environment(&t, &base);
    remember(&mut env, &base);
    // What an enclosing session set and this one does not: back to before it, or unset.
    let unset = printable(outer.keys().filter(|k| !base.contains_key(*k) && !env.contains_key(*k)));
    let restore: Vec<(&String, &String)> = printable(
        base.iter().filter(|(k, v)| outer.get(*k) != Some(v) && !env.contains_key(*k)).map(|(k, _)| k),
    )
    .into_iter()
    .map(|k| (k, &base[k]))
    .collect();
    // Keys are checked when recipes and profile files are read; a generation written before that
    // check could still carry one that would run code in the shell that evaluates this output.
    if let Some(bad) = env.keys().find(|k| !envctl_recipes::is_variable_name(k)) {
        return Err(Failure::new(
            format!("cannot print the environment of `{}`", t.name),
            format!("its generation sets `{}`, which is not a variable name", bad.escape_debug()),
        )
        .hint(format!("remove it from the [env] table and apply the profile `{}` again", t.name)));
    }
    match args.format {
        EnvFormat::Json => printer::json(&env),
        EnvFormat::Module => {
            // Through the profile's link, with nothing of the caller's: what `module unload`
            // takes away again is what `module load` added, whichever generation is current.
            let root = t.link.clone().unwrap_or_else(|| t.generation.clone());
            for line in module_commands(&environment_at(&t, &root, &BTreeMap::new())) {
                printer::data(&line);
            }
        }
        EnvFormat::Sh | EnvFormat::Direnv => {
            if let EnvFormat::Direnv = args.format {
                // direnv loads again when a watched file changes: the profiles' directory changes
                // with every apply and rollback (its link is renamed into place), and the file.
                let watched = t.link.as_deref().and_then(Path::parent).into_iter();
                let file = t.file.iter().flat_map(|f| [f.clone(), f.with_extension("lock")]);
                for path in watched.map(Path::to_path_buf).chain(file) {
                    printer::data(&format!("watch_file {}", sh_quote(&path.display().to_string())));
                }
            }
            for k in &unset {
                printer::data(&format!("unset {k}"));
            }
            for (k, v) in env.iter().chain(restore) {
                printer::data(&format!("export {k}={}", sh_quote(v)));
            }
        }
        EnvFormat::Fish => {
            for k in &unset {
                printer::data(&format!("set -e {k}"));
            }
            for (k, v) in env.iter().chain(restore) {
                let v = v.replace('\\', "\\\\").replace('\'', "\\'");
                if k.ends_with("PATH") {
                    printer::data(&format!("set -gx {k} (string split : '{v}')"));
                } else {
                    printer::data(&format!("set -gx {k} '{v}'"));
                }
            }
        }
    }
    Ok(Status::Success)
}

/// `envctl module PROFILE`: writes `DIR/PROFILE`, a Tcl modulefile (read by Lmod and by
/// Environment Modules) that asks envctl for the profile's variables at each `module load`, so
/// that an apply or a rollback takes effect at the next load, as a Jupyter kernel's does.
pub fn module(args: &ModuleArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let t = target(Some(&args.profile), &[], settings, cli, &mut |_| Ok(()))?;
    let dir = args.out.clone().unwrap_or_else(|| settings.home.join("modulefiles"));
    let path = dir.join(&args.profile);
    let exe = std::env::current_exe().map_err(|e| Failure::new("cannot find envctl's own path", e))?;
    let packages: Vec<String> =
        t.manifest.packages.iter().map(|p| format!("{} {}", p.name, p.version)).collect();
    let text = format!(
        "#%Module1.0\n\
         ## The envctl profile `{name}`, written by `envctl module {name}`. Each `module load` asks\n\
         ## envctl for the profile's current generation: applies and rollbacks need no new file.\n\
         module-whatis {whatis}\n\
         if {{[catch {{exec {exe} --home {home} env --format module {name} 2>@stderr}} commands]}} {{\n\
         \x20   error \"envctl could not give the profile `{name}`: $commands\"\n\
         }}\n\
         eval $commands\n",
        name = args.profile,
        whatis = tcl_quote(&format!("envctl profile {}: {}", args.profile, packages.join(", "))),
        exe = tcl_quote(&exe.display().to_string()),
        home = tcl_quote(&settings.home.display().to_string()),
    );
    let parent = path.parent().unwrap_or(&dir);
    std::fs::create_dir_all(parent)
        .map_err(|e| Failure::new(format!("cannot create `{}`", parent.display()), e))?;
    envctl_store::write_atomically(&path, |f| Ok(std::io::Write::write_all(f, text.as_bytes())?))
        .map_err(|e| Failure::new(format!("cannot write `{}`", path.display()), e))?;
    printer::info(&format!("wrote {}", path.display()));
    printer::info(&format!(
        "load it with `module use {}` then `module load {}`",
        dir.display(),
        args.profile
    ));
    Ok(Status::Success)
}

/// The environment as modulefile commands: each search path's directories prepended (the last
/// first, so that they end up in their order), every other variable set.
fn module_commands(env: &BTreeMap<String, String>) -> Vec<String> {
    let mut lines = Vec::new();
    for (k, v) in env {
        if envctl_recipes::SEARCH_VARIABLES.contains(&k.as_str()) {
            for dir in v.split(':').filter(|d| !d.is_empty()).rev() {
                lines.push(format!("prepend-path {k} {}", tcl_quote(dir)));
            }
        } else {
            lines.push(format!("setenv {k} {}", tcl_quote(v)));
        }
    }
    lines
}

/// `s` as one Tcl word, taken literally.
fn tcl_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Names of `names` that can be printed as shell code, warning about the others: a caller's
/// environment can hold any name (`env 'A;touch x=1' envctl env P`).
fn printable<'a>(names: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    names
        .filter(|k| {
            let ok = envctl_recipes::is_variable_name(k);
            if !ok {
                printer::info(&format!(
                    "warning: `{}` in the environment is not a variable name; left out",
                    k.escape_debug()
                ));
            }
            ok
        })
        .collect()
}
