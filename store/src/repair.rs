//! Repair: put a damaged valid path right without changing what the database says of it.
//!
//! - Wrong modes only ([`Store::repair_modes`]): every entry gets the store's mode back; nothing
//!   is fetched.
//! - Damaged contents ([`Store::repair`]): a package's recorded source is fetched and unpacked
//!   again, a generation is rebuilt from its recorded inputs and manifest; only a tree that hashes
//!   to the registered tree hash is swapped in, in one atomic exchange.
//!
//! Both hold the maintenance lock exclusively (verify and optimise wait) and the path lock.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::db::PathRecord;
use crate::error::{Error, Result};
use crate::farm::FarmInput;
use crate::flush::flush_tree;
use crate::reporter::Reporter;
use crate::store::Store;
use crate::sys::exchange;
use crate::tempdir::{TempDir, remove_tree};
use crate::verify::store_mode;
use envctl_core::StorePathName;

impl Store {
    /// Puts a corrupted or missing path right: fetches one of its recorded sources again (each in
    /// turn until one works) and unpacks it, or rebuilds a generation from how it was built; only
    /// if the result hashes to the registered tree hash does it replace what is on disk. The
    /// database is not changed.
    pub fn repair(&self, name: &str, reporter: &dyn Reporter) -> Result<()> {
        let _maintenance = self.maintenance_lock(true)?;
        let record = self.db().get(name)?.ok_or_else(|| Error::NotInStore(name.to_owned()))?;
        let sources = self.db().sources_of(name)?;
        if sources.is_empty() {
            let build = self.db().build_of(name)?;
            return match build {
                Some((_profile, inputs, manifest)) => self.rebuild(&record, &inputs, &manifest),
                None => Err(Error::Unrepairable {
                    name: name.to_owned(),
                    why: "neither a source nor a build is recorded for it (apply its profile again)".into(),
                }),
            };
        }
        let mut failures = Vec::new();
        for (key, url) in &sources {
            let derivation = match key.starts_with("derived:") {
                true => self.layer("making a derived path again")?.derivation(self, key)?,
                false => None,
            };
            if let Some(derivation) = derivation {
                // Made by envctl: make it again.
                let made = self.build_derived(&[&derivation]).and_then(|mut built| {
                    let (_work, tree_dir) = built.pop().expect("one derivation, one tree");
                    let tree_hash = crate::tree::scan(&tree_dir)?.tree_hash().to_string();
                    if tree_hash != record.tree_hash {
                        return Err(Error::Unrepairable {
                            name: name.to_owned(),
                            why: format!(
                                "making it again gives tree {tree_hash}, not the registered {}",
                                record.tree_hash
                            ),
                        });
                    }
                    self.swap_in(&record, &tree_dir)
                });
                match made {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        failures.push(e.to_string());
                        continue;
                    }
                }
            }
            let Some(request) = crate::request::InstallRequest::from_source_key(key, url) else {
                failures.push(format!("{url}: unreadable source record `{key}`"));
                continue;
            };
            let format = request.unpack.format.expect("set from the key");
            let work = TempDir::new(&self.dir.join(".tmp"))?;
            let (unpacked, tree_dir, from, _) =
                match self.fetch_and_unpack(0, &request, format, &work, reporter) {
                    Ok(done) => done,
                    Err(e) => {
                        failures.push(e.to_string());
                        continue;
                    }
                };
            let tree_hash = unpacked.tree.tree_hash().to_string();
            if tree_hash != record.tree_hash {
                failures.push(format!(
                    "{from} now unpacks to tree {tree_hash}, not the registered {}",
                    record.tree_hash
                ));
                continue;
            }
            return self.swap_in(&record, &tree_dir);
        }
        Err(Error::Unrepairable { name: name.to_owned(), why: failures.join("; ") })
    }

    /// Rebuilds a generation from its recorded farm inputs and manifest.
    fn rebuild(&self, record: &PathRecord, inputs: &str, manifest: &str) -> Result<()> {
        let unrepairable = |why: String| Error::Unrepairable { name: record.name.clone(), why };
        let inputs: Vec<FarmInput> = serde_json::from_str(inputs)
            .map_err(|e| unrepairable(format!("its recorded build cannot be read: {e}")))?;
        for input in &inputs {
            let package =
                input.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Some(package_record) = self.db().get(&package)? else {
                return Err(unrepairable(format!("its package `{package}` is no longer in the store")));
            };
            if let Some(c) = crate::verify::check_path(&self.dir, &package_record) {
                return Err(unrepairable(format!(
                    "its package `{package}` is damaged too ({}): repair it first",
                    c.problem
                )));
            }
        }
        let work = TempDir::new(&self.dir.join(".tmp"))?;
        let mut tree = crate::generation::plan_generation(&inputs, manifest)?;
        let (tree_dir, _) = crate::generation::write_generation(&work, &mut tree, manifest, None)?;
        let tree_hash = tree.tree_hash().to_string();
        if tree_hash != record.tree_hash {
            return Err(unrepairable(format!(
                "rebuilding it gives tree {tree_hash}, not the registered {}",
                record.tree_hash
            )));
        }
        self.swap_in(record, &tree_dir)
    }

    /// Replaces the path `name` on disk by the finished tree at `tree_dir`: one atomic swap, so a
    /// reader sees the old tree or the new one, never no tree.
    fn swap_in(&self, record: &PathRecord, tree_dir: &Path) -> Result<()> {
        let name = record.name.as_str();
        if self.options.fsync {
            flush_tree(tree_dir, record.size, record.files)?;
        }
        let dest = self.dir.join(name);
        let _path_lock = self.path_lock(&StorePathName::parse(name)?)?;
        if fs_err::symlink_metadata(&dest).is_ok() {
            exchange(tree_dir, &dest)?;
            remove_tree(tree_dir)?;
        } else {
            crate::sys::rename_dir(tree_dir, &dest)?;
        }
        Ok(())
    }

    /// Gives every entry of a valid path the store's mode again (files 0444 or 0555, directories
    /// 0555, no setuid, setgid or sticky bit). Contents are not touched or checked.
    pub fn repair_modes(&self, name: &str) -> Result<usize> {
        let _maintenance = self.maintenance_lock(true)?;
        if self.db().get(name)?.is_none() {
            return Err(Error::NotInStore(name.to_owned()));
        }
        let _path_lock = self.path_lock(&StorePathName::parse(name)?)?;
        fn walk(path: &Path, fixed: &mut usize) -> std::io::Result<()> {
            let meta = fs_err::symlink_metadata(path)?;
            if let Some(want) = store_mode(&meta)
                && meta.permissions().mode() & 0o7777 != want
            {
                fs_err::set_permissions(path, std::fs::Permissions::from_mode(want))?;
                *fixed += 1;
            }
            if meta.is_dir() {
                for entry in fs_err::read_dir(path)? {
                    walk(&entry?.path(), fixed)?;
                }
            }
            Ok(())
        }
        let mut fixed = 0;
        walk(&self.dir.join(name), &mut fixed)?;
        Ok(fixed)
    }
}
