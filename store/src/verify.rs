//! Verify: recompute every valid path's tree hash and compare it with the database, and check
//! that every entry still has the mode the store gave it (files 0444, or 0555 when executable;
//! directories 0555; no setuid, setgid or sticky bit), since a mode is not part of the tree hash
//! beyond the executable bit.
//!
//! Paths are checked on every core; verify holds the maintenance lock shared, so it never sees an
//! optimise or a repair halfway (see `lock`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::db::PathRecord;
use crate::error::Result;
use crate::parallel::on_every_core;
use crate::store::Store;
use crate::tree;

/// What kind of damage [`Store::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Damage {
    /// The contents are right but some entries have the wrong mode: repaired without fetching.
    Modes,
    /// The tree hashes to something else.
    Contents,
    /// The path is not on disk.
    Missing,
    /// It cannot be read (or is not a directory).
    Unreadable,
}

/// One problem found by [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Corruption {
    /// The store path's file name.
    pub name: String,
    /// What is wrong, in words.
    pub problem: String,
    /// What kind of damage it is.
    pub damage: Damage,
}

/// The outcome of [`Store::verify`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Paths checked.
    pub checked: usize,
    /// Paths whose tree no longer matches the database.
    pub corrupted: Vec<Corruption>,
}

/// The mode the store gives an entry, or `None` for symlinks (whose mode means nothing).
pub(crate) fn store_mode(meta: &std::fs::Metadata) -> Option<u32> {
    let ft = meta.file_type();
    if ft.is_dir() {
        Some(0o555)
    } else if ft.is_file() {
        Some(if meta.permissions().mode() & 0o111 != 0 { 0o555 } else { 0o444 })
    } else {
        None
    }
}

/// Checks one valid path.
pub(crate) fn check_path(dir: &Path, record: &PathRecord) -> Option<Corruption> {
    let path = dir.join(&record.name);
    // Every entry whose mode is not the store's: its path inside the tree, its mode.
    let mut wrong: Vec<(String, u32)> = Vec::new();
    let mut check_mode = |entry: &Path, meta: &std::fs::Metadata| {
        if let Some(want) = store_mode(meta) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode != want {
                let inside = entry.strip_prefix(&path).unwrap_or(entry);
                wrong.push((Path::new(".").join(inside).display().to_string(), mode));
            }
        }
    };
    let hashed = match std::fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_dir() => Err((Damage::Unreadable, "is not a directory".to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err((Damage::Missing, "is missing".to_owned())),
        _ => tree::hash_dir_visiting(&path, &mut check_mode)
            .map_err(|e| (Damage::Unreadable, format!("cannot be read: {e}"))),
    };
    let (damage, problem) = match hashed {
        Ok(actual) => {
            let actual = actual.to_string();
            if actual != record.tree_hash {
                (Damage::Contents, format!("tree hash is {actual}, the database says {}", record.tree_hash))
            } else if let Some((first, mode)) = wrong.first() {
                let more = match wrong.len() {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                };
                (Damage::Modes, format!("`{first}` has mode {mode:04o}{more}"))
            } else {
                return None;
            }
        }
        Err(found) => found,
    };
    Some(Corruption { name: record.name.clone(), problem, damage })
}

impl Store {
    /// Recomputes every valid path's tree hash and compares it with the database; checks modes.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _maintenance = self.maintenance_lock(false)?;
        let mut records = self.list()?;
        // Largest first, so that no big path (a generation of 60,000 links) is left for last
        // while the other threads have nothing to do. A file costs about as much as reading a
        // few KiB of it (an open, a stat, a close).
        records.sort_by_key(|r| std::cmp::Reverse(r.files.saturating_mul(4096).saturating_add(r.size)));
        let mut corrupted = on_every_core(&records, |record, found| {
            found.extend(check_path(self.dir(), record));
            Ok(())
        })?;
        corrupted.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(VerifyReport { checked: records.len(), corrupted })
    }
}
