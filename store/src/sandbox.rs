//! A sandbox for the programs envctl runs on a user's behalf from the store: PEP 517 build
//! backends (foreign code from a source distribution) and bytecode compilers.
//!
//! The program runs in new user, mount, network, PID, IPC and UTS namespaces:
//!
//! - **as nobody in particular**: inside, it is uid/gid 1000, mapped to the caller's own uid, or,
//!   when the caller is root, to `nobody` (root first drops to `nobody` with no supplementary
//!   group, and the directories the program may write are handed to `nobody` before and back to
//!   root after); it keeps no capability once it runs;
//! - **no devices**: `/dev` holds only `null`, `zero`, `full`, `random` and `urandom`;
//! - **no network**: its network namespace has only a loopback interface, down;
//! - **the filesystem read-only**: every mount is remounted read-only; `/tmp`, `/var/tmp`,
//!   `/home`, `/root` and `/run` (where sockets, a daemon's among them, and other users' files
//!   are) are replaced by empty directories; the store is shown read-only at its own path, and
//!   only the directories the caller names are writable;
//! - **nothing outlives it**: it is PID 1 of its own PID namespace, so every process it starts
//!   dies with it, and it dies with envctl (`PR_SET_PDEATHSIG`), also when envctl is killed;
//! - **a wall-clock limit**: past it, it is killed.
//!
//! How: the child envctl forks (`Command` with `pre_exec`) unshares the namespaces, writes its
//! id maps, rebuilds its mounts, and forks once more, so that the program is PID 1 of the new
//! PID namespace; the middle process waits and exits as the program did. Between fork and exec
//! only system calls are made, on strings prepared before the fork.
//!
//! Where the kernel refuses unprivileged user namespaces, [`Sandbox::probe`] says why, and the
//! caller decides (single-user mode runs builds unsandboxed with a warning; see `derive.rs`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where a sandboxed program may write, and what it sees.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// Directories it may write, at their own paths.
    pub writable: Vec<PathBuf>,
    /// Directories shown read-only at their own paths even inside a hidden one (the store).
    pub shown: Vec<PathBuf>,
    /// More directories to hide behind an empty one (a daemon's socket directory).
    pub hidden: Vec<PathBuf>,
    /// Killed after this long.
    pub timeout: Option<Duration>,
}

/// Directories every sandbox hides.
const HIDDEN: &[&str] = &["/tmp", "/var/tmp", "/home", "/root", "/run"];

/// Inside the sandbox, the program's uid and gid.
const INSIDE_ID: u32 = 1000;
/// The outside uid a root caller's sandbox runs as.
const NOBODY: u32 = 65534;

/// Everything the child needs, prepared before the fork (no allocation after it).
struct Prepared {
    uid_map: CString,
    gid_map: CString,
    /// Existing mount points, with the flags to keep when remounting them read-only.
    remount: Vec<(CString, libc::c_ulong)>,
    /// Directories to hide, then each shown one and each writable one with the directories to
    /// create above it (inside a hidden one).
    hide: Vec<CString>,
    shown: Vec<(CString, Vec<CString>)>,
    writable: Vec<(CString, Vec<CString>)>,
    /// The program's working directory, entered again through the new mounts.
    cwd: Option<CString>,
    /// The caller is root: become `nobody` before anything else.
    drop_root: bool,
}

/// The devices a sandbox has.
const DEVICES: [&std::ffi::CStr; 5] = [c"null", c"zero", c"full", c"random", c"urandom"];

fn cstring(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// `p` and its ancestors below `/`, outermost first, as C strings.
fn ancestors(p: &Path) -> std::io::Result<Vec<CString>> {
    let mut out: Vec<CString> = Vec::new();
    for a in p.ancestors().collect::<Vec<_>>().into_iter().rev() {
        if a != Path::new("/") && !a.as_os_str().is_empty() {
            out.push(cstring(a)?);
        }
    }
    Ok(out)
}

/// The mount points of this process and the flags each must keep, from `/proc/self/mountinfo`.
fn mounts() -> std::io::Result<Vec<(CString, libc::c_ulong)>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(options)) = (fields.get(4), fields.get(5)) else { continue };
        // Octal escapes (`\040` for a space) are written back as bytes.
        let mut raw = Vec::new();
        let bytes = point.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\'
                && i + 3 < bytes.len()
                && let Ok(v) = u8::from_str_radix(&point[i + 1..i + 4], 8)
            {
                raw.push(v);
                i += 4;
                continue;
            }
            raw.push(bytes[i]);
            i += 1;
        }
        let mut flags: libc::c_ulong = 0;
        for o in options.split(',') {
            flags |= match o {
                "nosuid" => libc::MS_NOSUID,
                "nodev" => libc::MS_NODEV,
                "noexec" => libc::MS_NOEXEC,
                "noatime" => libc::MS_NOATIME,
                "nodiratime" => libc::MS_NODIRATIME,
                "relatime" => libc::MS_RELATIME,
                _ => 0,
            };
        }
        out.push((CString::new(raw).map_err(std::io::Error::other)?, flags));
    }
    Ok(out)
}

impl Sandbox {
    /// Whether sandboxes can be made here; why not, if not. Asked once per process (it starts
    /// `/bin/true` in one).
    pub fn probe() -> Result<(), String> {
        static PROBED: OnceLock<Result<(), String>> = OnceLock::new();
        PROBED
            .get_or_init(|| {
                let sandbox = Sandbox { timeout: Some(Duration::from_secs(20)), ..Default::default() };
                let mut command = Command::new("/bin/true");
                match sandbox.output(&mut command) {
                    Ok(out) if out.status.success() => Ok(()),
                    Ok(out) => Err(format!(
                        "a sandboxed `/bin/true` failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            })
            .clone()
    }

    fn prepare(&self, cwd: Option<&Path>) -> std::io::Result<Prepared> {
        let (uid, gid) = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        let outside = if uid == 0 { (NOBODY, NOBODY) } else { (uid, gid) };
        let drop_root = uid == 0;
        let mut hide: Vec<PathBuf> = HIDDEN.iter().map(PathBuf::from).filter(|p| p.is_dir()).collect();
        hide.extend(self.hidden.iter().cloned());
        let with_ancestors = |paths: &[PathBuf]| -> std::io::Result<Vec<(CString, Vec<CString>)>> {
            paths.iter().map(|p| Ok((cstring(p)?, ancestors(p)?))).collect()
        };
        Ok(Prepared {
            uid_map: CString::new(format!("{INSIDE_ID} {} 1\n", outside.0)).map_err(std::io::Error::other)?,
            gid_map: CString::new(format!("{INSIDE_ID} {} 1\n", outside.1)).map_err(std::io::Error::other)?,
            remount: mounts()?,
            hide: hide.iter().map(|p| cstring(p)).collect::<std::io::Result<_>>()?,
            shown: with_ancestors(&self.shown)?,
            writable: with_ancestors(&self.writable)?,
            cwd: cwd.map(cstring).transpose()?,
            drop_root,
        })
    }

    /// Runs `command` in the sandbox and collects its output (see [`Command::output`]); killed
    /// at the timeout (its status then says so: killed by SIGKILL).
    pub fn output(&self, command: &mut Command) -> std::io::Result<Output> {
        let child = self.spawn(command)?;
        self.wait(child)
    }

    /// Starts `command` in the sandbox (its stdio as the caller set it up). A root caller lends
    /// the writable directories to `nobody` first ([`Lent`]), for as long as every program that
    /// writes them runs.
    pub fn spawn(&self, command: &mut Command) -> std::io::Result<Child> {
        let prepared = self.prepare(command.get_current_dir())?;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec in the child; it makes only system
        // calls (unshare, open, write, mount, mkdir, fork, waitpid, prctl, _exit) on memory
        // prepared before the fork, and allocates nothing.
        unsafe {
            command.pre_exec(move || enter(&prepared, parent));
        }
        command.spawn()
    }

    /// Waits for a sandboxed child, killing it at the timeout, and gives a root caller's
    /// writable directories back to root.
    pub fn wait(&self, mut child: Child) -> std::io::Result<Output> {
        let started = Instant::now();
        // Read its output as it comes (a full pipe would stall it), wait for its end.
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let read = |pipe: Option<std::process::ChildStdout>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = std::io::Read::read_to_end(&mut p, &mut buf);
                }
                buf
            })
        };
        let out_reader = read(stdout);
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = stderr {
                let _ = std::io::Read::read_to_end(&mut p, &mut buf);
            }
            buf
        });
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if self.timeout.is_some_and(|t| started.elapsed() >= t) {
                // The middle process dies; the program, PID 1 of its namespace, follows
                // (PR_SET_PDEATHSIG), and with it everything it started.
                let _ = child.kill();
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Output {
            status,
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        })
    }
}

/// Directories lent to `nobody`, the id a root caller's sandbox runs as, and given back to root
/// when dropped; for anyone else, nothing changes hands.
pub(crate) struct Lent {
    dirs: Vec<PathBuf>,
}

impl Lent {
    /// Lends `dirs` (whole trees) for as long as the value lives.
    pub(crate) fn new(dirs: Vec<PathBuf>) -> std::io::Result<Lent> {
        if !rustix::process::geteuid().is_root() || Sandbox::probe().is_err() {
            return Ok(Lent { dirs: Vec::new() });
        }
        for dir in &dirs {
            chown_tree(dir, NOBODY, NOBODY)?;
        }
        Ok(Lent { dirs })
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Err(e) = chown_tree(dir, 0, 0) {
                tracing::warn!("could not give `{}` back to root: {e}", dir.display());
            }
        }
    }
}

/// Hands a tree to `uid:gid` (symlinks themselves, not their targets).
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(std::io::Error::other)?;
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
    }
    Ok(())
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Writes `text` into the file `path` (a `/proc` map).
///
/// # Safety
/// Only system calls; callable between fork and exec.
unsafe fn write_file(path: &std::ffi::CStr, text: &[u8]) -> std::io::Result<()> {
    // SAFETY: valid NUL-terminated path; the descriptor is closed before returning.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, text.as_ptr().cast(), text.len());
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if n != text.len() as isize {
            return Err(e);
        }
    }
    Ok(())
}

/// `/proc/self/fd/N` for `fd`, written into `buf` without allocating.
fn fd_path(fd: libc::c_int, buf: &mut [u8; 32]) -> &std::ffi::CStr {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = fd.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
    std::ffi::CStr::from_bytes_until_nul(&buf[..]).expect("NUL written above")
}

/// Binds the directory open as `fd` at `target` (creating it and its `parents`), read-only or
/// not.
///
/// # Safety
/// Only system calls; callable between fork and exec.
unsafe fn bind(
    fd: libc::c_int,
    target: &std::ffi::CStr,
    parents: &[CString],
    read_only: bool,
) -> std::io::Result<()> {
    let mut buf = [0u8; 32];
    let source = fd_path(fd, &mut buf);
    // SAFETY: valid NUL-terminated strings; plain system calls.
    unsafe {
        for p in parents {
            libc::mkdir(p.as_ptr(), 0o755);
        }
        check(libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NODEV;
        let flags = if read_only { flags | libc::MS_RDONLY } else { flags };
        check(libc::mount(std::ptr::null(), target.as_ptr(), std::ptr::null(), flags, std::ptr::null()))
    }
}

/// `/dev/NAME` for one of [`DEVICES`], written into `buf` without allocating.
fn device_path<'b>(name: &std::ffi::CStr, buf: &'b mut [u8; 32]) -> &'b std::ffi::CStr {
    let prefix = b"/dev/";
    let bytes = name.to_bytes();
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..prefix.len() + bytes.len()].copy_from_slice(bytes);
    buf[prefix.len() + bytes.len()] = 0;
    std::ffi::CStr::from_bytes_until_nul(&buf[..]).expect("NUL written above")
}

/// The child's side (see the module docs): runs between fork and exec.
fn enter(p: &Prepared, parent: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: every call below is a system call on memory prepared before the fork (or on the
    // stack); nothing allocates. Errors are returned to `Command`, which reports them to the
    // caller as the spawn's error.
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong))?;
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        // A root caller makes the namespaces as root and becomes nobody last; anyone else makes a
        // user namespace first, mapping itself to INSIDE_ID, and gets the rights to make the rest.
        let flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        if p.drop_root {
            check(libc::unshare(flags))?;
        } else {
            check(libc::unshare(libc::CLONE_NEWUSER | flags))?;
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", p.uid_map.as_bytes())?;
            write_file(c"/proc/self/gid_map", p.gid_map.as_bytes())?;
            check(libc::setresgid(INSIDE_ID, INSIDE_ID, INSIDE_ID))?;
            check(libc::setresuid(INSIDE_ID, INSIDE_ID, INSIDE_ID))?;
        }
        // Hold on to what is shown, writable and kept of /dev before anything is hidden (opened
        // in the new mount namespace: a mount of the old one cannot be bound here).
        let mut shown_fds = [-1 as libc::c_int; 16];
        let mut writable_fds = [-1 as libc::c_int; 16];
        if p.shown.len() > shown_fds.len() || p.writable.len() > writable_fds.len() {
            return Err(std::io::Error::from_raw_os_error(libc::E2BIG));
        }
        let open_dir = |path: &CString| {
            let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC);
            if fd < 0 { Err(std::io::Error::last_os_error()) } else { Ok(fd) }
        };
        for (i, (path, _)) in p.shown.iter().enumerate() {
            shown_fds[i] = open_dir(path)?;
        }
        for (i, (path, _)) in p.writable.iter().enumerate() {
            writable_fds[i] = open_dir(path)?;
        }
        let mut device_fds = [-1 as libc::c_int; DEVICES.len()];
        let mut buf = [0u8; 32];
        for (i, name) in DEVICES.iter().enumerate() {
            device_fds[i] = libc::open(device_path(name, &mut buf).as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        }

        let none = std::ptr::null();
        check(libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()))?;
        // Everything read-only. A mount below a hidden directory may refuse; it is hidden anyway.
        for (point, keep) in &p.remount {
            let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | keep;
            libc::mount(none, point.as_ptr(), none, flags, std::ptr::null());
        }
        for dir in &p.hide {
            check(libc::mount(
                c"tmpfs".as_ptr(),
                dir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755,size=64m".as_ptr().cast(),
            ))?;
        }
        // A /dev of a few harmless devices: a read-only mount does not stop writes to a disk's
        // device node.
        check(libc::mount(
            c"tmpfs".as_ptr(),
            c"/dev".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            c"mode=0755,size=1m".as_ptr().cast(),
        ))?;
        for (i, name) in DEVICES.iter().enumerate() {
            if device_fds[i] < 0 {
                continue;
            }
            let target = device_path(name, &mut buf).as_ptr();
            let fd = libc::open(target, libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o666);
            if fd >= 0 {
                libc::close(fd);
            }
            let mut from = [0u8; 32];
            let source = fd_path(device_fds[i], &mut from);
            let target = device_path(name, &mut buf).as_ptr();
            check(libc::mount(source.as_ptr(), target, none, libc::MS_BIND, std::ptr::null()))?;
            libc::close(device_fds[i]);
        }
        libc::mkdir(c"/dev/shm".as_ptr(), 0o777);
        libc::symlink(c"/proc/self/fd".as_ptr(), c"/dev/fd".as_ptr());
        for (i, (path, parents)) in p.shown.iter().enumerate() {
            bind(shown_fds[i], path, parents, true)?;
            libc::close(shown_fds[i]);
        }
        for (i, (path, parents)) in p.writable.iter().enumerate() {
            bind(writable_fds[i], path, parents, false)?;
            libc::close(writable_fds[i]);
        }
        // The empty directories put over the hidden ones are read-only too, now that the paths
        // shown through them exist: only the writable directories (and /dev/shm) take writes.
        for dir in &p.hide {
            let flags = libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
            check(libc::mount(none, dir.as_ptr(), none, flags, std::ptr::null()))?;
        }

        // The program is PID 1 of the new PID namespace: everything it starts dies with it.
        let pid = libc::fork();
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid > 0 {
            // The middle process: wait, then end as the program did. It never execs, so it
            // closes what `Command` would have closed at exec (the pipe on which the parent
            // learns that the exec happened, which it waits on).
            libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint);
            let mut status: libc::c_int = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    libc::_exit(127);
                }
            }
            if libc::WIFEXITED(status) {
                libc::_exit(libc::WEXITSTATUS(status));
            }
            libc::_exit(128 + libc::WTERMSIG(status));
        }
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong))?;
        // Its own /proc: processes outside the namespace are not there to list.
        libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        );
        if p.drop_root {
            // Every capability goes with root.
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(NOBODY, NOBODY, NOBODY))?;
            check(libc::setresuid(NOBODY, NOBODY, NOBODY))?;
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong))?;
        }
        if let Some(cwd) = &p.cwd {
            check(libc::chdir(cwd.as_ptr()))?;
        }
    }
    Ok(())
}

impl crate::store::Store {
    /// Runs a program envctl starts on the store's behalf (a build backend, a bytecode compiler)
    /// with `work` its only writable directory and the store shown read-only (see the module
    /// docs), and collects its output. Where the kernel makes no sandbox, the program runs
    /// without one, in its own process group ended with it and killed with envctl, after a
    /// warning that says why, unless the store requires one ([`StoreOptions::require_sandbox`],
    /// a daemon's store): then it is refused. Layers reach it as [`crate::Host::run_confined`].
    pub(crate) fn run_confined(&self, command: &mut Command, work: &Path) -> crate::error::Result<Output> {
        let sandbox = Sandbox {
            writable: vec![work.to_path_buf()],
            shown: vec![self.dir().to_path_buf()],
            hidden: self.options.hidden.clone(),
            timeout: Some(self.options.build_timeout),
        };
        match Sandbox::probe() {
            Ok(()) => Ok(sandbox.output(command)?),
            Err(why) if self.options.require_sandbox => Err(crate::error::Error::Build(format!(
                "builds must run in a sandbox here and this machine makes none: {why}"
            ))),
            Err(why) => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "builds and bytecode compilers run without a sandbox (with your rights, network and files): this machine makes none ({why}); allow unprivileged user namespaces to have one"
                    )
                });
                command.process_group(0);
                crate::sys::die_with_parent(command);
                let child = command.spawn()?;
                let group = child.id();
                let out = Sandbox { timeout: sandbox.timeout, ..Default::default() }.wait(child);
                // No process it started outlives it.
                crate::sys::kill_group(group);
                Ok(out?)
            }
        }
    }
}
