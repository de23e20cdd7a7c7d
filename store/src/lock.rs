//! Advisory file locks (std's `File::lock`, `flock(2)` on Linux), released when the holder closes
//! the file or dies.
//!
//! Who may run beside whom:
//!
//! | lock | file | shared by | exclusive for |
//! | --- | --- | --- | --- |
//! | gc | `store/.envctl/gc.lock` | nobody | a collector ([`crate::Store::open_collector`]), for its whole run |
//! | store | `store/.envctl/store.lock` | installs, optimise, profile switches | a collector until it has swept (taken so from the start, never upgraded from shared); the sweep of leftovers at start-up |
//! | maintenance | `store/.envctl/maintenance.lock` | verify | optimise, repair (they rewrite entries of valid paths) |
//! | source | `store/.envctl/locks/<key>.lock` | nobody | the one process fetching and unpacking that source |
//! | path | `store/.envctl/locks/<hash part>.lock` | nobody | moving a finished tree into place and registering it |
//!
//! Locks are always taken in that order (gc, store, maintenance, source, path), so they cannot
//! deadlock. After taking a source or path lock the holder re-checks the database: another
//! process may have finished the same work while it waited.
//!
//! # Nobody else can hold them
//!
//! `flock` works on any descriptor, a read-only one too, so a lock file anyone could open would
//! let anyone who may read a home freeze every command of its owner. Lock files are created
//! `0600` (older ones are narrowed to it when their owner opens them), and a process that cannot
//! open one (another user, reading the home) takes no lock at all: readers (sessions, listings,
//! verify) stay lock-free; writers cannot be anyone but the owner anyway.
//!
//! # Waiting says who for
//!
//! A lock that is not free at once is polled. After a second of waiting, the [`WaitPolicy`]'s
//! notice is told which processes hold it (from `/proc/locks`: PID, command, user), once; with a
//! timeout, the wait ends with an error naming them.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A held lock; dropping it releases the lock. A reader who may not open the lock file holds
/// a lock that locks nothing (see the module docs).
#[derive(Debug)]
pub struct FileLock {
    file: Option<std::fs::File>,
}

/// How long to wait for a lock another process holds, and what to say meanwhile. Set once by the
/// binary ([`set_wait_policy`]); the default waits without a word.
pub struct WaitPolicy {
    /// Give up after this long (an error naming the holders); `None` waits for ever.
    pub timeout: Option<Duration>,
    /// Told once, after a second of waiting.
    pub notice: fn(&Waiting<'_>),
}

/// A wait for a lock, as a [`WaitPolicy`]'s notice is told of it.
#[derive(Debug)]
pub struct Waiting<'a> {
    /// The lock file.
    pub path: &'a Path,
    /// Who holds it now, as far as `/proc/locks` says.
    pub holders: Vec<Holder>,
}

/// A process that holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its pid.
    pub pid: u32,
    /// Its command line, shortened.
    pub command: String,
    /// Its user's name (or uid).
    pub user: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PID {} (`{}`, user {})", self.pid, self.command, self.user)
    }
}

static POLICY: OnceLock<WaitPolicy> = OnceLock::new();

/// Sets how every lock of this process waits (the first call wins).
pub fn set_wait_policy(policy: WaitPolicy) {
    let _ = POLICY.set(policy);
}

/// How long a waiter waits before the notice.
const NOTICE_AFTER: Duration = Duration::from_secs(1);

/// The two kinds of lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Shared,
    Exclusive,
}

/// Takes the lock if nobody holds a conflicting one (std's `File::try_lock*`, which is
/// `flock(2)` with `LOCK_NB` on Linux); `false` when someone does.
fn try_take(file: &std::fs::File, kind: Kind) -> std::io::Result<bool> {
    let taken = match kind {
        Kind::Shared => file.try_lock_shared(),
        Kind::Exclusive => file.try_lock(),
    };
    match taken {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Takes a `kind` lock on `file`, waiting as the process's [`WaitPolicy`] says.
fn wait_for(file: &std::fs::File, kind: Kind, path: &Path) -> std::io::Result<()> {
    wait_with(file, kind, path, POLICY.get())
}

fn wait_with(
    file: &std::fs::File,
    kind: Kind,
    path: &Path,
    policy: Option<&WaitPolicy>,
) -> std::io::Result<()> {
    if try_take(file, kind)? {
        return Ok(());
    }
    let timeout = policy.and_then(|p| p.timeout);
    let started = Instant::now();
    let mut told = false;
    let mut nap = Duration::from_millis(5);
    loop {
        let waited = started.elapsed();
        if let Some(limit) = timeout
            && waited >= limit
        {
            let holders: Vec<String> = holders(file).iter().map(Holder::to_string).collect();
            let by = if holders.is_empty() { "another process".to_owned() } else { holders.join(", ") };
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "gave up waiting for the lock `{}` after {limit:?}: it is held by {by}",
                    path.display()
                ),
            ));
        }
        if !told && waited >= NOTICE_AFTER {
            told = true;
            if let Some(p) = policy {
                (p.notice)(&Waiting { path, holders: holders(file) });
            }
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(100));
        if try_take(file, kind)? {
            return Ok(());
        }
    }
}

/// Who holds a lock on `file`'s inode, from `/proc/locks` (lines `N: FLOCK ADVISORY WRITE PID
/// MAJ:MIN:INODE 0 EOF`; waiters, marked `->`, are left out).
fn holders(file: &std::fs::File) -> Vec<Holder> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = file.metadata() else { return Vec::new() };
    let id = format!("{:02x}:{:02x}:{}", libc::major(meta.dev()), libc::minor(meta.dev()), meta.ino());
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut out: Vec<Holder> = text
        .lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == id)?;
            let pid: u32 = fields.get(at.checked_sub(1)?)?.parse().ok()?;
            Some(pid)
        })
        .map(describe)
        .collect();
    out.dedup();
    out
}

/// A process's command line and user, as `/proc` says (`?` for what it does not).
fn describe(pid: u32) -> Holder {
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            let text: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let mut text = text.join(" ");
            if text.len() > 80 {
                let cut = (0..=77).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                text.truncate(cut);
                text.push('…');
            }
            text
        })
        .unwrap_or_else(|_| "?".into());
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next().map(str::to_owned))
    });
    let user = match uid {
        Some(uid) => std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|p| {
                p.lines().find_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    (f.nth(1)? == uid).then(|| name.to_owned())
                })
            })
            .unwrap_or(uid),
        None => "?".into(),
    };
    Holder { pid, command, user }
}

/// Opens (creating, mode 0600) a lock file; `None` when it exists and this process may not open
/// it for writing (another user's home): such a process locks nothing (see the module docs).
fn open(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
    match opened {
        Ok(file) => {
            // Made by an older envctl, 0644: nobody else should be able to open it either.
            if let Ok(meta) = file.metadata()
                && meta.permissions().mode() & 0o077 != 0
            {
                let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
            }
            Ok(Some(file))
        }
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EROFS | libc::EPERM))
                && path.exists() =>
        {
            Ok(None)
        }
        Err(e) => {
            Err(std::io::Error::new(e.kind(), format!("failed to open lock file `{}`: {e}", path.display())))
        }
    }
}

/// The error for an exclusive lock this process may not open.
fn not_ours(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!("cannot lock `{}`: it belongs to another user", path.display()),
    )
}

impl FileLock {
    /// Waits for a shared lock on `path`, creating the file if needed. A reader who may not open
    /// it gets a lock that locks nothing.
    pub fn shared(path: &Path) -> std::io::Result<FileLock> {
        let Some(file) = open(path)? else { return Ok(FileLock { file: None }) };
        wait_for(&file, Kind::Shared, path)?;
        Ok(FileLock { file: Some(file) })
    }

    /// Waits for an exclusive lock on `path`, creating the file if needed.
    pub fn exclusive(path: &Path) -> std::io::Result<FileLock> {
        let file = open(path)?.ok_or_else(|| not_ours(path))?;
        wait_for(&file, Kind::Exclusive, path)?;
        Ok(FileLock { file: Some(file) })
    }

    /// Takes an exclusive lock on `path` if nobody holds any lock on it (`None` also when this
    /// process may not open it).
    pub fn try_exclusive(path: &Path) -> std::io::Result<Option<FileLock>> {
        let Some(file) = open(path)? else { return Ok(None) };
        Ok(try_take(&file, Kind::Exclusive)?.then_some(FileLock { file: Some(file) }))
    }

    /// A lock that locks nothing, as a reader who may not open a lock file holds.
    pub(crate) fn none() -> FileLock {
        FileLock { file: None }
    }

    /// Whether this holds a lock (a reader who may not open the file holds none).
    pub fn held(&self) -> bool {
        self.file.is_some()
    }

    /// Lets the lock survive `exec`: the executed program (and its children) hold it. Nothing to
    /// do when nothing is held.
    pub fn keep_across_exec(&self) -> std::io::Result<()> {
        match &self.file {
            Some(file) => keep_across_exec(file),
            None => Ok(()),
        }
    }

    /// The descriptor (to hand a lock to an `exec`ed program); `None` when nothing is held.
    pub fn as_raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.file.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Turns a held exclusive lock into a shared one.
    pub fn downgrade(&self) -> std::io::Result<()> {
        match &self.file {
            Some(file) => file.lock_shared(),
            None => Ok(()),
        }
    }
}

/// Clears a descriptor's close-on-exec flag, so that a program this process `exec`s inherits it
/// (a lock, a connection to the daemon).
pub fn keep_across_exec(fd: impl std::os::fd::AsFd) -> std::io::Result<()> {
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NOTICES: AtomicUsize = AtomicUsize::new(0);

    fn count(w: &Waiting<'_>) {
        assert!(w.holders.iter().any(|h| h.pid == std::process::id()), "{:?}", w.holders);
        NOTICES.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_wait_names_the_holder_once_and_a_timeout_ends_it_naming_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = envctl_testkit::tempdir();
        let path = dir.path().join("store.lock");
        // An older envctl's lock file, readable by everyone: narrowed when opened.
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let held = FileLock::exclusive(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let holders = holders(held.file.as_ref().unwrap());
        assert_eq!(holders.len(), 1, "{holders:?}");
        assert_eq!(holders[0].pid, std::process::id());
        assert!(!holders[0].command.is_empty() && holders[0].user != "?", "{holders:?}");

        let file = open(&path).unwrap().unwrap();
        let policy = WaitPolicy { timeout: Some(Duration::from_millis(1500)), notice: count };
        let started = Instant::now();
        let e = wait_with(&file, Kind::Shared, &path, Some(&policy)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(1500));
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        let text = e.to_string();
        assert!(
            text.contains("store.lock") && text.contains(&format!("PID {}", std::process::id())),
            "{text}"
        );
        assert_eq!(NOTICES.load(Ordering::SeqCst), 1, "told once, after a second");
        // Released: the same wait succeeds at once.
        drop(held);
        wait_with(&file, Kind::Shared, &path, Some(&policy)).unwrap();
    }
}
