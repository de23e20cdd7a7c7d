//! Building a profile generation: the symlink farm over packages already in the store, plus its
//! manifest, committed as a store path of its own.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::farm::{self, FarmInput};
use crate::install::Installed;
use crate::path::{Name, StorePathName};
use crate::store::Store;
use crate::tempdir::TempDir;
use crate::tree::Node;
use crate::unpack;

impl Store {
    /// Builds a profile generation from packages already in the store: the symlink farm plus
    /// `.envctl/manifest.toml` with `manifest`, registered with a reference to every package. An
    /// identical generation that already exists is reused.
    pub fn add_generation(&self, profile: &str, inputs: &[FarmInput], manifest: &str) -> Result<Installed> {
        let profile_name = Name::parse(profile)?;
        let mut references = Vec::new();
        for input in inputs {
            let name = input.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if input.path.parent() != Some(self.dir.as_path()) || self.db().get(&name)?.is_none() {
                return Err(Error::NotInStore(input.path.display().to_string()));
            }
            references.push(name);
        }
        let work = TempDir::new(&self.dir.join(".tmp"))?;
        let (tree_dir, tree) = build_farm(&work, inputs, manifest)?;
        let tree_hash = tree.tree_hash();
        let name = StorePathName::derive_generation(&profile_name, &tree_hash);
        let package = (format!("profile-{profile}"), "generation".to_owned());
        let (dest, record) =
            self.commit(&work, &tree_dir, &name, &tree_hash, tree.stats(), package, None, &references)?;
        let recorded = serde_json::to_string(inputs).map_err(std::io::Error::other)?;
        self.db().record_build(&record.name, profile, &recorded, manifest)?;
        Ok(Installed { path: dest, record, fetched: false, skipped: Vec::new(), cache: None })
    }
}

/// Builds a generation's tree in a fresh directory of `work`: the farm, the manifest, every
/// directory read-only. The same inputs and manifest give the same tree hash.
pub(crate) fn build_farm(work: &TempDir, inputs: &[FarmInput], manifest: &str) -> Result<(PathBuf, Node)> {
    let tree_dir = work.fresh("tree")?;
    let mut tree = farm::build(&tree_dir, inputs)?;
    // The manifest: written like any store file (read-only, normalized mtime).
    let meta_dir = tree_dir.join(".envctl");
    if fs_err::symlink_metadata(&meta_dir).is_ok() {
        return Err(Error::Collision {
            path: ".envctl".into(),
            first: "envctl".into(),
            second: "a package".into(),
        });
    }
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
    if let Node::Dir(children) = &mut tree {
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
    // Symlink mtimes are left alone in farms: tens of thousands of links, no meaning, and not
    // part of the hash. Directories are normalized.
    normalize_dirs(&tree_dir, &tree)?;
    Ok((tree_dir, tree))
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
