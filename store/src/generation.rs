//! Building a profile generation: the symlink farm over packages already in the store, plus its
//! manifest, committed as a store path of its own.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::db::PathRecord;
use crate::error::{Error, Result};
use crate::farm::{self, FarmInput};
use crate::request::Installed;
use crate::store::Store;
use crate::tempdir::TempDir;
use crate::tree::Node;
use crate::unpack;
use envctl_core::{Name, StorePathName};

impl Store {
    /// Builds a profile generation from packages already in the store: the symlink farm plus
    /// `.envctl/manifest.toml` with `manifest`, registered with a reference to every package. An
    /// identical generation that already exists is reused. Links that `previous` (the profile's
    /// current generation) has at the same place with the same target are hard-linked from it
    /// rather than made again: switching one package of a large profile writes only that
    /// package's links, and the new generation shares the inodes and blocks of the rest.
    pub fn add_generation(
        &self,
        profile: &str,
        inputs: &[FarmInput],
        manifest: &str,
        previous: Option<&Path>,
    ) -> Result<Installed> {
        let profile_name = Name::parse(profile)?;
        let mut references = Vec::new();
        let mut inputs = inputs.to_vec();
        for input in &mut inputs {
            let name = input.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if input.path.parent() != Some(self.dir.as_path()) || self.db().get(&name)?.is_none() {
                return Err(Error::NotInStore(input.path.display().to_string()));
            }
            // Read where a tree is mounted elsewhere (a wheel's `site-packages`): a package's own
            // top-level directories meet the others' (`lib/`, `bin/`), so a climb from there
            // already ends in the profile, and reading every library of every package would cost
            // a cold apply a file open per library.
            if input.remap.values().any(|to| !to.is_empty()) {
                input.real_dirs = self.climbing_dirs(&name)?.into_iter().map(|(dir, _)| dir).collect();
                input.real_dirs.retain(|d| !d.is_empty());
            }
            references.push(name);
        }
        let inputs = &inputs[..];
        let mut tree = plan_generation(inputs, manifest)?;
        let tree_hash = tree.tree_hash();
        let name = StorePathName::derive_generation(&profile_name, &tree_hash.0);
        let recorded = serde_json::to_string(inputs).map_err(std::io::Error::other)?;
        // Switching back to a generation that still exists costs its plan, not its links.
        if let Some(record) = self.valid(&name)? {
            self.db().record_build(&record.name, profile, &recorded, manifest)?;
            return Ok(Installed::present(self.dir.join(name.as_str()), record));
        }
        // Only a store path is shared from (a hard link must stay inside the store).
        let earlier = previous.filter(|p| p.parent() == Some(self.dir.as_path()));
        let work = TempDir::new(&self.dir.join(".tmp"))?;
        let (tree_dir, shared) = write_generation(&work, &mut tree, manifest, earlier)?;
        tracing::info!(shared, "links shared with the previous generation");
        let package = (format!("profile-{profile}"), "generation".to_owned());
        let (dest, record) =
            self.commit(&work, &tree_dir, &name, &tree_hash, tree.stats(), package, None, &references)?;
        self.db().record_build(&record.name, profile, &recorded, manifest)?;
        Ok(Installed::present(dest, record))
    }

    /// The directories of the valid path `name` whose shared objects' run paths climb out of
    /// them (see `elf.rs`): found once, then recorded.
    pub(crate) fn climbing_dirs(&self, name: &str) -> Result<Vec<(String, u32)>> {
        let recorded = self.db().climbs(name)?;
        if let Some(dirs) = recorded {
            return Ok(dirs);
        }
        let dirs = crate::elf::climbing_dirs(&self.dir.join(name))?;
        // A store this process may not write is read again next time.
        if self.writable() {
            self.db().record_climbs(name, &dirs)?;
        }
        Ok(dirs)
    }

    /// The record of `name` if it is registered and on disk (checked under its path lock).
    fn valid(&self, name: &StorePathName) -> Result<Option<PathRecord>> {
        let _path_lock = self.path_lock(name)?;
        let record = self.db().get(name.as_str())?;
        Ok(record.filter(|_| self.dir.join(name.as_str()).is_dir()))
    }
}

/// A generation's model: the farm planned from `inputs`, plus `.envctl/manifest.toml` holding
/// `manifest`. The same inputs and manifest give the same tree hash.
pub(crate) fn plan_generation(inputs: &[FarmInput], manifest: &str) -> Result<Node> {
    let mut tree = farm::plan(inputs)?;
    if let Node::Dir(children) = &tree
        && children.contains_key(std::ffi::OsStr::new(".envctl"))
    {
        return Err(Error::Collision {
            path: ".envctl".into(),
            first: "envctl".into(),
            second: "a package".into(),
        });
    }
    add_manifest(&mut tree, manifest);
    Ok(tree)
}

/// Writes the generation `tree` (from [`plan_generation`], with `manifest`) in a fresh directory
/// of `work`: the farm, the manifest, every directory read-only. Returns the directory and how
/// many links were shared with `reuse`.
pub(crate) fn write_generation(
    work: &TempDir,
    tree: &mut Node,
    manifest: &str,
    earlier: Option<&Path>,
) -> Result<(PathBuf, u64)> {
    let Node::Dir(children) = tree else { unreachable!("a plan's root is a directory") };
    let meta = children.remove(std::ffi::OsStr::new(".envctl"));
    let tree_dir = work.fresh("tree")?;
    let shared = farm::write(&tree_dir, tree, earlier);
    if let (Node::Dir(children), Some(meta)) = (&mut *tree, meta) {
        children.insert(".envctl".into(), meta);
    }
    let shared = shared?;
    // The manifest: written like any store file (read-only, normalized mtime).
    let meta_dir = tree_dir.join(".envctl");
    fs_err::create_dir(&meta_dir)?;
    let manifest_path = meta_dir.join("manifest.toml");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o444).open(&manifest_path)?;
        f.write_all(manifest.as_bytes())?;
        f.set_times(
            std::fs::FileTimes::new().set_modified(SystemTime::UNIX_EPOCH + unpack::NORMALIZED_MTIME),
        )?;
    }
    // Symlink mtimes are left alone in farms: tens of thousands of links, no meaning, and not
    // part of the hash. Directories are normalized.
    normalize_dirs(&tree_dir, tree)?;
    Ok((tree_dir, shared))
}

/// Adds `.envctl/manifest.toml` to a farm's model.
fn add_manifest(tree: &mut Node, manifest: &str) {
    if let Node::Dir(children) = tree {
        let mut meta = std::collections::BTreeMap::new();
        meta.insert(
            std::ffi::OsString::from("manifest.toml"),
            Node::File {
                size: manifest.len() as u64,
                executable: false,
                hash: *blake3::hash(manifest.as_bytes()).as_bytes(),
            },
        );
        children.insert(".envctl".into(), Node::Dir(meta));
    }
}

/// Makes every directory of a farm read-only with the normalized mtime, children first.
fn normalize_dirs(root: &Path, tree: &Node) -> std::io::Result<()> {
    fn walk(path: &mut PathBuf, node: &Node) -> std::io::Result<()> {
        if let Node::Dir(children) = node {
            for (name, child) in children {
                if matches!(child, Node::Dir(_)) {
                    path.push(name);
                    walk(path, child)?;
                    path.pop();
                }
            }
            fs_err::set_permissions(&*path, std::fs::Permissions::from_mode(0o555))?;
            unpack::set_mtime(path, false)?;
        }
        Ok(())
    }
    walk(&mut root.to_path_buf(), tree)
}
