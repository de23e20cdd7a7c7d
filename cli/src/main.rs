//! The `envctl` binary: parse, resolve settings, call the library crates, render.

mod args;
mod commands;
mod error;
mod manifest;
mod pipconf;
mod printer;
mod python;
mod reporter;
mod resolution;
mod sdist;
mod settings;
mod shells;
mod system;

fn main() -> std::process::ExitCode {
    commands::run()
}
