//! Repair: fetch a corrupted or missing path's recorded source again and swap the matching tree
//! in atomically.

use crate::error::{Error, Result};
use crate::path::StorePathName;
use crate::reporter::Reporter;
use crate::store::Store;
use crate::sys::{exchange, sync_filesystem};
use crate::tempdir::{TempDir, remove_tree};

impl Store {
    /// Puts a corrupted or missing path right: fetches one of its recorded sources again (each in
    /// turn until one works), unpacks it, and only if the result hashes to the registered tree
    /// hash replaces what is on disk, under the path lock. The database is not changed. A path
    /// with no source (a generation) cannot be repaired this way: its profile is applied again.
    pub fn repair(&self, name: &str, reporter: &dyn Reporter) -> Result<()> {
        let record = self.db().get(name)?.ok_or_else(|| Error::NotInStore(name.to_owned()))?;
        let sources = self.db().sources_of(name)?;
        if sources.is_empty() {
            return Err(Error::Unrepairable {
                name: name.to_owned(),
                why: "no source is recorded for it (a generation is rebuilt by applying its profile again)"
                    .into(),
            });
        }
        let mut failures = Vec::new();
        for (key, url) in &sources {
            let Some(request) = Self::request_from_key(key, url) else {
                failures.push(format!("{url}: unreadable source record `{key}`"));
                continue;
            };
            let format = request.unpack.format.expect("set from the key");
            let work = TempDir::new(&self.dir.join(".tmp"))?;
            let (unpacked, tree_dir, from) = match self.fetch_and_unpack(0, &request, format, &work, reporter)
            {
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
            if self.options.fsync {
                sync_filesystem(&tree_dir)?;
            }
            let dest = self.dir.join(name);
            let _path_lock = self.path_lock(&StorePathName::parse(name)?)?;
            if fs_err::symlink_metadata(&dest).is_ok() {
                // One atomic swap: a reader sees the old tree or the new one, never no tree.
                exchange(&tree_dir, &dest)?;
                remove_tree(&tree_dir)?;
            } else {
                fs_err::rename(&tree_dir, &dest)?;
            }
            return Ok(());
        }
        Err(Error::Unrepairable { name: name.to_owned(), why: failures.join("; ") })
    }
}
