//! The `envctl` binary: parse, resolve settings, call the library crates, render.

mod args;
mod commands;
mod complete;
mod printer;
mod reporter;
mod shells;

// The use cases live in envctl-ops; the commands name them as they did when they lived here.
use envctl_ops::{error, manifest, resolution, sdist, settings, system};

fn main() -> std::process::ExitCode {
    commands::run()
}
