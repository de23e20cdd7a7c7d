//! Thin wrappers over the system calls std does not offer: an atomic swap of two paths and a
//! filesystem flush.

use std::path::Path;

use crate::error::Result;

/// Swaps two paths atomically (`renameat2` with `RENAME_EXCHANGE`).
pub(crate) fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    let rc = unsafe {
        libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE)
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let message = format!("cannot swap `{}` and `{}`: {e}", a.display(), b.display());
        return Err(std::io::Error::new(e.kind(), message).into());
    }
    Ok(())
}

/// Flushes the filesystem holding `dir` to disk: one `syncfs` call covers every file of a tree,
/// where an `fsync` per file would cost a system call (and a journal commit) each.
pub(crate) fn sync_filesystem(dir: &Path) -> Result<()> {
    let handle = fs_err::File::open(dir)?;
    // SAFETY: `handle` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&handle)) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(
            std::io::Error::new(e.kind(), format!("cannot flush `{}` to disk: {e}", dir.display())).into()
        );
    }
    Ok(())
}
