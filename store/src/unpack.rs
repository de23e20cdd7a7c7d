//! Unpacking archives into a fresh directory, treating every archive as hostile.
//!
//! The unpacker computes each destination itself from the entry's path (after
//! `strip-components`, under the target sub-directory) and keeps a model of everything it wrote
//! ([`Node`]). Because it never follows a link while writing, it can answer from the model
//! instead of asking the disk, and it hashes each file as it streams past, so the tree hash is
//! ready when the last entry is written.
//!
//! Refused, with an error naming the archive and the entry:
//! - absolute paths and paths with `..`;
//! - an entry whose parent is a symlink or a file, or that would replace a symlink (writing
//!   through a link);
//! - symlinks that are absolute or that resolve (through other links of the tree) outside it,
//!   checked on the finished tree, and symlink loops;
//! - hard links to anything that is not a regular file written earlier by the same archive;
//! - more entries or more bytes than [`Limits`] allow; the byte limit is checked against the
//!   entry's declared size before writing and again while writing, so a bomb stops early.
//!
//! Device nodes and fifos are skipped (a package has no business shipping them) and reported to
//! the caller. Permissions are normalized as files are created: `0444`, or `0555` when any
//! execute bit was set; setuid, setgid and sticky bits are dropped; mtimes are set to 1 (one
//! second after the epoch), directories last.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;
use std::ffi::{OsStr, OsString};
use std::fs::{FileTimes, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::tree::Node;
pub use envctl_core::{Format, Unpack};

/// A relative path as validated components (`.` alone gives none); `what` names it in the error.
fn components(path: &str, what: &'static str) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n.to_owned()),
            Component::CurDir => {}
            _ => {
                return Err(Error::Invalid {
                    what,
                    value: path.to_owned(),
                    rule: "must be a relative path without `..`",
                });
            }
        }
    }
    Ok(out)
}

/// As [`components`], and naming at least one entry.
fn relative_components(path: &str, what: &'static str) -> Result<Vec<OsString>> {
    let out = components(path, what)?;
    if out.is_empty() {
        return Err(Error::Invalid {
            what,
            value: path.to_owned(),
            rule: "must name a path inside the package",
        });
    }
    Ok(out)
}

/// The moves of `spec` as validated path components.
pub fn move_components(spec: &Unpack) -> Result<Vec<(Vec<OsString>, Vec<OsString>)>> {
    spec.moves
        .iter()
        .map(|(from, to)| {
            Ok((relative_components(from, "move source")?, relative_components(to, "move target")?))
        })
        .collect()
}

/// The sub-directory of `spec` as validated path components.
pub fn subdir_components(spec: &Unpack) -> Result<Vec<OsString>> {
    spec.subdir.as_deref().map_or(Ok(Vec::new()), |sub| components(sub, "subdir"))
}

/// Caps that stop a decompression bomb, or a package far larger than anyone meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of file contents one archive may unpack to.
    pub max_bytes: u64,
    /// Most entries one archive may hold.
    pub max_entries: u64,
}

impl Default for Limits {
    /// 64 GiB and 2,000,000 entries: above every CUDA, cuDNN and framework artifact published so
    /// far (the largest CUDA toolkit redistributables unpack to a few GiB), far below a disk.
    fn default() -> Limits {
        Limits { max_bytes: 64 << 30, max_entries: 2_000_000 }
    }
}

/// What an unpack produced.
#[derive(Debug)]
pub struct Unpacked {
    /// The model of the tree written, root included.
    pub tree: Node,
    /// Entries skipped on purpose (device nodes, fifos), as the archive names them.
    pub skipped: Vec<String>,
}

/// Files of this size or more are handed to the disk as soon as they are written, while the rest
/// of the archive unpacks, so the flush before registration (`flush.rs`) finds little of them left
/// to write. Smaller files are left to that flush, which writes them together: starting each one
/// on its own made the install slower (see docs/performance.md).
const EARLY_WRITEBACK: u64 = 64 * 1024;

/// The mtime every store file gets: one second after the epoch, as Nix does.
pub const NORMALIZED_MTIME: Duration = Duration::from_secs(1);

/// Unpacks a tar stream (already decompressed) into `dest`, which must be an empty directory.
pub fn unpack_tar(
    reader: impl Read,
    dest: &Path,
    label: &str,
    format: Format,
    opts: &Unpack,
    limits: Limits,
) -> Result<Unpacked> {
    let mut u = Unpacker::new(dest, label, format, opts, limits)?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| u.corrupt(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.corrupt(e))?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            continue;
        }
        u.count_entry()?;
        let raw = entry.path_bytes().into_owned();
        check_pax_size(&mut entry, &raw, &u)?;
        // A conda package's metadata is not part of what it installs.
        if format == Format::CondaV1 && (raw == b"info" || raw.starts_with(b"info/")) {
            continue;
        }
        let Some(comps) = u.map_path(&raw)? else { continue };
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mode = entry.header().mode().map_err(|e| u.corrupt(e))?;
                let size = entry.header().size().map_err(|e| u.corrupt(e))?;
                u.write_file(&comps, &raw, &mut entry, mode & 0o111 != 0, size)?;
            }
            tar::EntryType::Directory => {
                u.make_dir(&comps, &raw)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                u.make_symlink(&comps, &raw, &target)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                u.make_hard_link(&comps, &raw, &target)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                tracing::warn!(archive = label, entry = %String::from_utf8_lossy(&raw), "skipping device node or fifo");
                u.skipped.push(String::from_utf8_lossy(&raw).into_owned());
            }
            other => {
                return Err(u.unsafe_entry(&raw, format!("has an unsupported tar entry type ({other:?})")));
            }
        }
    }
    u.finish()
}

/// Unpacks a `.conda` package (format v2) into `dest`: the payload, `pkg-*.tar.zst`, only.
pub fn unpack_conda(
    file: std::fs::File,
    dest: &Path,
    label: &str,
    opts: &Unpack,
    limits: Limits,
) -> Result<Unpacked> {
    let corrupt =
        |e: std::io::Error| Error::Archive { archive: label.to_owned(), format: "conda".into(), source: e };
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| corrupt(std::io::Error::other(e)))?;
    let payload = zip
        .file_names()
        .find(|n| n.starts_with("pkg-") && n.ends_with(".tar.zst") && !n.contains('/'))
        .map(str::to_owned)
        .ok_or_else(|| corrupt(std::io::Error::other("no pkg-*.tar.zst payload inside")))?;
    let inner = zip.by_name(&payload).map_err(|e| corrupt(std::io::Error::other(e)))?;
    let mut decoder = zstd::stream::read::Decoder::new(inner).map_err(corrupt)?;
    decoder.window_log_max(31).map_err(corrupt)?;
    unpack_tar(decoder, dest, label, Format::Conda, opts, limits)
}

/// Unpacks a zip (or wheel) file into `dest`, which must be an empty directory.
pub fn unpack_zip(
    file: std::fs::File,
    dest: &Path,
    label: &str,
    format: Format,
    opts: &Unpack,
    limits: Limits,
) -> Result<Unpacked> {
    let mut u = Unpacker::new(dest, label, format, opts, limits)?;
    let zip_err = |e: zip::result::ZipError| std::io::Error::other(e);
    // Read with pread: a duplicated descriptor shares its offset with the one the zip reader uses.
    let mapped = crate::sys::Mapped::new(&file).map_err(|e| u.corrupt(e))?;
    let headers: &[u8] = &mapped;
    let mut zip =
        zip::ZipArchive::new(crate::sys::MappedReader::new(&mapped)).map_err(|e| u.corrupt(zip_err(e)))?;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| u.corrupt(zip_err(e)))?;
        u.count_entry()?;
        let raw = f.name_raw().to_vec();
        check_local_name(headers, f.header_start(), &raw, &u)?;
        let Some(comps) = u.map_path(&raw)? else { continue };
        let mode = f.unix_mode();
        if f.is_dir() {
            u.make_dir(&comps, &raw)?;
        } else if mode.is_some_and(|m| m & 0o170000 == 0o120000) {
            let mut target = Vec::new();
            (&mut f).take(4097).read_to_end(&mut target).map_err(|e| u.corrupt(e))?;
            if target.len() > 4096 {
                return Err(u.unsafe_entry(&raw, "is a symlink with a target longer than 4096 bytes".into()));
            }
            u.make_symlink(&comps, &raw, &target)?;
        } else if mode.is_some_and(|m| m & 0o170000 != 0o100000 && m & 0o170000 != 0) {
            u.skipped.push(String::from_utf8_lossy(&raw).into_owned());
        } else {
            let size = f.size();
            let exec = mode.is_some_and(|m| m & 0o111 != 0);
            u.write_file(&comps, &raw, &mut f, exec, size)?;
        }
    }
    u.finish()
}

/// Refuses a tar entry whose pax `size` record is not the byte count the reader used: a size
/// that is not a number (or beyond u64, like `1e20`) is one other tools refuse or read otherwise.
fn check_pax_size<R: Read>(entry: &mut tar::Entry<'_, R>, raw: &[u8], u: &Unpacker<'_>) -> Result<()> {
    let size = entry.size();
    let Some(extensions) = entry.pax_extensions().map_err(|e| u.corrupt(e))? else { return Ok(()) };
    for ext in extensions {
        let ext = ext.map_err(|e| u.corrupt(e))?;
        if ext.key_bytes() == b"size" {
            let value = String::from_utf8_lossy(ext.value_bytes()).into_owned();
            if value.parse::<u64>().ok() != Some(size) {
                return Err(u.unsafe_entry(
                    raw,
                    format!("has a pax size `{value}` that is not its byte count ({size})"),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses a zip entry whose local header names another file than the central directory does:
/// readers that stream local headers would unpack a different tree from the same bytes.
fn read_at(bytes: &[u8], out: &mut [u8], offset: u64) -> std::io::Result<()> {
    let start = usize::try_from(offset).map_err(std::io::Error::other)?;
    let src = start.checked_add(out.len()).and_then(|end| bytes.get(start..end));
    let src = src.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the end of the archive")
    })?;
    out.copy_from_slice(src);
    Ok(())
}

/// Checks that the zip entry whose central-directory name is `central` has a local header at
/// `offset` of `headers` (the archive's bytes) naming the same: an archive whose two names differ
/// reads as one thing to one tool and another to the next.
pub fn check_local_name(headers: &[u8], offset: u64, central: &[u8], u: &Unpacker<'_>) -> Result<()> {
    let mut fixed = [0u8; 30];
    read_at(headers, &mut fixed, offset).map_err(|e| u.corrupt(e))?;
    if fixed[..4] != [0x50, 0x4b, 0x03, 0x04] {
        return Err(u.unsafe_entry(central, "has no local header where the central directory says".into()));
    }
    let len = u16::from_le_bytes([fixed[26], fixed[27]]) as usize;
    let mut local = vec![0u8; len];
    read_at(headers, &mut local, offset + 30).map_err(|e| u.corrupt(e))?;
    if local != central {
        return Err(u.unsafe_entry(
            central,
            format!("has a local header naming `{}` instead", String::from_utf8_lossy(&local)),
        ));
    }
    Ok(())
}

/// Writes an archive's entries into a tree as the store unpacks anything: every path checked
/// (no `..`, no absolute paths, no links out of the tree), the caps of [`Limits`] counted, modes
/// normalized, and a model of the tree kept as it is written. A language layer unpacks its own
/// formats through it ([`crate::Layer::unpack_package`]).
pub struct Unpacker<'a> {
    root: &'a Path,
    label: &'a str,
    format: Format,
    strip: usize,
    prefix: Vec<OsString>,
    moves: Vec<(Vec<OsString>, Vec<OsString>)>,
    keep_under: Vec<OsString>,
    limits: Limits,
    tree: Node,
    entries: u64,
    bytes: u64,
    skipped: Vec<String>,
    buf: Vec<u8>,
    fix_mode: bool,
}

impl<'a> Unpacker<'a> {
    /// An unpacker writing into the empty directory `root`; `label` names the archive in errors.
    pub fn new(
        root: &'a Path,
        label: &'a str,
        format: Format,
        opts: &Unpack,
        limits: Limits,
    ) -> Result<Unpacker<'a>> {
        let mut u = Unpacker {
            root,
            label,
            format,
            strip: opts.strip_components as usize,
            prefix: subdir_components(opts)?,
            moves: move_components(opts)?,
            keep_under: opts
                .root
                .as_deref()
                .map(|r| relative_components(r, "root"))
                .transpose()?
                .unwrap_or_default(),
            limits,
            tree: Node::empty_dir(),
            entries: 0,
            bytes: 0,
            skipped: Vec::new(),
            buf: vec![0; 256 * 1024],
            fix_mode: umask() & 0o555 != 0,
        };
        // The target sub-directory exists even when the archive is empty.
        let prefix = u.prefix.clone();
        ensure_dir(&mut u.tree, root, &prefix, label, b"")?;
        Ok(u)
    }

    /// The error for an archive that cannot be read (`e` says why).
    pub fn corrupt(&self, e: std::io::Error) -> Error {
        Error::Archive { archive: self.label.to_owned(), format: self.format.name().to_owned(), source: e }
    }

    /// The error for an entry (named by its raw path) refused for `reason`.
    pub fn unsafe_entry(&self, raw: &[u8], reason: String) -> Error {
        unsafe_entry(self.label, raw, reason)
    }

    /// Counts one more entry against [`Limits::max_entries`].
    pub fn count_entry(&mut self) -> Result<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Error::LimitExceeded {
                archive: self.label.to_owned(),
                what: format!(
                    "it holds more than {} entries (raise `store.max-unpack-entries` in the configuration if it is genuine)",
                    self.limits.max_entries
                ),
            });
        }
        Ok(())
    }

    /// The error for an archive over [`Limits::max_bytes`].
    pub fn too_big(&self) -> Error {
        Error::LimitExceeded {
            archive: self.label.to_owned(),
            what: format!(
                "it unpacks to more than {} bytes (raise `store.max-unpack-bytes` in the configuration if it is genuine)",
                self.limits.max_bytes
            ),
        }
    }

    /// The entry's destination as components under the package root, or `None` when
    /// `strip-components` removes it entirely.
    pub fn map_path(&self, raw: &[u8]) -> Result<Option<Vec<OsString>>> {
        if raw.contains(&0) {
            return Err(self.unsafe_entry(raw, "has a NUL byte in its path".into()));
        }
        let mut comps = Vec::new();
        for c in Path::new(OsStr::from_bytes(raw)).components() {
            match c {
                Component::Normal(n) => comps.push(n.to_owned()),
                Component::CurDir => {}
                Component::ParentDir => return Err(self.unsafe_entry(raw, "has `..` in its path".into())),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.unsafe_entry(raw, "has an absolute path".into()));
                }
            }
        }
        if !self.keep_under.is_empty() {
            if !comps.starts_with(&self.keep_under) {
                return Ok(None);
            }
            comps.drain(..self.keep_under.len());
        }
        if comps.len() <= self.strip {
            return Ok(None);
        }
        let rest: Vec<OsString> = comps.drain(self.strip..).collect();
        for (from, to) in &self.moves {
            if rest.starts_with(from) {
                let mut out = to.clone();
                out.extend(rest[from.len()..].iter().cloned());
                return Ok(Some(out));
            }
        }
        let mut out = self.prefix.clone();
        out.extend(rest);
        Ok(Some(out))
    }

    /// Makes the directory `comps` (and its parents); `raw` names the entry in errors.
    pub fn make_dir(&mut self, comps: &[OsString], raw: &[u8]) -> Result<()> {
        ensure_dir(&mut self.tree, self.root, comps, self.label, raw).map(|_| ())
    }

    /// Prepares the slot for a non-directory entry: its parent exists, and nothing but an earlier
    /// regular file stands there (which it replaces, as tar does).
    fn slot(&mut self, comps: &[OsString], raw: &[u8]) -> Result<PathBuf> {
        let (name, parent) = comps.split_last().expect("mapped paths are never empty");
        let root = self.root;
        let label = self.label;
        let dir = ensure_dir(&mut self.tree, root, parent, label, raw)?;
        let disk: PathBuf =
            std::iter::once(root.as_os_str()).chain(comps.iter().map(|c| c.as_os_str())).collect();
        match dir.get(name) {
            None => {}
            Some(Node::File { .. }) => {
                fs_err::remove_file(&disk)?;
                dir.remove(name);
            }
            Some(Node::Symlink(_)) => {
                return Err(unsafe_entry(
                    label,
                    raw,
                    "would write through the symlink an earlier entry put there".into(),
                ));
            }
            Some(Node::Dir(_)) => {
                return Err(unsafe_entry(
                    label,
                    raw,
                    "would replace a directory an earlier entry made".into(),
                ));
            }
        }
        Ok(disk)
    }

    fn insert(&mut self, comps: &[OsString], node: Node) {
        let (name, parent) = comps.split_last().expect("mapped paths are never empty");
        let mut cur = &mut self.tree;
        for c in parent {
            let Node::Dir(children) = cur else { unreachable!("slot() made every parent a directory") };
            cur = children.get_mut(c).expect("slot() made every parent");
        }
        let Node::Dir(children) = cur else { unreachable!("slot() made every parent a directory") };
        children.insert(name.clone(), node);
    }

    /// Writes a file entry at `comps` from `reader` (see [`Unpacker::stream`]).
    pub fn write_file(
        &mut self,
        comps: &[OsString],
        raw: &[u8],
        reader: &mut dyn Read,
        executable: bool,
        declared: u64,
    ) -> Result<()> {
        if self.bytes.saturating_add(declared) > self.limits.max_bytes {
            return Err(self.too_big());
        }
        let disk = self.slot(comps, raw)?;
        let budget = std::sync::atomic::AtomicU64::new(self.bytes);
        let mut buf = std::mem::take(&mut self.buf);
        let written = self.stream(&disk, reader, executable, &budget, &mut buf);
        self.buf = buf;
        let node = written?;
        self.bytes = budget.into_inner();
        self.insert(comps, node);
        Ok(())
    }

    /// Reserves the slot for a file that [`Unpacker::stream`] will write later (perhaps on another
    /// thread): its parent directories exist, and nothing stands there. Returns its path on disk.
    pub fn reserve(&mut self, comps: &[OsString], raw: &[u8], declared: u64) -> Result<PathBuf> {
        if lookup(&self.tree, comps).is_some() {
            return Err(self.unsafe_entry(raw, "appears twice in the archive".into()));
        }
        if self.bytes.saturating_add(declared) > self.limits.max_bytes {
            return Err(self.too_big());
        }
        let disk = self.slot(comps, raw)?;
        self.insert(comps, Node::File { size: 0, executable: false, hash: [0; 32] });
        Ok(disk)
    }

    /// Records a file written by [`Unpacker::stream`] into a reserved slot.
    pub fn record(&mut self, comps: &[OsString], node: Node) {
        if let Node::File { size, .. } = &node {
            self.bytes += size;
        }
        self.insert(comps, node);
    }

    /// Writes `reader` to a new file at `disk` with the store's mode and mtime, hashing it as it
    /// passes; `budget` counts the bytes every file of the archive has written so far (shared by
    /// threads writing one archive). Needs only `&self`, so threads can share the unpacker.
    pub fn stream(
        &self,
        disk: &Path,
        reader: &mut dyn Read,
        executable: bool,
        budget: &std::sync::atomic::AtomicU64,
        buf: &mut [u8],
    ) -> Result<Node> {
        use std::sync::atomic::Ordering;
        let mode = if executable { 0o555 } else { 0o444 };
        let mut file =
            OpenOptions::new().write(true).create_new(true).mode(mode).open(disk).map_err(|e| {
                std::io::Error::new(e.kind(), format!("failed to create `{}`: {e}", disk.display()))
            })?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        loop {
            // Fill the buffer before writing: decoders hand out a few KiB at a time, and on these
            // machines a write(2) costs tens of microseconds whatever its size.
            let mut n = 0;
            while n < buf.len() {
                match reader.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.corrupt(e)),
                }
            }
            if n == 0 {
                break;
            }
            size += n as u64;
            if budget.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > self.limits.max_bytes {
                return Err(self.too_big());
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(|e| {
                std::io::Error::new(e.kind(), format!("failed to write `{}`: {e}", disk.display()))
            })?;
        }
        crate::flush::written(size);
        if size >= EARLY_WRITEBACK {
            crate::sys::start_writeback(&file);
        }
        if self.fix_mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.set_times(FileTimes::new().set_modified(SystemTime::UNIX_EPOCH + NORMALIZED_MTIME))?;
        Ok(Node::File { size, executable, hash: *hasher.finalize().as_bytes() })
    }

    fn make_symlink(&mut self, comps: &[OsString], raw: &[u8], target: &[u8]) -> Result<()> {
        if target.is_empty() || target.contains(&0) {
            return Err(self.unsafe_entry(raw, "is a symlink with an empty or malformed target".into()));
        }
        if target.starts_with(b"/") {
            return Err(self.unsafe_entry(
                raw,
                format!("is a symlink to the absolute path `{}`", String::from_utf8_lossy(target)),
            ));
        }
        // A relative target may climb only as far as the tree's root: one that leaves it would point
        // into another store path (or anywhere) once the tree is in the store or in a profile.
        let mut depth = comps.len() as i64 - 1;
        for part in target.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => depth -= 1,
                _ => depth += 1,
            }
            if depth < 0 {
                return Err(self.unsafe_entry(
                    raw,
                    format!(
                        "is a symlink to `{}`, which points outside the package",
                        String::from_utf8_lossy(target)
                    ),
                ));
            }
        }
        let disk = self.slot(comps, raw)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &disk).map_err(|e| {
            std::io::Error::new(e.kind(), format!("failed to create symlink `{}`: {e}", disk.display()))
        })?;
        self.insert(comps, Node::Symlink(OsStr::from_bytes(target).to_owned()));
        Ok(())
    }

    fn make_hard_link(&mut self, comps: &[OsString], raw: &[u8], target: &[u8]) -> Result<()> {
        let outside = || "is a hard link to something that is not a regular file earlier in the archive";
        let target_comps = match self.map_path(target) {
            Ok(Some(t)) => t,
            _ => return Err(self.unsafe_entry(raw, outside().into())),
        };
        let node = match lookup(&self.tree, &target_comps) {
            Some(node @ Node::File { .. }) => node.clone(),
            _ => return Err(self.unsafe_entry(raw, outside().into())),
        };
        let disk = self.slot(comps, raw)?;
        let source: PathBuf = std::iter::once(self.root.as_os_str())
            .chain(target_comps.iter().map(|c| c.as_os_str()))
            .collect();
        fs_err::hard_link(&source, &disk)?;
        self.insert(comps, node);
        Ok(())
    }

    /// Ends the unpack: the tree's model, and what was skipped on purpose.
    pub fn finish(self) -> Result<Unpacked> {
        check_links(&self.tree, &mut Vec::new(), &self.tree, self.label)?;
        finalize(self.root, &self.tree)?;
        Ok(Unpacked { tree: self.tree, skipped: self.skipped })
    }
}

fn unsafe_entry(label: &str, raw: &[u8], reason: String) -> Error {
    Error::UnsafeEntry { archive: label.to_owned(), entry: String::from_utf8_lossy(raw).into_owned(), reason }
}

/// Walks (creating as needed) the directories `comps` in the model and on disk. Refuses to pass
/// through anything but a directory: that is where a hostile archive would escape.
fn ensure_dir<'t>(
    tree: &'t mut Node,
    root: &Path,
    comps: &[OsString],
    label: &str,
    raw: &[u8],
) -> Result<&'t mut BTreeMap<OsString, Node>> {
    let mut disk = root.to_path_buf();
    let mut cur = tree;
    for c in comps {
        let Node::Dir(children) = cur else { unreachable!("only directories are descended into") };
        disk.push(c);
        let child = match children.entry(c.clone()) {
            MapEntry::Occupied(o) => o.into_mut(),
            MapEntry::Vacant(v) => {
                fs_err::create_dir(&disk)?;
                v.insert(Node::empty_dir())
            }
        };
        match child {
            Node::Dir(_) => {}
            Node::Symlink(_) => {
                let at = disk.strip_prefix(root).unwrap_or(&disk).display().to_string();
                return Err(unsafe_entry(label, raw, format!("would write through the symlink `{at}`")));
            }
            Node::File { .. } => {
                let at = disk.strip_prefix(root).unwrap_or(&disk).display().to_string();
                return Err(unsafe_entry(
                    label,
                    raw,
                    format!("needs `{at}` to be a directory, but it is a file"),
                ));
            }
        }
        cur = child;
    }
    let Node::Dir(children) = cur else { unreachable!("only directories are descended into") };
    Ok(children)
}

fn lookup<'t>(tree: &'t Node, comps: &[OsString]) -> Option<&'t Node> {
    let mut cur = tree;
    for c in comps {
        let Node::Dir(children) = cur else { return None };
        cur = children.get(c)?;
    }
    Some(cur)
}

/// Checks that every symlink of the finished tree resolves inside it, following links of the tree
/// itself (a chain of individually harmless links can still climb out).
fn check_links(node: &Node, at: &mut Vec<OsString>, tree: &Node, label: &str) -> Result<()> {
    match node {
        Node::Dir(children) => {
            for (name, child) in children {
                at.push(name.clone());
                check_links(child, at, tree, label)?;
                at.pop();
            }
        }
        Node::Symlink(target) => {
            let mut hops = 0;
            let parent = at[..at.len() - 1].to_vec();
            if let Err(why) = resolve(tree, parent, Path::new(target), &mut hops) {
                let entry = at.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
                return Err(Error::UnsafeEntry {
                    archive: label.to_owned(),
                    entry,
                    reason: format!("is a symlink to `{}`, which {why}", target.to_string_lossy()),
                });
            }
        }
        Node::File { .. } => {}
    }
    Ok(())
}

fn resolve(
    tree: &Node,
    mut cur: Vec<OsString>,
    target: &Path,
    hops: &mut u32,
) -> Result<Vec<OsString>, &'static str> {
    for c in target.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
            Component::CurDir => {}
            Component::ParentDir => {
                if cur.pop().is_none() {
                    return Err("points outside the package");
                }
            }
            Component::Normal(n) => {
                cur.push(n.to_owned());
                if let Some(Node::Symlink(next)) = lookup(tree, &cur) {
                    *hops += 1;
                    if *hops > 40 {
                        return Err("is part of a symlink loop");
                    }
                    cur.pop();
                    cur = resolve(tree, cur, Path::new(next), hops)?;
                }
            }
        }
    }
    Ok(cur)
}

/// Makes directories read-only and normalizes directory and symlink mtimes, children first
/// (creating an entry changes its parent's mtime).
pub(crate) fn finalize(root: &Path, tree: &Node) -> std::io::Result<()> {
    fn walk(path: &mut PathBuf, node: &Node) -> std::io::Result<()> {
        match node {
            Node::Dir(children) => {
                for (name, child) in children {
                    path.push(name);
                    walk(path, child)?;
                    path.pop();
                }
                fs_err::set_permissions(&*path, std::fs::Permissions::from_mode(0o555))?;
                set_mtime(path, false)
            }
            Node::Symlink(_) => set_mtime(path, true),
            Node::File { .. } => Ok(()),
        }
    }
    walk(&mut root.to_path_buf(), tree)
}

/// Gives a tree that something else wrote (an interpreter compiling bytecode) the store's modes
/// and mtimes: files `0444` (`0555` when executable), directories `0555`, children first.
pub(crate) fn normalize_tree(root: &Path) -> std::io::Result<()> {
    let meta = fs_err::symlink_metadata(root)?;
    if meta.is_dir() {
        for entry in fs_err::read_dir(root)? {
            normalize_tree(&entry?.path())?;
        }
        fs_err::set_permissions(root, std::fs::Permissions::from_mode(0o555))?;
        set_mtime(root, false)
    } else if meta.file_type().is_symlink() {
        set_mtime(root, true)
    } else {
        let mode = if meta.permissions().mode() & 0o111 != 0 { 0o555 } else { 0o444 };
        fs_err::set_permissions(root, std::fs::Permissions::from_mode(mode))?;
        set_mtime(root, false)
    }
}

/// Sets `path`'s mtime to [`NORMALIZED_MTIME`] (of the link itself when `nofollow`).
pub(crate) fn set_mtime(path: &Path, nofollow: bool) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let times = Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec { tv_sec: NORMALIZED_MTIME.as_secs() as i64, tv_nsec: 0 },
    };
    let flags = if nofollow { AtFlags::SYMLINK_NOFOLLOW } else { AtFlags::empty() };
    utimensat(CWD, path, &times, flags).map_err(|e| {
        let e = std::io::Error::from(e);
        std::io::Error::new(e.kind(), format!("failed to set the mtime of `{}`: {e}", path.display()))
    })
}

/// The process umask, read without changing it (umask(2) can only be read by setting it, which
/// would race with other threads creating files).
fn umask() -> u32 {
    static UMASK: OnceLock<u32> = OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o777)
    })
}
