//! Thin wrappers over the system calls std does not offer: an atomic swap of two paths, a
//! filesystem flush, entries made relative to an open directory, and read-only mappings.

use std::path::Path;

use crate::error::Result;

/// Swaps two paths atomically (`renameat2` with `RENAME_EXCHANGE`). Directories in two parents
/// need write permission on themselves, as in [`rename_dir`]: for anyone but root a read-only one
/// is opened for the swap and each gets its own mode back, wherever it now is.
pub(crate) fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let swap = || -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
        let (ca, cb) = (c(a)?, c(b)?);
        // SAFETY: both are valid NUL-terminated paths for the duration of the call.
        let rc = unsafe {
            libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE)
        };
        if rc != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    };
    let context = |e: std::io::Error| -> crate::error::Error {
        let message = format!("cannot swap `{}` and `{}`: {e}", a.display(), b.display());
        std::io::Error::new(e.kind(), message).into()
    };
    let first = match swap() {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => e,
        Err(e) => return Err(context(e)),
    };
    // Directories whose owner-write bit is off, with their modes.
    let closed = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .filter(|m| m.is_dir() && m.permissions().mode() & 0o200 == 0)
            .map(|m| m.permissions().mode() & 0o7777)
    };
    let (mode_a, mode_b) = (closed(a), closed(b));
    if mode_a.is_none() && mode_b.is_none() {
        return Err(context(first));
    }
    let set = |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
    for (p, mode) in [(a, mode_a), (b, mode_b)] {
        if let Some(mode) = mode {
            set(p, mode | 0o200).map_err(context)?;
        }
    }
    let swapped = swap();
    // What was at `a` is at `b` now, and the other way round, unless the swap failed.
    let (at_a, at_b) = if swapped.is_ok() { (mode_b, mode_a) } else { (mode_a, mode_b) };
    for (p, mode) in [(a, at_a), (b, at_b)] {
        if let Some(mode) = mode {
            set(p, mode).map_err(context)?;
        }
    }
    swapped.map_err(context)
}

/// An open directory, for creating and reading entries relative to it: a farm of 60,000 links
/// costs one path lookup per directory instead of one per link.
pub(crate) struct DirFd(std::os::fd::OwnedFd);

fn c_name(name: &std::ffi::OsStr) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(name.as_bytes()).map_err(std::io::Error::other)
}

fn with_path(e: std::io::Error, what: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("failed to {what} `{}`: {e}", path.display()))
}

impl DirFd {
    /// Opens the directory at `path` (a symlink is not followed).
    pub(crate) fn open(path: &Path) -> std::io::Result<DirFd> {
        let name = c_name(path.as_os_str())?;
        DirFd::open_raw(libc::AT_FDCWD, &name).map_err(|e| with_path(e, "open directory", path))
    }

    /// Opens the directory `name` inside `parent`; `shown` names it in errors.
    pub(crate) fn open_at(parent: &DirFd, name: &std::ffi::OsStr, shown: &Path) -> std::io::Result<DirFd> {
        use std::os::fd::AsRawFd;
        DirFd::open_raw(parent.0.as_raw_fd(), &c_name(name)?)
            .map_err(|e| with_path(e, "open directory", shown))
    }

    fn open_raw(at: libc::c_int, name: &std::ffi::CStr) -> std::io::Result<DirFd> {
        use std::os::fd::FromRawFd;
        let fd = open_reading(at, name, libc::O_DIRECTORY)?;
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        Ok(DirFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn raw(&self) -> libc::c_int {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    /// Its metadata (`fstat`).
    pub(crate) fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.as_file(|f| f.metadata())
    }

    /// Flushes the directory (its entries and its own metadata) to disk.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.as_file(|f| f.sync_all())
    }

    /// Runs `f` with this descriptor seen as a `File`, without giving it up.
    fn as_file<T>(&self, f: impl FnOnce(&std::fs::File) -> T) -> T {
        use std::os::fd::FromRawFd;
        // SAFETY: the `File` borrows the descriptor for the call and is never dropped (so never
        // closes it).
        let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(self.raw()) });
        f(&file)
    }

    /// Its entries but `.` and `..`, each with its type when the filesystem gives it
    /// (`readdir`'s `d_type`), in no particular order.
    pub(crate) fn entries(&self) -> std::io::Result<Vec<(std::ffi::OsString, Option<EntryKind>)>> {
        use std::os::unix::ffi::OsStrExt;
        // fdopendir takes the descriptor it is given, and closedir closes it: give it a copy.
        // SAFETY: duplicating a valid descriptor.
        let copy = unsafe { libc::fcntl(self.raw(), libc::F_DUPFD_CLOEXEC, 0) };
        if copy < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `copy` is a fresh descriptor of a directory, owned by the stream from here on.
        let stream = unsafe { libc::fdopendir(copy) };
        if stream.is_null() {
            let e = std::io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `copy` is still ours to close.
            unsafe { libc::close(copy) };
            return Err(e);
        }
        // The stream reads from the copy's offset, which it shares with this descriptor.
        // SAFETY: `stream` is a valid directory stream.
        unsafe { libc::rewinddir(stream) };
        let mut out = Vec::new();
        let result = loop {
            // SAFETY: errno is thread-local; clearing it tells end-of-stream from an error.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `stream` is valid until closedir below.
            let entry = unsafe { libc::readdir64(stream) };
            if entry.is_null() {
                let e = std::io::Error::last_os_error();
                break if e.raw_os_error() == Some(0) { Ok(()) } else { Err(e) };
            }
            // SAFETY: readdir64 returned a valid entry whose name is NUL-terminated.
            let (name, kind) =
                unsafe { (std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()).to_bytes(), (*entry).d_type) };
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match kind {
                libc::DT_DIR => Some(EntryKind::Dir),
                libc::DT_REG => Some(EntryKind::File),
                libc::DT_LNK => Some(EntryKind::Symlink),
                libc::DT_UNKNOWN => None,
                _ => Some(EntryKind::Other),
            };
            out.push((std::ffi::OsStr::from_bytes(name).to_os_string(), kind));
        };
        // SAFETY: closing the stream once; it closes `copy`.
        unsafe { libc::closedir(stream) };
        result.map(|()| out)
    }
}

/// What a directory entry is, as `readdir` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    File,
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

/// Opens the regular file `name` in `dir` for reading; a symlink there is not followed (the
/// open fails), nor does a FIFO block it.
pub(crate) fn open_file_at(dir: &DirFd, name: &std::ffi::OsStr) -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let fd = open_reading(dir.raw(), &c_name(name)?, libc::O_NONBLOCK | libc::O_NOCTTY)?;
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Starts writing `file`'s dirty pages to disk without waiting for them (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`): this flushes nothing by itself and guarantees nothing, it only moves
/// the disk work earlier. A failure changes nothing and is ignored.
pub(crate) fn start_writeback(file: &std::fs::File) {
    // SAFETY: a valid descriptor; offset 0 and length 0 mean the whole file.
    unsafe {
        libc::sync_file_range(std::os::fd::AsRawFd::as_raw_fd(file), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
    };
}

/// Set once the kernel has refused `O_NOATIME` (the store belongs to another user).
static NOATIME_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `openat` for reading, not following a final symlink, with `extra` flags. Store entries are
/// opened `O_NOATIME` where the kernel allows it (the caller owns them): a scan of the store
/// would otherwise dirty the inode of every file it reads (on a `relatime` mount the first read
/// after a write updates the access time), and those inodes would then have to be written back.
fn open_reading(at: libc::c_int, name: &std::ffi::CStr, extra: libc::c_int) -> std::io::Result<libc::c_int> {
    use std::sync::atomic::Ordering;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | extra;
    if !NOATIME_REFUSED.load(Ordering::Relaxed) {
        // SAFETY: a valid descriptor (or AT_FDCWD) and a NUL-terminated name.
        let fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_NOATIME) };
        if fd >= 0 {
            return Ok(fd);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
        NOATIME_REFUSED.store(true, Ordering::Relaxed);
    }
    // SAFETY: as above.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags) };
    if fd < 0 { Err(std::io::Error::last_os_error()) } else { Ok(fd) }
}

/// `lstat` of `name` in `dir`: a symlink there is described, not followed.
pub(crate) fn stat_at(dir: &DirFd, name: &std::ffi::OsStr) -> std::io::Result<libc::stat> {
    let c = c_name(name)?;
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and NUL-terminated name; the kernel fills `st`.
    if unsafe { libc::fstatat(dir.raw(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// The target of the symlink `name` in `dir`.
pub(crate) fn read_link_at(dir: &DirFd, name: &std::ffi::OsStr) -> std::io::Result<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    let c = c_name(name)?;
    let mut buf = [0u8; 4096];
    // SAFETY: a valid descriptor and name; the kernel writes at most `buf.len()` bytes.
    let n = unsafe { libc::readlinkat(dir.raw(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    Ok(std::ffi::OsStr::from_bytes(&buf[..n]).to_os_string())
}

/// Creates the directory `name` in `dir` (mode 0755); `shown` names it in errors.
pub(crate) fn mkdir_at(dir: &DirFd, name: &std::ffi::OsStr, shown: &Path) -> std::io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: a valid descriptor and NUL-terminated name for the duration of the call.
    if unsafe { libc::mkdirat(dir.raw(), c.as_ptr(), 0o755) } != 0 {
        return Err(with_path(std::io::Error::last_os_error(), "create directory", shown));
    }
    Ok(())
}

/// Creates the symlink `name` → `target` in `dir`; `shown` names it in errors.
pub(crate) fn symlink_at(
    target: &std::ffi::OsStr,
    dir: &DirFd,
    name: &std::ffi::OsStr,
    shown: &Path,
) -> std::io::Result<()> {
    let (t, c) = (c_name(target)?, c_name(name)?);
    // SAFETY: valid NUL-terminated strings and a valid descriptor for the duration of the call.
    if unsafe { libc::symlinkat(t.as_ptr(), dir.raw(), c.as_ptr()) } != 0 {
        return Err(with_path(std::io::Error::last_os_error(), "create symlink", shown));
    }
    Ok(())
}

/// Whether the entry `name` of `dir` is a symlink to `target`.
pub(crate) fn link_points_to(dir: &DirFd, name: &std::ffi::OsStr, target: &std::ffi::OsStr) -> bool {
    read_link_at(dir, name).is_ok_and(|t| t == target)
}

/// Hard-links the entry `name` of `from` (a symlink itself, not what it points to) as `name` in
/// `to`.
pub(crate) fn link_at(from: &DirFd, name: &std::ffi::OsStr, to: &DirFd) -> std::io::Result<()> {
    let c = c_name(name)?;
    // SAFETY: valid descriptors and name for the duration of the call; flags 0 = do not follow.
    if unsafe { libc::linkat(from.raw(), c.as_ptr(), to.raw(), c.as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A file mapped read-only into memory: a zip archive is read through it without a read(2) or
/// lseek(2) per entry. Only for files envctl wrote itself and nobody else changes (a download in
/// its private temporary directory): a file truncated under a mapping faults.
pub struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned; sharing `&[u8]` views across threads is sound.
unsafe impl Send for Mapped {}
// SAFETY: as above.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the whole of `file`, read-only.
    pub fn new(file: &std::fs::File) -> std::io::Result<Mapped> {
        let len = usize::try_from(file.metadata()?.len()).map_err(std::io::Error::other)?;
        if len == 0 {
            return Ok(Mapped { ptr: std::ptr::null_mut(), len: 0 });
        }
        // SAFETY: a fresh private read-only mapping of an open descriptor; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(file),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }
}

impl Mapped {
    /// Lets the kernel drop the pages wholly inside `from..to` from this process (they are read
    /// again from the file if touched), so that unpacking a large archive keeps little of it
    /// resident.
    pub(crate) fn release(&self, from: u64, to: u64) {
        let page = 4096u64;
        let start = from.div_ceil(page) * page;
        let end = to.min(self.len as u64) / page * page;
        if end > start {
            // SAFETY: advising on a page-aligned range inside the mapping; MADV_DONTNEED on a
            // private read-only file mapping only drops pages, which read back from the file.
            unsafe {
                libc::madvise(
                    self.ptr.cast::<u8>().add(start as usize).cast(),
                    (end - start) as usize,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }
}

/// How much a [`MappedReader`] reads before it lets the kernel drop what it read.
const RELEASE_EVERY: u64 = 8 << 20;

/// A reader over a mapping that releases what it has read (see [`Mapped::release`]) every
/// 8 MiB, so that even one large entry never keeps more than that of the archive resident (a wheel is
/// read by four threads at once, and four installs run side by side).
/// Clones read independently (one per thread).
#[derive(Clone)]
pub struct MappedReader<'m> {
    map: &'m Mapped,
    pos: u64,
    released: u64,
}

impl<'m> MappedReader<'m> {
    /// A reader from the start of `map`.
    pub fn new(map: &'m Mapped) -> MappedReader<'m> {
        MappedReader { map, pos: 0, released: 0 }
    }
}

impl std::io::Read for MappedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let bytes: &[u8] = self.map;
        let start = usize::try_from(self.pos).unwrap_or(usize::MAX).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        self.pos += n as u64;
        if self.pos >= self.released + RELEASE_EVERY {
            self.map.release(self.released, self.pos);
            self.released = self.pos;
        }
        Ok(n)
    }
}

impl std::io::Seek for MappedReader<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let len = self.map.len as i128;
        let next = match to {
            std::io::SeekFrom::Start(n) => i128::from(n),
            std::io::SeekFrom::End(d) => len + i128::from(d),
            std::io::SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        if next < 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"));
        }
        self.pos = u64::try_from(next).map_err(std::io::Error::other)?;
        // Only what this reader reads from here on is its to release.
        self.released = self.pos;
        Ok(self.pos)
    }
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly what `new` mapped, once.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

/// Makes the program `command` starts end when this process ends, killed or not
/// (`PR_SET_PDEATHSIG`): a bytecode compiler or a build backend never outlives the envctl that
/// started it and goes on writing into `.tmp/`. The signal is tied to the thread that spawns the
/// command, so that thread must wait for it (every caller here does).
pub(crate) fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure makes only async-signal-safe calls (prctl,
    // getppid, _exit) and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the signal was asked for: nobody would send it.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Sends SIGKILL to every process of the process group `group` (one a child was started in, see
/// `CommandExt::process_group`); a group that is already empty is fine.
pub(crate) fn kill_group(group: u32) {
    let Ok(group) = libc::pid_t::try_from(group) else { return };
    if group > 1 {
        // SAFETY: a plain system call; a negative pid names the process group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

/// Renames the directory `from` to `to`, in another parent directory.
///
/// Moving a directory to another parent rewrites its `..` entry, which needs write permission on
/// the directory itself: a finished store tree (mode 0555) can be moved by root only. For anyone
/// else, when the first try is refused, the directory's owner-write bit is set for the move and
/// its mode put back once it is in place. Callers register a path only after this returns, so a
/// crash in between leaves an unregistered directory (swept) and never a registered one with the
/// wrong mode.
pub(crate) fn rename_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let first = match std::fs::rename(from, to) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let context = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("failed to rename `{}` to `{}`: {e}", from.display(), to.display()),
        )
    };
    let mode = match std::fs::symlink_metadata(from) {
        Ok(meta) if meta.is_dir() && meta.permissions().mode() & 0o200 == 0 => {
            meta.permissions().mode() & 0o7777
        }
        _ => return Err(context(first)),
    };
    if first.kind() != std::io::ErrorKind::PermissionDenied {
        return Err(context(first));
    }
    std::fs::set_permissions(from, std::fs::Permissions::from_mode(mode | 0o200)).map_err(context)?;
    match std::fs::rename(from, to) {
        Ok(()) => std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).map_err(context),
        Err(e) => {
            let _ = std::fs::set_permissions(from, std::fs::Permissions::from_mode(mode));
            Err(context(e))
        }
    }
}
