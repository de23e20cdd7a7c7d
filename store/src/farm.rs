//! The symlink farm: a generation's tree, merged from its packages' trees.
//!
//! Rules (as Nix's buildenv): a directory that only one package has becomes one symlink to it; a
//! directory several packages have becomes a real directory, and merging continues inside; a file
//! or symlink becomes a symlink into its package. Two packages shipping the same path are a
//! collision unless their contents are identical (same bytes and executable bit, or the same link
//! target), or one of them has a higher priority. Entries are read with `readdir` only (the entry
//! type comes with the name), so a package's own directories cost one syscall to link and nothing
//! to inspect.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys::{self, DirFd};
use crate::tree::{self, Node};

/// One package going into a farm.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FarmInput {
    /// Package name (for collision messages and priorities).
    pub name: String,
    /// Its store path.
    pub path: PathBuf,
    /// Higher wins a collision; equal priorities collide.
    pub priority: i64,
    /// Top-level directories of the package that appear elsewhere in the farm: `site-packages`
    /// → `lib/python3.11/site-packages` puts a wheel where the profile's Python looks; an empty
    /// destination leaves the directory out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remap: BTreeMap<String, String>,
    /// Directories of the package (relative to it, before `remap`) that the farm makes real
    /// directories, never one link, down to themselves: they hold shared objects whose run paths
    /// climb out of them (`$ORIGIN/../../nvidia/cublas/lib`; see `elf.rs`), and the climb must
    /// end in the profile. Filled in by `Store::add_generation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub real_dirs: Vec<String>,
}

/// Where a farm entry's contents come from: a directory of a package, or a directory that only
/// exists in the farm because a remapped tree is mounted below it (`lib/` → `python3.11/` →
/// the wheel's `site-packages`).
#[derive(Debug, Clone)]
enum Src {
    /// A real directory; at the top level of a package, without its remapped entries.
    Dir(PathBuf),
    /// The farm directories `rest` lead to `target`.
    Mount(Vec<OsString>, PathBuf),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Link,
}

fn kind_of(entry: &fs_err::DirEntry) -> Result<Kind> {
    let ft = entry.file_type()?;
    Ok(if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Link
    } else {
        Kind::File
    })
}

/// Plans the farm for `inputs`: its model, read from the packages' trees, nothing written. The
/// root is always a directory; every other entry is a directory (where several packages meet) or
/// a symlink into one package.
pub fn plan(inputs: &[FarmInput]) -> Result<Node> {
    let real = real_dirs(inputs);
    let mut sources: Vec<(usize, Src)> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        sources.push((i, Src::Dir(input.path.clone())));
        for (from, to) in &input.remap {
            let target = input.path.join(from);
            // An empty destination leaves the entry out of the farm.
            if target.is_dir() && !to.is_empty() {
                let rest: Vec<OsString> = Path::new(to).iter().map(OsString::from).collect();
                sources.push((i, Src::Mount(rest, target)));
            }
        }
    }
    let mut rel = PathBuf::new();
    merge_dir(&mut rel, &sources, inputs, &real)
}

/// The farm's places of every input's `real_dirs` (through its `remap`), and every directory
/// above them.
fn real_dirs(inputs: &[FarmInput]) -> std::collections::BTreeSet<PathBuf> {
    let mut real = std::collections::BTreeSet::new();
    for input in inputs {
        for dir in &input.real_dirs {
            let dir = Path::new(dir);
            let placed = input.remap.iter().find_map(|(from, to)| {
                let rest = dir.strip_prefix(from).ok()?;
                // Left out of the farm: nothing to make real.
                Some((!to.is_empty()).then(|| Path::new(to).join(rest)))
            });
            let Some(mut place) = placed.unwrap_or_else(|| Some(dir.to_path_buf())) else { continue };
            while !place.as_os_str().is_empty() && real.insert(place.clone()) {
                place.pop();
            }
        }
    }
    real
}

fn merge_dir(
    rel: &mut PathBuf,
    sources: &[(usize, Src)],
    inputs: &[FarmInput],
    real: &std::collections::BTreeSet<PathBuf>,
) -> Result<Node> {
    // name -> [(input, source, kind)]
    let mut entries: BTreeMap<OsString, Vec<(usize, Src, Kind)>> = BTreeMap::new();
    let top = rel.as_os_str().is_empty();
    for (i, src) in sources {
        match src {
            Src::Dir(dir) => {
                for entry in fs_err::read_dir(dir)? {
                    let entry = entry?;
                    let name = entry.file_name();
                    if top && inputs[*i].remap.keys().any(|k| OsStr::new(k) == name) {
                        continue;
                    }
                    let kind = kind_of(&entry)?;
                    // Most names come from one package: room for one (a profile's `lib/` holds
                    // tens of thousands of them).
                    entries.entry(name).or_insert_with(|| Vec::with_capacity(1)).push((
                        *i,
                        Src::Dir(entry.path()),
                        kind,
                    ));
                }
            }
            Src::Mount(rest, target) => {
                let next = match rest.len() {
                    1 => Src::Dir(target.clone()),
                    _ => Src::Mount(rest[1..].to_vec(), target.clone()),
                };
                entries.entry(rest[0].clone()).or_default().push((*i, next, Kind::Dir));
            }
        }
    }
    let mut children = BTreeMap::new();
    for (name, mut group) in entries {
        rel.push(&name);
        let whole = !(group[0].2 == Kind::Dir && real.contains(rel.as_path()));
        let node = if group.len() == 1 && matches!(group[0].1, Src::Dir(_)) && whole {
            let (_, src, _) = group.pop().expect("one entry");
            let Src::Dir(path) = src else { unreachable!("matched above") };
            Node::Symlink(path.into_os_string())
        } else if group.iter().all(|(_, _, k)| *k == Kind::Dir) {
            // Several packages' directories, or one that only exists in the farm: a real one.
            let sub: Vec<(usize, Src)> = group.into_iter().map(|(i, p, _)| (i, p)).collect();
            merge_dir(rel, &sub, inputs, real)?
        } else {
            let winner = settle(&group, rel, inputs)?;
            let (i, src, _) = group.swap_remove(winner);
            match src {
                Src::Dir(path) => Node::Symlink(path.into_os_string()),
                Src::Mount(..) => merge_dir(rel, &[(i, src)], inputs, real)?,
            }
        };
        children.insert(name, node);
        rel.pop();
    }
    Ok(Node::Dir(children))
}

/// Writes the farm `tree` (from [`plan`]) into `dest`, an existing empty directory. A link that
/// the farm at `earlier` (the profile's current generation) holds at the same place with the same
/// target, as `readlink` finds it there, is not made again but hard-linked from it: one directory
/// entry, no new inode and no new block. Any other link is a new symlink. Returns how many links
/// were shared.
pub(crate) fn write(dest: &Path, tree: &Node, earlier: Option<&Path>) -> Result<u64> {
    let Node::Dir(children) = tree else { return Err(not_a_farm(dest)) };
    let root = DirFd::open(dest)?;
    // An earlier farm that cannot be opened is only a missed chance to share.
    let earlier = earlier.and_then(|p| DirFd::open(p).ok());
    let mut shared = 0;
    write_dir(&mut dest.to_path_buf(), &root, children, earlier.as_ref(), &mut shared)?;
    Ok(shared)
}

/// Above this many entries, a directory's links are looked up in the earlier farm on a second
/// thread while this one writes: a profile's `lib/` has tens of thousands.
const CONFIRM_APART: usize = 4096;

fn write_dir(
    path: &mut PathBuf,
    dir: &DirFd,
    children: &BTreeMap<OsString, Node>,
    earlier: Option<&DirFd>,
    shared: &mut u64,
) -> Result<()> {
    // For each link in order: whether the earlier farm has the same one here.
    let confirm = move |(name, node): (&OsString, &Node)| match node {
        Node::Symlink(target) => Some(earlier.is_some_and(|old| sys::link_points_to(old, name, target))),
        _ => None,
    };
    match earlier {
        Some(_) if children.len() > CONFIRM_APART => std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<bool>>(8);
            scope.spawn(move || {
                let mut chunk = Vec::with_capacity(1024);
                for verdict in children.iter().filter_map(confirm) {
                    chunk.push(verdict);
                    if chunk.len() == 1024
                        && tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(1024))).is_err()
                    {
                        return;
                    }
                }
                let _ = tx.send(chunk);
            });
            write_entries(path, dir, children, earlier, &mut rx.into_iter().flatten(), shared)
        }),
        _ => write_entries(path, dir, children, earlier, &mut children.iter().filter_map(confirm), shared),
    }
}

fn write_entries(
    path: &mut PathBuf,
    dir: &DirFd,
    children: &BTreeMap<OsString, Node>,
    earlier: Option<&DirFd>,
    confirmed: &mut dyn Iterator<Item = bool>,
    shared: &mut u64,
) -> Result<()> {
    for (name, node) in children {
        path.push(name);
        match node {
            Node::Dir(sub) => {
                sys::mkdir_at(dir, name, path)?;
                let fd = DirFd::open_at(dir, name, path)?;
                // Not a directory there (or none): nothing below it to share.
                let old = earlier.and_then(|old| DirFd::open_at(old, name, path).ok());
                write_dir(path, &fd, sub, old.as_ref(), shared)?;
            }
            Node::Symlink(target) => {
                let reused = confirmed.next().unwrap_or(false)
                    && earlier.is_some_and(|old| sys::link_at(old, name, dir).is_ok());
                if reused {
                    *shared += 1;
                } else {
                    sys::symlink_at(target, dir, name, path)?;
                }
            }
            Node::File { .. } => return Err(not_a_farm(path)),
        }
        path.pop();
    }
    Ok(())
}

fn not_a_farm(path: &Path) -> Error {
    std::io::Error::other(format!("`{}`: a farm holds only directories and links", path.display())).into()
}

/// Picks the entry that wins a path several packages ship, or reports the collision.
fn settle(group: &[(usize, Src, Kind)], rel: &Path, inputs: &[FarmInput]) -> Result<usize> {
    let top = group.iter().map(|(i, _, _)| inputs[*i].priority).max().expect("non-empty group");
    let best: Vec<usize> = (0..group.len()).filter(|&g| inputs[group[g].0].priority == top).collect();
    let first = best[0];
    for &other in &best[1..] {
        if !identical(&group[first], &group[other])? {
            return Err(Error::Collision {
                path: rel.display().to_string(),
                first: inputs[group[first].0].name.clone(),
                second: inputs[group[other].0].name.clone(),
            });
        }
    }
    Ok(first)
}

/// Whether two packages' entries at one path are the same to whoever reads them: the same link
/// target, or the same file (bytes and executable bit), directly or through links. The wheels of
/// one namespace (NVIDIA's `nvidia-*-cu12` all ship an empty `nvidia/__init__.py`) reach the
/// farm through each wheel's bytecode tree as links into their own store paths: different
/// targets, one content.
fn identical(a: &(usize, Src, Kind), b: &(usize, Src, Kind)) -> Result<bool> {
    let (Src::Dir(pa), Src::Dir(pb)) = (&a.1, &b.1) else { return Ok(false) };
    match (a.2, b.2) {
        (Kind::Link, Kind::Link) if fs_err::read_link(pa)? == fs_err::read_link(pb)? => Ok(true),
        (Kind::Link | Kind::File, Kind::Link | Kind::File) => {
            // Through links; a dangling one is never the same as anything.
            let (Ok(ma), Ok(mb)) = (std::fs::metadata(pa), std::fs::metadata(pb)) else { return Ok(false) };
            if !ma.is_file() || !mb.is_file() {
                return Ok(false);
            }
            if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
                return Ok(true);
            }
            if ma.len() != mb.len() || (ma.mode() & 0o111 != 0) != (mb.mode() & 0o111 != 0) {
                return Ok(false);
            }
            Ok(tree::hash_file(pa)?.0 == tree::hash_file(pb)?.0)
        }
        _ => Ok(false),
    }
}
