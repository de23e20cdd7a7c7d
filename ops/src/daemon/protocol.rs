//! What travels over the daemon's socket: one [`Request`] as a JSON line from the client, one
//! [`Answer`] as a JSON line back. A session's root stays held while its connection is open.

use std::collections::BTreeMap;
use std::path::PathBuf;

use envctl_recipes::LockFile;
use serde::{Deserialize, Serialize};

use crate::generations::Deletion;
use crate::manifest::Manifest;
use crate::profiles::ProfileRef;

/// The protocol version; a daemon refuses a client of another.
pub const PROTOCOL: u32 = 1;

/// A request, with the protocol version it speaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// What to do.
    pub request: Request,
}

/// What a client asks of the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Request {
    /// Are you there, and who am I to you?
    Ping,
    /// Carry out a planned apply (see `apply::execute`).
    Apply(Box<ApplyRequest>),
    /// Switch a profile to generation `to`, or to the one before the current one.
    Rollback {
        /// The profile.
        profile: ProfileRef,
        /// The generation.
        to: Option<u32>,
    },
    /// Delete generations of a profile.
    DeleteGenerations {
        /// The profile.
        profile: ProfileRef,
        /// Which.
        what: Deletion,
    },
    /// Delete a profile and all its generations.
    DeleteProfile {
        /// The profile.
        profile: ProfileRef,
        /// Only say which generations would go.
        dry_run: bool,
    },
    /// Collect garbage.
    Gc {
        /// Only say what would go.
        dry_run: bool,
    },
    /// Verify the store, repairing what is damaged.
    Repair,
    /// Hard-link identical files across the store.
    Optimise,
    /// Keep these store paths alive while this connection is open (a session's root).
    HoldRoots {
        /// Store path names.
        paths: Vec<String>,
    },
    /// Lease GPUs for a session while this connection is open (see `gpus::lease`).
    LeaseGpus {
        /// How many.
        count: usize,
        /// Wait in line rather than fail when they are not free.
        wait: bool,
        /// The session's profile, for those who look.
        profile: String,
        /// The session's process, for those who look.
        pid: u32,
    },
}

/// An apply as the client planned it: the lock, the manifest, and where the profile is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// Whose profile, and its name.
    pub profile: ProfileRef,
    /// The profile file, as messages name it (never opened by the daemon).
    pub file: PathBuf,
    /// Its lock file, as messages name it (never opened by the daemon).
    pub lock_path: PathBuf,
    /// The lock to apply.
    pub lock: LockFile,
    /// The lock file as it was, so the daemon says when the lock changed.
    pub old_lock: Option<LockFile>,
    /// The manifest the generation will record.
    pub manifest: Manifest,
    /// `[priority]`, by package.
    pub priorities: BTreeMap<String, i64>,
    /// Only the store and local sources.
    pub offline: bool,
    /// An ad-hoc environment (`shell -p …`), named by these flags: built, no profile switched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adhoc: Option<String>,
}

/// What the daemon answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum Answer {
    /// Done: what came of it (per request).
    Done {
        /// The result, as JSON.
        value: serde_json::Value,
        /// The lock as the apply left it, for the client to write beside its profile file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lock: Option<LockFile>,
    },
    /// Refused or failed: what the daemon was doing, why, and what to do.
    Failed {
        /// What it was doing.
        context: String,
        /// Why it failed (the chain of causes).
        cause: String,
        /// What to do.
        hints: Vec<String>,
        /// The lock as far as the apply got (what was installed is recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lock: Option<LockFile>,
    },
}

/// What [`Request::Ping`] answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pong {
    /// The user the daemon sees.
    pub user: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// Whether they are trusted.
    pub trusted: bool,
    /// The daemon's home.
    pub home: PathBuf,
}
