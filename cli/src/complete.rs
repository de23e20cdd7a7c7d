//! Completion of what the command line cannot know in advance: profile names (the user's own
//! and, on a shared machine, every team's) and package names (the recipe repositories'). The
//! script `envctl completions SHELL` prints calls `ENVCTL_COMPLETE=SHELL envctl -- WORDS…` at each Tab
//! (clap_complete's dynamic completion), answered before any other work, so completions follow
//! the binary and the machine as they change.

use std::ffi::OsStr;

use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};

/// Completes a profile name, or a profile file in the current directory.
pub fn profile() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let current = current.to_string_lossy();
        let mut names = profile_names();
        names.extend(toml_files());
        names.sort();
        names.dedup();
        candidates(names, &current)
    })
}

/// Completes a package name (`NAME` of `NAME=REQ` too).
pub fn package() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| candidates(package_names(), &current.to_string_lossy()))
}

fn candidates(names: Vec<String>, current: &str) -> Vec<CompletionCandidate> {
    names.into_iter().filter(|n| n.starts_with(current)).map(CompletionCandidate::new).collect()
}

/// The settings of a plain invocation: the environment's `ENVCTL_HOME` and `ENVCTL_CONFIG`, or
/// the defaults (flags typed on the line are not seen while completing).
fn settings() -> Option<envctl_ops::Settings> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(Into::into);
    let invocation = envctl_ops::Invocation {
        home: var("ENVCTL_HOME"),
        config: var("ENVCTL_CONFIG"),
        ..Default::default()
    };
    envctl_ops::Settings::load(&invocation).ok()
}

fn profile_names() -> Vec<String> {
    let Some(settings) = settings() else { return Vec::new() };
    let mut names = Vec::new();
    for (profiles, team) in envctl_ops::profiles::visible(&settings) {
        for short in profiles.names().unwrap_or_default() {
            names.push(match &team {
                Some(t) => format!("{t}/{short}"),
                None => short,
            });
        }
    }
    names
}

fn toml_files() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(".") else { return Vec::new() };
    dir.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml") && !n.starts_with('.'))
        .collect()
}

fn package_names() -> Vec<String> {
    let Some(repo) = settings().and_then(|s| s.repository().ok()) else { return Vec::new() };
    repo.names().map(|n| n.to_string()).collect()
}
