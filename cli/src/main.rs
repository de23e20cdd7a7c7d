//! The `envctl` binary: parse, resolve settings, call the library crates, render.

mod args;
mod commands;
mod error;
mod printer;
mod reporter;
mod settings;

fn main() -> std::process::ExitCode {
    commands::run()
}
