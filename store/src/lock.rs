//! Advisory file locks (`flock(2)`), released when the holder closes the file or dies.
//!
//! Who may run beside whom:
//!
//! | lock | file | shared by | exclusive for |
//! | --- | --- | --- | --- |
//! | store | `store/.envctl/store.lock` | installs, optimise, profile switches | GC; the sweep of leftovers at start-up |
//! | maintenance | `store/.envctl/maintenance.lock` | verify | optimise, repair (they rewrite entries of valid paths) |
//! | source | `store/.envctl/locks/<key>.lock` | nobody | the one process fetching and unpacking that source |
//! | path | `store/.envctl/locks/<hash part>.lock` | nobody | moving a finished tree into place and registering it |
//!
//! Locks are always taken in that order (store, maintenance, source, path), so they cannot
//! deadlock. After taking a source or path lock the holder re-checks the database: another
//! process may have finished the same work while it waited.

use std::os::fd::AsRawFd;
use std::path::Path;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct FileLock {
    file: std::fs::File,
}

fn flock(file: &std::fs::File, op: libc::c_int) -> std::io::Result<bool> {
    loop {
        // SAFETY: the descriptor is valid for the life of `file`, which outlives the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Opens (creating, mode 0644) a lock file. A user who may only read the home opens it
/// read-only: `flock` works on any descriptor, so readers (sessions, listings, verify) still
/// take their shared locks and stay out of a GC's way.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path);
    let opened = match opened {
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EROFS | libc::EPERM))
                && path.exists() =>
        {
            std::fs::File::open(path)
        }
        other => other,
    };
    opened.map_err(|e| {
        std::io::Error::new(e.kind(), format!("failed to open lock file `{}`: {e}", path.display()))
    })
}

impl FileLock {
    /// Waits for a shared lock on `path`, creating the file if needed.
    pub fn shared(path: &Path) -> std::io::Result<FileLock> {
        let file = open(path)?;
        flock(&file, libc::LOCK_SH)?;
        Ok(FileLock { file })
    }

    /// Waits for an exclusive lock on `path`, creating the file if needed.
    pub fn exclusive(path: &Path) -> std::io::Result<FileLock> {
        let file = open(path)?;
        flock(&file, libc::LOCK_EX)?;
        Ok(FileLock { file })
    }

    /// Takes an exclusive lock on `path` if nobody holds any lock on it.
    pub fn try_exclusive(path: &Path) -> std::io::Result<Option<FileLock>> {
        let file = open(path)?;
        Ok(flock(&file, libc::LOCK_EX | libc::LOCK_NB)?.then_some(FileLock { file }))
    }

    /// Turns a held shared lock into an exclusive one, waiting for other holders. Not atomic
    /// (flock(2) drops the shared lock first), so two upgraders cannot deadlock.
    pub fn upgrade(&self) -> std::io::Result<()> {
        flock(&self.file, libc::LOCK_EX).map(|_| ())
    }

    /// The descriptor (to hand a lock to an `exec`ed program).
    pub fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// Turns a held exclusive lock into a shared one.
    pub fn downgrade(&self) -> std::io::Result<()> {
        flock(&self.file, libc::LOCK_SH).map(|_| ())
    }
}
