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

/// Builds the farm for `inputs` into `dest` (an existing empty directory) and returns its model.
/// The root is always a real directory.
pub fn build(dest: &Path, inputs: &[FarmInput]) -> Result<Node> {
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
    merge_dir(dest, &mut rel, &sources, inputs)
}

fn merge_dir(dest: &Path, rel: &mut PathBuf, sources: &[(usize, Src)], inputs: &[FarmInput]) -> Result<Node> {
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
        let target = dest.join(&*rel);
        let node = if group.len() == 1 && matches!(group[0].1, Src::Dir(_)) {
            let (_, src, _) = group.pop().expect("one entry");
            let Src::Dir(path) = src else { unreachable!("matched above") };
            link(path, &target)?
        } else if group.iter().all(|(_, _, k)| *k == Kind::Dir) {
            // Several packages' directories, or one that only exists in the farm: a real one.
            fs_err::create_dir(&target)?;
            let sub: Vec<(usize, Src)> = group.into_iter().map(|(i, p, _)| (i, p)).collect();
            merge_dir(dest, rel, &sub, inputs)?
        } else {
            let winner = settle(&group, rel, inputs)?;
            match &group[winner].1 {
                Src::Dir(path) => link(path.clone(), &target)?,
                Src::Mount(..) => {
                    fs_err::create_dir(&target)?;
                    let (i, src, _) = group.swap_remove(winner);
                    merge_dir(dest, rel, &[(i, src)], inputs)?
                }
            }
        };
        children.insert(name, node);
        rel.pop();
    }
    Ok(Node::Dir(children))
}

fn link(source: PathBuf, target: &Path) -> Result<Node> {
    std::os::unix::fs::symlink(&source, target).map_err(|e| {
        std::io::Error::new(e.kind(), format!("failed to create symlink `{}`: {e}", target.display()))
    })?;
    Ok(Node::Symlink(source.into_os_string()))
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
