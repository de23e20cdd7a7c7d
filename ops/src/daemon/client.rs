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
    request_roots(settings, daemon, paths)?.wait()
}

/// A request for roots sent and not yet answered: the session computes its environment while
/// the daemon registers the root, and waits for the answer only before it runs its program.
pub struct PendingRoots {
    conn: UnixStream,
}

/// Asks the daemon for `count` GPUs for this process's session of `profile` (see
/// `gpus::lease`); with `wait`, the answer comes when they are free. The lease lasts while the
/// returned connection is open: the caller hands it to the session's program.
pub fn lease_gpus(
    settings: &Settings,
    daemon: &DaemonHome,
    count: usize,
    wait: bool,
    profile: &str,
) -> Result<(UnixStream, Vec<String>)> {
    let request = Request::LeaseGpus { count, wait, profile: profile.to_owned(), pid: std::process::id() };
    let (conn, value) = send_held(settings, daemon, request)?.answer()?;
    let uuids = value["uuids"]
        .as_array()
        .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok((conn, uuids))
}

/// Sends a [`Request::HoldRoots`] without waiting for the answer (see [`PendingRoots`]).
pub fn request_roots(settings: &Settings, daemon: &DaemonHome, paths: Vec<String>) -> Result<PendingRoots> {
    send_held(settings, daemon, Request::HoldRoots { paths })
}

/// Sends a request whose effect lasts while its connection is open, without waiting.
fn send_held(settings: &Settings, daemon: &DaemonHome, request: Request) -> Result<PendingRoots> {
    let conn = connect(&settings.home, daemon)?;
    let mut line =
        serde_json::to_vec(&Envelope { protocol: PROTOCOL, request }).expect("a request serializes");
    line.push(b'\n');
    (&conn).write_all(&line).map_err(|e| Failure::new("the daemon's connection failed", e))?;
    Ok(PendingRoots { conn })
}

impl PendingRoots {
    /// Waits for the daemon to hold the roots; the connection holds them while it is open.
    pub fn wait(self) -> Result<UnixStream> {
        self.answer().map(|(conn, _)| conn)
    }

    /// Waits for the daemon's answer: the connection, which holds what was asked while it is
    /// open, and what the daemon said.
    fn answer(self) -> Result<(UnixStream, serde_json::Value)> {
        let mut answer = String::new();
        BufReader::new(&self.conn)
            .read_line(&mut answer)
            .map_err(|e| Failure::new("the daemon's connection failed", e))?;
        let answer: Answer = serde_json::from_str(&answer).map_err(|e| {
            Failure::new("the daemon's answer does not parse", e)
                .hint("its log says why (`journalctl -u envctl-daemon`)")
        })?;
        match answer {
            Answer::Done { value, .. } => Ok((self.conn, value)),
            Answer::Failed { context, cause, hints, .. } => Err(Failure::from_parts(context, cause, hints)),
        }
    }
}
