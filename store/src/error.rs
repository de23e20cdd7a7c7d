//! Errors of the store layer. Each variant carries what a person needs to act: the URL, the
//! path, the expected and the actual value.

use std::path::PathBuf;

/// Anything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes fetched from a source do not have the sha256 the caller stated.
    #[error("sha256 mismatch for `{url}`: expected {expected}, got {actual} ({size} bytes)")]
    HashMismatch {
        /// Where the bytes came from.
        url: String,
        /// The digest the recipe (or `--sha256`) stated.
        expected: String,
        /// The digest of what arrived.
        actual: String,
        /// How many bytes arrived.
        size: u64,
    },
    /// A server answered with an HTTP error status.
    #[error("`{url}` answered HTTP {status}")]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A redirect that is not followed.
    #[error("`{from}` redirects to `{to}`, which is not followed: {why}")]
    Redirect {
        /// The URL that answered with the redirect.
        from: String,
        /// Where it pointed.
        to: String,
        /// Why it is not followed.
        why: String,
    },
    /// A connection could not be made, broke, or timed out.
    #[error("could not download `{url}`: {message}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What the transport said.
        message: String,
    },
    /// The server's TLS certificate is not one the system's certificate store vouches for: not
    /// retried, since asking again gets the same certificate.
    #[error("could not download `{url}`: {message}")]
    UntrustedServer {
        /// The URL requested.
        url: String,
        /// What the TLS layer said, and what to do.
        message: String,
    },
    /// Every candidate URL of a source failed.
    #[error("every location of `{url}` failed:\n{}", .errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    AllLocationsFailed {
        /// The source as written.
        url: String,
        /// One line per failed attempt.
        errors: Vec<String>,
    },
    /// A `mirror://NAME/…` URL names a mirror the configuration does not define.
    #[error("`{url}` names mirror `{name}`, which the configuration does not define")]
    UnknownMirror {
        /// The source as written.
        url: String,
        /// The mirror name.
        name: String,
    },
    /// A URL scheme envctl cannot fetch.
    #[error("cannot fetch `{0}`: supported are http://, https://, file://, mirror:// and plain paths")]
    UnsupportedUrl(String),
    /// The archive format could not be told from the file name.
    #[error("cannot tell the archive format of `{0}` from its name")]
    UnknownFormat(String),
    /// An archive entry that would write outside the tree, through a link, or is otherwise unsafe.
    #[error("refusing archive `{archive}`: entry `{entry}` {reason}")]
    UnsafeEntry {
        /// The archive (its URL or path).
        archive: String,
        /// The entry's path as the archive spells it.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An archive exceeds the configured unpack limits (a decompression bomb, or a huge package).
    #[error("refusing archive `{archive}`: {what}")]
    LimitExceeded {
        /// The archive (its URL or path).
        archive: String,
        /// Which limit, and its value.
        what: String,
    },
    /// The archive could not be read (truncated, corrupt, wrong format).
    #[error("cannot unpack `{archive}` as {format}: {source}")]
    Archive {
        /// The archive (its URL or path).
        archive: String,
        /// The format it was read as.
        format: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A signing key that cannot be used.
    #[error("{0}")]
    Key(String),
    /// A path from a cache or an export that fails a check; nothing of it is registered.
    #[error("refusing `{name}`: {why}")]
    Untrusted {
        /// The store path (or the object) concerned.
        name: String,
        /// Which check failed.
        why: String,
    },
    /// A file system operation failed (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A corrupted path could not be put right.
    #[error("cannot repair `{name}`: {why}")]
    Unrepairable {
        /// The store path's file name.
        name: String,
        /// Why, per source tried.
        why: String,
    },
    /// The database failed.
    #[error("store database `{path}`: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database or the store layout was written by a newer envctl.
    #[error("`{path}` has format version {found}, newer than this envctl understands ({supported})")]
    TooNew {
        /// The database or layout file.
        path: PathBuf,
        /// The version found on disk.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A value that does not follow its rules (a name, a version, a digest, a store path).
    #[error("invalid {what} `{value}`: {rule}")]
    Invalid {
        /// What kind of value.
        what: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// Two packages ship the same path with different contents.
    #[error("`{first}` and `{second}` both ship `{path}` with different contents")]
    Collision {
        /// The path inside the profile.
        path: String,
        /// One package.
        first: String,
        /// The other.
        second: String,
    },
    /// A generation number that does not exist.
    #[error("profile `{profile}` has no generation {number}")]
    NoGeneration {
        /// The profile.
        profile: String,
        /// The number asked for.
        number: u32,
    },
    /// An attempt to delete the current generation.
    #[error("generation {number} is the current generation of `{profile}`; switch away from it first")]
    DeleteCurrent {
        /// The profile.
        profile: String,
        /// The number.
        number: u32,
    },
    /// Offline, and a source has no local location.
    #[error("`{url}` is not in the store and has no local source (offline)")]
    Offline {
        /// The source URL.
        url: String,
    },
    /// The store cannot be changed by this user.
    #[error(
        "the store at `{0}` is read-only for this user: it can be read, run from and verified, not changed"
    )]
    ReadOnly(PathBuf),
    /// A path that is not (or no longer) a valid store path.
    #[error("`{0}` is not a valid path in this store")]
    NotInStore(String),
    /// An `index://NAME/…` source whose index is not configured.
    #[error("`{url}` names the package index `{name}`, which is not configured")]
    UnknownIndex {
        /// The source.
        url: String,
        /// The index name.
        name: String,
    },
    /// No base of the index has the file.
    #[error("no base of the package index `{name}` has `{url}`: {}", tried.join("; "))]
    NotOnIndex {
        /// The source.
        url: String,
        /// The index name.
        name: String,
        /// What each base answered.
        tried: Vec<String>,
    },
    /// A source distribution's build backend failed, or made no pure wheel.
    #[error("{0}")]
    Build(String),
    /// A derived path (bytecode, a `pyvenv.cfg`) could not be made.
    #[error("cannot make `{key}`: {message}")]
    Derivation {
        /// What was being made.
        key: String,
        /// Why not.
        message: String,
    },
}

impl Error {
    /// Whether trying the same location again may succeed: connection errors, timeouts, 5xx and
    /// 429. Never a 404 or a hash mismatch.
    pub fn should_retry(&self) -> bool {
        match self {
            Error::Transport { .. } => true,
            Error::HttpStatus { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }

    /// Whether the store's own disk refused a write (full, over quota, read-only): no other
    /// location of the same path would fare better, so nothing else is tried.
    pub fn is_out_of_room(&self) -> bool {
        use std::io::ErrorKind::{QuotaExceeded, ReadOnlyFilesystem, StorageFull};
        matches!(self, Error::Io(e) if matches!(e.kind(), StorageFull | QuotaExceeded | ReadOnlyFilesystem))
    }

    pub(crate) fn db(path: &std::path::Path, source: rusqlite::Error) -> Error {
        Error::Database { path: path.to_path_buf(), source }
    }
}

/// Result with the store's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<envctl_core::Invalid> for Error {
    fn from(e: envctl_core::Invalid) -> Error {
        Error::Invalid { what: e.what, value: e.value, rule: e.rule }
    }
}
