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
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        Ok(renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE)?)
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
pub(crate) struct DirFd(std::fs::File);

fn with_path(e: std::io::Error, what: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("failed to {what} `{}`: {e}", path.display()))
}

impl DirFd {
    /// Opens the directory at `path` (a symlink is not followed).
    pub(crate) fn open(path: &Path) -> std::io::Result<DirFd> {
        open_reading(rustix::fs::CWD, path.as_os_str(), rustix::fs::OFlags::DIRECTORY)
            .map(|fd| DirFd(fd.into()))
            .map_err(|e| with_path(e, "open directory", path))
    }

    /// Opens the directory `name` inside `parent`; `shown` names it in errors.
    pub(crate) fn open_at(parent: &DirFd, name: &std::ffi::OsStr, shown: &Path) -> std::io::Result<DirFd> {
        open_reading(&parent.0, name, rustix::fs::OFlags::DIRECTORY)
            .map(|fd| DirFd(fd.into()))
            .map_err(|e| with_path(e, "open directory", shown))
    }

    /// Its metadata (`fstat`).
    pub(crate) fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.0.metadata()
    }

    /// Flushes the directory (its entries and its own metadata) to disk.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.0.sync_all()
    }

    /// Its entries but `.` and `..`, each with its type when the filesystem gives it
    /// (`readdir`'s `d_type`), in no particular order.
    pub(crate) fn entries(&self) -> std::io::Result<Vec<(std::ffi::OsString, Option<EntryKind>)>> {
        use rustix::fs::FileType;
        use std::os::unix::ffi::OsStrExt;
        // A stream of its own (the directory opened again), read from the start.
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.0)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Directory => Some(EntryKind::Dir),
                FileType::RegularFile => Some(EntryKind::File),
                FileType::Symlink => Some(EntryKind::Symlink),
                FileType::Unknown => None,
                _ => Some(EntryKind::Other),
            };
            out.push((std::ffi::OsStr::from_bytes(name).to_os_string(), kind));
        }
        Ok(out)
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
    use rustix::fs::OFlags;
    open_reading(&dir.0, name, OFlags::NONBLOCK | OFlags::NOCTTY).map(std::fs::File::from)
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
fn open_reading(
    at: impl std::os::fd::AsFd,
    name: &std::ffi::OsStr,
    extra: rustix::fs::OFlags,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, openat};
    use std::sync::atomic::Ordering;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | extra;
    if !NOATIME_REFUSED.load(Ordering::Relaxed) {
        match openat(&at, name, flags | OFlags::NOATIME, Mode::empty()) {
            Ok(fd) => return Ok(fd),
            Err(rustix::io::Errno::PERM) => NOATIME_REFUSED.store(true, Ordering::Relaxed),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(openat(&at, name, flags, Mode::empty())?)
}

/// `lstat` of `name` in `dir`: a symlink there is described, not followed.
pub(crate) fn stat_at(dir: &DirFd, name: &std::ffi::OsStr) -> std::io::Result<rustix::fs::Stat> {
    Ok(rustix::fs::statat(&dir.0, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?)
}

/// The target of the symlink `name` in `dir`.
pub(crate) fn read_link_at(dir: &DirFd, name: &std::ffi::OsStr) -> std::io::Result<std::ffi::OsString> {
    use std::os::unix::ffi::OsStringExt;
    let target = rustix::fs::readlinkat(&dir.0, name, Vec::new())?;
    Ok(std::ffi::OsString::from_vec(target.into_bytes()))
}

/// Creates the directory `name` in `dir` (mode 0755); `shown` names it in errors.
pub(crate) fn mkdir_at(dir: &DirFd, name: &std::ffi::OsStr, shown: &Path) -> std::io::Result<()> {
    rustix::fs::mkdirat(&dir.0, name, rustix::fs::Mode::from_raw_mode(0o755))
        .map_err(|e| with_path(e.into(), "create directory", shown))
}

/// Creates the symlink `name` → `target` in `dir`; `shown` names it in errors.
pub(crate) fn symlink_at(
    target: &std::ffi::OsStr,
    dir: &DirFd,
    name: &std::ffi::OsStr,
    shown: &Path,
) -> std::io::Result<()> {
    rustix::fs::symlinkat(target, &dir.0, name).map_err(|e| with_path(e.into(), "create symlink", shown))
}

/// Whether the entry `name` of `dir` is a symlink to `target`.
pub(crate) fn link_points_to(dir: &DirFd, name: &std::ffi::OsStr, target: &std::ffi::OsStr) -> bool {
    read_link_at(dir, name).is_ok_and(|t| t == target)
}

/// Hard-links the entry `name` of `from` (a symlink itself, not what it points to) as `name` in
/// `to`.
pub(crate) fn link_at(from: &DirFd, name: &std::ffi::OsStr, to: &DirFd) -> std::io::Result<()> {
    // No AT_SYMLINK_FOLLOW: the entry itself is linked.
    Ok(rustix::fs::linkat(&from.0, name, &to.0, name, rustix::fs::AtFlags::empty())?)
}

/// A file mapped read-only into memory: a zip archive is read through it without a read(2) or
/// lseek(2) per entry. Only for files envctl wrote itself and nobody else changes (a download in
/// its private temporary directory): a file truncated under a mapping faults.
pub struct Mapped {
    ptr: *mut std::ffi::c_void,
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
        use rustix::mm::{MapFlags, ProtFlags, mmap};
        // SAFETY: a fresh private read-only mapping of an open descriptor, at an address the
        // kernel chooses: it aliases no memory of this program.
        let ptr = unsafe { mmap(std::ptr::null_mut(), len, ProtFlags::READ, MapFlags::PRIVATE, file, 0)? };
        Ok(Mapped { ptr, len })
    }
}

impl Mapped {
    /// Lets the kernel drop the pages wholly inside `from..to` from this process (they are read
    /// again from the file if touched), so that unpacking a large archive keeps little of it
    /// resident.
    pub(crate) fn release(&self, from: u64, to: u64) {
        let page = 4096u64;
        self.drop_pages(from.div_ceil(page) * page, to.min(self.len as u64) / page * page);
    }

    /// Lets the kernel drop every page that `from..to` touches, the pages at its ends included: a
    /// page another reader is reading is only read again from the file (the mapping is private
    /// and never written), so this is safe at any time; it costs that reader a fault.
    pub fn release_touching(&self, from: u64, to: u64) {
        let page = 4096u64;
        self.drop_pages(from / page * page, to.min(self.len as u64).div_ceil(page) * page);
    }

    fn drop_pages(&self, start: u64, end: u64) {
        let end = end.min(self.len as u64);
        if end > start {
            // SAFETY: advising on a page-aligned range inside the mapping; MADV_DONTNEED on a
            // private read-only file mapping only drops pages, which read back from the file.
            let _ = unsafe {
                rustix::mm::madvise(
                    self.ptr.cast::<u8>().add(start as usize).cast(),
                    (end - start) as usize,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            };
        }
    }
}

/// How much a [`MappedReader`] reads before it lets the kernel drop what it read: 2 MiB, one
/// `madvise` per 2 MiB read (the PyTorch 2.8 apply: peak RSS 131 MiB at 8 MiB, 92 MiB at 2).
const RELEASE_EVERY: u64 = 2 << 20;

/// A reader over a mapping that releases what it has read (see [`Mapped::release`]) every
/// 2 MiB, so that even one large entry never keeps more than that of the archive resident (a wheel is
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
        let next = u64::try_from(next).map_err(std::io::Error::other)?;
        // A seek ends an entry: what this reader read of it goes, its first and last pages too
        // (an archive of small files would otherwise stay resident page by page until the end).
        if self.pos > self.released {
            self.map.release_touching(self.released, self.pos);
        }
        self.pos = next;
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
            let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
        }
    }
}

/// Makes the program `command` starts end when this process ends, killed or not
/// (`PR_SET_PDEATHSIG`): a bytecode compiler or a build backend never outlives the envctl that
/// started it and goes on writing into `.tmp/`. The signal is tied to the thread that spawns the
/// command, so that thread must wait for it (every caller here does).
pub(crate) fn die_with_parent(command: &mut std::process::Command) {
    use rustix::process::{Pid, Signal, getppid, set_parent_process_death_signal};
    use std::os::unix::process::CommandExt;
    let parent = Pid::from_raw(std::process::id() as i32);
    // SAFETY: between fork and exec the closure makes only async-signal-safe calls (prctl,
    // getppid, _exit) and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent died before the signal was asked for: nobody would send it.
            if getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Sends SIGKILL to every process of the process group `group` (one a child was started in, see
/// `CommandExt::process_group`); a group that is already empty is fine.
pub(crate) fn kill_group(group: u32) {
    let Some(group) = i32::try_from(group).ok().filter(|g| *g > 1).and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
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
