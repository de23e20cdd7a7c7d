//! `envctl daemon`: serve a store several users share (envctl-ops's `daemon::server`).

use envctl_ops::daemon::server::Daemon;

use super::Status;
use crate::args::DaemonArgs;
use crate::error::Result;
use crate::printer;
use crate::settings::Settings;

pub fn run(args: &DaemonArgs, settings: &Settings) -> Result<Status> {
    let daemon = Daemon::bind(settings.clone(), args.socket.as_deref())?;
    printer::status(&format!(
        "serving the store of `{}` on `{}`",
        settings.home.display(),
        daemon.socket().display()
    ));
    daemon.serve()?;
    Ok(Status::Success)
}
