//! The tree model and its canonical hash.
//!
//! A store path's identity is the blake3 hash of a canonical serialization of its tree. The
//! serialization is written down in `docs/store-layout.md` so another implementation can
//! reproduce it; in short (all integers little-endian u64):
//!
//! ```text
//! tree      = "envctl-tree-v1\0" node(root)
//! node(dir) = "d" count { len(name) name node(child) }*      children sorted by name bytes
//! node(reg) = "f" ("x" | "-") size blake3(contents)
//! node(lnk) = "l" len(target) target
//! ```
//!
//! Owners, timestamps and permission bits other than "executable" are not part of the identity:
//! the store normalizes them, so they carry nothing.
//!
//! The unpacker builds this model while it writes, hashing each file as it streams past, so an
//! install never reads its tree back. [`scan`] builds it again from disk (repair, derivations);
//! verify only needs the hash and computes it as it reads, with [`hash_dir_visiting`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::sys::{self, DirFd, EntryKind};

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory and its children, sorted by name.
    Dir(BTreeMap<OsString, Node>),
    /// A regular file.
    File {
        /// Its size in bytes.
        size: u64,
        /// Whether any execute bit was set.
        executable: bool,
        /// blake3 of its contents.
        hash: [u8; 32],
    },
    /// A symbolic link and its target, verbatim.
    Symlink(OsString),
}

/// Counts over a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Bytes in regular files.
    pub size: u64,
    /// Regular files and symlinks.
    pub files: u64,
    /// Directories, the root included.
    pub dirs: u64,
}

impl Node {
    /// An empty directory.
    pub fn empty_dir() -> Node {
        Node::Dir(BTreeMap::new())
    }

    /// The canonical hash of this tree.
    pub fn tree_hash(&self) -> TreeHash {
        let mut out = Serializer::new();
        self.serialize(&mut out);
        out.finish()
    }

    fn serialize(&self, out: &mut Serializer) {
        match self {
            Node::Dir(children) => {
                out.dir(children.len());
                for (name, child) in children {
                    out.name(name);
                    child.serialize(out);
                }
            }
            Node::File { size, executable, hash } => out.file(*executable, *size, hash),
            Node::Symlink(target) => out.symlink(target),
        }
    }

    /// Sizes and counts.
    pub fn stats(&self) -> TreeStats {
        let mut stats = TreeStats::default();
        self.add_stats(&mut stats);
        stats
    }

    fn add_stats(&self, stats: &mut TreeStats) {
        match self {
            Node::Dir(children) => {
                stats.dirs += 1;
                children.values().for_each(|c| c.add_stats(stats));
            }
            Node::File { size, .. } => {
                stats.files += 1;
                stats.size += size;
            }
            Node::Symlink(_) => stats.files += 1,
        }
    }
}

/// A tree's canonical blake3 hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeHash(pub [u8; 32]);

impl std::fmt::Display for TreeHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Builds the model of the tree at `root` from disk, hashing every file. Below the root, entries
/// are opened and read relative to their open directory, and `readdir` gives each one's type: a
/// file costs an open, an `fstat`, one read if it fits the buffer and a close; a symlink one
/// `readlinkat`.
pub fn scan(root: &Path) -> std::io::Result<Node> {
    let meta = fs_err::symlink_metadata(root)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        Ok(Node::Symlink(fs_err::read_link(root)?.into_os_string()))
    } else if ft.is_dir() {
        scan_dir(&mut root.to_path_buf(), &DirFd::open(root)?)
    } else if ft.is_file() {
        let (hash, size) = hash_file(root)?;
        Ok(Node::File { size, executable: meta.permissions().mode() & 0o111 != 0, hash })
    } else {
        Err(neither(root))
    }
}

fn scan_dir(path: &mut PathBuf, dir: &DirFd) -> std::io::Result<Node> {
    let mut children = BTreeMap::new();
    for (name, kind) in dir.entries().map_err(|e| at(path, e))? {
        path.push(&name);
        let node = match entry_kind(path, kind)? {
            EntryKind::Symlink => Node::Symlink(sys::read_link_at(dir, &name).map_err(|e| at(path, e))?),
            EntryKind::Dir => scan_dir(path, &DirFd::open_at(dir, &name, path)?)?,
            EntryKind::File => {
                let (meta, hash, size) = read_file_at(dir, &name, path)?;
                Node::File { size, executable: meta.permissions().mode() & 0o111 != 0, hash }
            }
            EntryKind::Other => return Err(neither(path)),
        };
        children.insert(name, node);
        path.pop();
    }
    Ok(Node::Dir(children))
}

/// The canonical hash of the directory tree at `root`, computed as it is read, without building
/// its model: each directory's entries are sorted and fed to one hasher in the serialization's
/// order. `visit` is handed the path and metadata of every directory and file on the way (verify
/// checks modes in the same pass). The same hash as `scan(root)?.tree_hash()`.
pub fn hash_dir_visiting(
    root: &Path,
    visit: &mut dyn FnMut(&Path, &std::fs::Metadata),
) -> std::io::Result<TreeHash> {
    let dir = DirFd::open(root)?;
    visit(root, &dir.metadata().map_err(|e| at(root, e))?);
    let mut out = Serializer::new();
    hash_dir(&mut root.to_path_buf(), &dir, visit, &mut out)?;
    Ok(out.finish())
}

fn hash_dir(
    path: &mut PathBuf,
    dir: &DirFd,
    visit: &mut dyn FnMut(&Path, &std::fs::Metadata),
    out: &mut Serializer,
) -> std::io::Result<()> {
    let mut entries = dir.entries().map_err(|e| at(path, e))?;
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.dir(entries.len());
    for (name, kind) in entries {
        path.push(&name);
        out.name(&name);
        match entry_kind(path, kind)? {
            EntryKind::Symlink => out.symlink(&sys::read_link_at(dir, &name).map_err(|e| at(path, e))?),
            EntryKind::Dir => {
                let sub = DirFd::open_at(dir, &name, path)?;
                visit(path, &sub.metadata().map_err(|e| at(path, e))?);
                hash_dir(path, &sub, visit, out)?;
            }
            EntryKind::File => {
                let (meta, hash, size) = read_file_at(dir, &name, path)?;
                visit(path, &meta);
                out.file(meta.permissions().mode() & 0o111 != 0, size, &hash);
            }
            EntryKind::Other => return Err(neither(path)),
        }
        path.pop();
    }
    Ok(())
}

/// The canonical serialization (see the module docs), written once here for the model and for
/// trees hashed as they are read, on its way into blake3. It is gathered into large updates: fed
/// a few bytes at a time the hasher compresses one 64-byte block after another, given many KiB at
/// once it hashes several chunks side by side.
struct Serializer {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

impl Serializer {
    const FLUSH_AT: usize = 64 * 1024;

    fn new() -> Serializer {
        let mut out =
            Serializer { hasher: blake3::Hasher::new(), buf: Vec::with_capacity(Self::FLUSH_AT + 4096) };
        out.put(b"envctl-tree-v1\0");
        out
    }

    /// A directory of `count` children; each follows as its name, then its node.
    fn dir(&mut self, count: usize) {
        self.put(b"d");
        self.put(&(count as u64).to_le_bytes());
    }

    fn name(&mut self, name: &std::ffi::OsStr) {
        self.put(&(name.len() as u64).to_le_bytes());
        self.put(name.as_bytes());
    }

    fn file(&mut self, executable: bool, size: u64, hash: &[u8; 32]) {
        self.put(b"f");
        self.put(if executable { b"x" } else { b"-" });
        self.put(&size.to_le_bytes());
        self.put(hash);
    }

    fn symlink(&mut self, target: &std::ffi::OsStr) {
        self.put(b"l");
        self.put(&(target.len() as u64).to_le_bytes());
        self.put(target.as_bytes());
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= Self::FLUSH_AT {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
    }

    fn finish(mut self) -> TreeHash {
        self.hasher.update(&self.buf);
        TreeHash(*self.hasher.finalize().as_bytes())
    }
}

/// What [`visit_dirs`] hands each directory to: its path, its open descriptor, its regular files.
pub(crate) type DirVisitor<'a> = dyn FnMut(&Path, &DirFd, Vec<OsString>) -> std::io::Result<()> + 'a;

/// Every directory under the directory `root`, itself first, each handed to `visit` with its open
/// descriptor and the names of its regular files, read relative to open directories: `readdir`
/// gives each entry's type (an `lstat` tells where the filesystem does not). Symlinks and other
/// entries are left out.
pub(crate) fn visit_dirs(root: &Path, visit: &mut DirVisitor<'_>) -> std::io::Result<()> {
    fn walk(path: &mut PathBuf, dir: &DirFd, visit: &mut DirVisitor<'_>) -> std::io::Result<()> {
        let (mut files, mut subdirs) = (Vec::new(), Vec::new());
        for (name, kind) in dir.entries().map_err(|e| at(path, e))? {
            let kind = match kind {
                Some(kind) => kind,
                None => entry_kind(&path.join(&name), None)?,
            };
            match kind {
                EntryKind::File => files.push(name),
                EntryKind::Dir => subdirs.push(name),
                EntryKind::Symlink | EntryKind::Other => {}
            }
        }
        visit(path, dir, files)?;
        for name in subdirs {
            path.push(&name);
            walk(path, &DirFd::open_at(dir, &name, path)?, visit)?;
            path.pop();
        }
        Ok(())
    }
    walk(&mut root.to_path_buf(), &DirFd::open(root)?, visit)
}

/// The type of the entry at `path`: what `readdir` said, or, where the filesystem does not say,
/// what `lstat` says.
pub(crate) fn entry_kind(path: &Path, kind: Option<EntryKind>) -> std::io::Result<EntryKind> {
    if let Some(kind) = kind {
        return Ok(kind);
    }
    let ft = fs_err::symlink_metadata(path)?.file_type();
    Ok(if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    })
}

/// Opens the regular file `name` of `dir` (at `path`) and hashes it: its metadata, blake3, size.
pub(crate) fn read_file_at(
    dir: &DirFd,
    name: &std::ffi::OsStr,
    path: &Path,
) -> std::io::Result<(std::fs::Metadata, [u8; 32], u64)> {
    let mut file = sys::open_file_at(dir, name).map_err(|e| at(path, e))?;
    let meta = file.metadata().map_err(|e| at(path, e))?;
    if !meta.is_file() {
        return Err(neither(path));
    }
    let (hash, size) = hash_open(&mut file, Some(meta.len())).map_err(|e| at(path, e))?;
    Ok((meta, hash, size))
}

fn at(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{e}: `{}`", path.display()))
}

fn neither(path: &Path) -> std::io::Error {
    std::io::Error::other(format!("`{}` is neither a file, a directory nor a symlink", path.display()))
}

/// blake3 and size of one file's contents, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<([u8; 32], u64)> {
    let mut file = fs_err::File::open(path)?;
    hash_open(&mut file, None)
}

/// blake3 and size of what `file` holds from here to its end. With its `expected` size, a short
/// read that reaches it ends the loop, so a file smaller than the buffer costs one read.
fn hash_open(file: &mut dyn Read, expected: Option<u64>) -> std::io::Result<([u8; 32], u64)> {
    thread_local! {
        // One buffer per thread for its whole life: store files average a few KB, and zeroing a
        // fresh buffer per file cost more than hashing them.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 * 1024]);
    }
    BUF.with_borrow_mut(|buf| {
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        loop {
            let n = match file.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            if n < buf.len() && Some(size) == expected {
                break;
            }
        }
        Ok((*hasher.finalize().as_bytes(), size))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &[u8], executable: bool) -> Node {
        Node::File { size: content.len() as u64, executable, hash: *blake3::hash(content).as_bytes() }
    }

    #[test]
    fn executable_bit_and_names_change_the_hash_but_insertion_order_does_not() {
        let mut a = BTreeMap::new();
        a.insert("b".into(), file(b"2", false));
        a.insert("a".into(), file(b"1", false));
        let mut b = BTreeMap::new();
        b.insert("a".into(), file(b"1", false));
        b.insert("b".into(), file(b"2", false));
        assert_eq!(Node::Dir(a.clone()).tree_hash(), Node::Dir(b).tree_hash());

        let mut exec = a.clone();
        exec.insert("a".into(), file(b"1", true));
        assert_ne!(Node::Dir(a.clone()).tree_hash(), Node::Dir(exec).tree_hash());

        let mut renamed = a.clone();
        let moved = renamed.remove(std::ffi::OsStr::new("a")).unwrap();
        renamed.insert("c".into(), moved);
        assert_ne!(Node::Dir(a).tree_hash(), Node::Dir(renamed).tree_hash());
    }

    #[test]
    fn hashing_a_directory_as_it_is_read_gives_the_hash_of_its_model() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = envctl_testkit::tempdir();
        let root = tmp.path().join("tree");
        // Created out of name order, with names that sort differently as bytes and as text, a
        // file larger than the read buffer, an empty directory and more entries than the
        // serializer gathers before it hashes.
        for dir in ["z", "a/deep/er", "B", "empty"] {
            fs_err::create_dir_all(root.join(dir)).unwrap();
        }
        for i in (0..3000).rev() {
            fs_err::write(root.join("z").join(format!("file-{i:04}-with-a-long-name")), i.to_string())
                .unwrap();
        }
        fs_err::write(root.join("a/deep/er/big"), vec![7u8; 600 * 1024]).unwrap();
        fs_err::write(root.join("B/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("B/run"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("../a/deep", root.join("B/link")).unwrap();
        fs_err::write(root.join("\u{e9}t\u{e9}"), "").unwrap();

        let mut visited = Vec::new();
        let streamed = hash_dir_visiting(&root, &mut |p, _| visited.push(p.to_owned())).unwrap();
        assert_eq!(streamed, scan(&root).unwrap().tree_hash());
        // Every directory and file, not the symlink: 7 directories, the root included, 3,003 files.
        assert_eq!(visited.len(), 7 + 3003);
        assert!(!visited.contains(&root.join("B/link")));

        // And it changes with what the model sees: one file made executable.
        std::fs::set_permissions(root.join("a/deep/er/big"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let changed = hash_dir_visiting(&root, &mut |_, _| {}).unwrap();
        assert_ne!(changed, streamed);
        assert_eq!(changed, scan(&root).unwrap().tree_hash());
    }

    #[test]
    fn a_symlink_is_not_the_file_it_names() {
        let mut a = BTreeMap::new();
        a.insert("x".into(), Node::Symlink("y".into()));
        let mut b = BTreeMap::new();
        b.insert("x".into(), file(b"y", false));
        assert_ne!(Node::Dir(a).tree_hash(), Node::Dir(b).tree_hash());
    }

    #[test]
    fn the_serialization_is_stable() {
        // Pinned so that a change of the serialization is a deliberate, documented one: every
        // store path on every machine depends on it.
        let mut root = BTreeMap::new();
        root.insert("bin".into(), {
            let mut bin = BTreeMap::new();
            bin.insert("tool".into(), file(b"#!/bin/sh\n", true));
            Node::Dir(bin)
        });
        root.insert("lib".into(), Node::Symlink("bin".into()));
        let hash = Node::Dir(root).tree_hash().to_string();
        assert_eq!(hash.len(), 64);
        let mut h = blake3::Hasher::new();
        h.update(b"envctl-tree-v1\0d");
        h.update(&2u64.to_le_bytes());
        h.update(&3u64.to_le_bytes());
        h.update(b"bind");
        h.update(&1u64.to_le_bytes());
        h.update(&4u64.to_le_bytes());
        h.update(b"toolfx");
        h.update(&10u64.to_le_bytes());
        h.update(blake3::hash(b"#!/bin/sh\n").as_bytes());
        h.update(&3u64.to_le_bytes());
        h.update(b"libl");
        h.update(&3u64.to_le_bytes());
        h.update(b"bin");
        assert_eq!(hash, h.finalize().to_hex().to_string());
    }
}
