//! `envctl env`: a profile's environment as text another program evaluates (a shell's `eval`,
//! fish's `source`, JSON for tools).

use super::Status;
use super::session::{base_env, environment, outside_sessions, remember, target};
use crate::args::{Cli, EnvArgs, EnvFormat};
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
        EnvFormat::Sh => {
            for k in &unset {
                printer::data(&format!("unset {k}"));
            }
            for (k, v) in env.iter().chain(restore) {
                printer::data(&format!("export {k}='{}'", v.replace('\'', "'\\''")));
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
