//! What crashed processes leave in a store, swept by the next process that finds the store idle
//! (it holds the store lock exclusively, so nobody else is writing): `.tmp/` and `.trash/`
//! contents, what an optimise killed halfway left open, and store directories that were never
//! registered (an install killed between its rename and its registration, a GC killed between
//! its transaction and its renames).

use std::path::Path;

use envctl_core::StorePathName;

use crate::db::Database;
use crate::error::Result;
use crate::tempdir::remove_tree;

/// Sweeps the store at `dir`, whose database is `db`. Only called while holding the store lock
/// exclusively.
pub(crate) fn sweep(dir: &Path, db: &Database) -> Result<()> {
    // First close what an optimise killed halfway left open (its temporary links are in .tmp).
    crate::journal::recover(dir)?;
    for leftovers in [dir.join(".tmp"), dir.join(".trash")] {
        for entry in fs_err::read_dir(&leftovers)? {
            // A program a killed envctl started may still be writing there (a build backend's
            // own children): what cannot be removed now is left for the next sweep, and the
            // command goes on; nothing in `.tmp/` is ever read.
            let path = entry?.path();
            if let Err(e) = remove_tree(&path) {
                tracing::warn!("left `{}` for a later sweep: {e}", path.display());
            }
        }
    }
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || StorePathName::parse(name).is_err() {
            continue;
        }
        if db.get(name)?.is_none() {
            tracing::info!(path = name, "removing unregistered store path left by an interrupted install");
            let trash = dir.join(".trash").join(name);
            crate::sys::rename_dir(&entry.path(), &trash)?;
            remove_tree(&trash)?;
        }
    }
    Ok(())
}
