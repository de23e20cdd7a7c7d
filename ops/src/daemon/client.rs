//! The client side: a command whose home belongs to a daemon sends its changes there.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use envctl_recipes::LockFile;

use super::protocol::{Answer, Envelope, PROTOCOL, Request};
use crate::error::{Failure, Result};
use crate::settings::{DaemonHome, Settings};

/// What a request came back with: its value, and a lock to write beside the profile file.
pub type Reply = (serde_json::Value, Option<LockFile>);

fn connect(home: &Path, daemon: &DaemonHome) -> Result<UnixStream> {
    UnixStream::connect(&daemon.socket).map_err(|e| {
        Failure::new(
            format!("cannot reach envctl's daemon at `{}`", daemon.socket.display()),
            e,
        )
        .hint(format!(
            "the store at `{}` belongs to a daemon (`{}` says so): start it (`systemctl start envctl-daemon.socket`, or `envctl daemon` as the store's owner)",
            home.display(),
            home.join(crate::settings::DAEMON_MARKER).display()
        ))
    })
}

fn exchange(conn: &UnixStream, request: Request) -> Result<Answer> {
    let mut line =
        serde_json::to_vec(&Envelope { protocol: PROTOCOL, request }).expect("a request serializes");
    line.push(b'\n');
    let lost = |e: std::io::Error| Failure::new("the daemon's connection failed", e);
    (&*conn).write_all(&line).map_err(lost)?;
    let mut answer = String::new();
    BufReader::new(conn).read_line(&mut answer).map_err(lost)?;
    if answer.trim().is_empty() {
        return Err(Failure::new("the daemon's connection failed", "it closed without an answer")
            .hint("its log says why (`journalctl -u envctl-daemon`)"));
    }
    serde_json::from_str(&answer).map_err(|e| Failure::new("the daemon's answer does not parse", e))
}

/// Sends `request` to the daemon of `settings`' home; its answer, or its failure as this
/// process's (with the lock the daemon got as far as, for the caller to write).
pub fn request(
    settings: &Settings,
    daemon: &DaemonHome,
    request: Request,
) -> std::result::Result<Reply, (Failure, Option<Box<LockFile>>)> {
    let conn = connect(&settings.home, daemon).map_err(|f| (f, None))?;
    match exchange(&conn, request).map_err(|f| (f, None))? {
        Answer::Done { value, lock } => Ok((value, lock)),
        Answer::Failed { context, cause, hints, lock } => {
            Err((Failure::from_parts(context, cause, hints), lock.map(Box::new)))
        }
    }
}

/// Asks the daemon to keep `paths` alive while the returned connection is open: a session holds
/// it (across `exec`) for as long as its program runs.
pub fn hold_roots(settings: &Settings, daemon: &DaemonHome, paths: Vec<String>) -> Result<UnixStream> {
    let conn = connect(&settings.home, daemon)?;
    match exchange(&conn, Request::HoldRoots { paths })? {
        Answer::Done { .. } => Ok(conn),
        Answer::Failed { context, cause, hints, .. } => Err(Failure::from_parts(context, cause, hints)),
    }
}
