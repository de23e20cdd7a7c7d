//! The journal of store directories an optimise has opened for writing: each is recorded before
//! it is opened (mode 0755), and the journal is removed once all are closed again (mode 0555,
//! normalized mtime). A journal left by a killed optimise is closed out by [`recover`], which the
//! next process to find the store idle calls.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::unpack;

/// The list of directories an optimise has opened.
pub(crate) struct Journal {
    store: PathBuf,
    path: PathBuf,
    file: Option<std::fs::File>,
    opened: std::collections::HashSet<PathBuf>,
}

impl Journal {
    pub(crate) fn open(store: &Path) -> Result<Journal> {
        Ok(Journal {
            store: store.to_path_buf(),
            path: journal_path(store),
            file: None,
            opened: Default::default(),
        })
    }

    /// Records `dir` before it is opened; each directory once.
    pub(crate) fn record(&mut self, dir: &Path) -> Result<()> {
        if self.opened.contains(dir) {
            return Ok(());
        }
        if self.file.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o644).open(&self.path);
            self.file = Some(file.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot write `{}`: {e}", self.path.display()))
            })?);
        }
        use std::io::Write;
        // Relative to the store, so that the journal reads the same however the home is spelled.
        let rel = dir.strip_prefix(&self.store).unwrap_or(dir);
        let line = format!("{}\n", rel.display());
        self.file.as_mut().expect("opened above").write_all(line.as_bytes())?;
        self.opened.insert(dir.to_path_buf());
        Ok(())
    }

    /// Every recorded directory is closed: the journal goes.
    pub(crate) fn finish(self) -> Result<()> {
        if self.file.is_some() {
            fs_err::remove_file(&self.path)?;
        }
        Ok(())
    }
}

fn journal_path(store: &Path) -> PathBuf {
    store.join(".envctl/optimise.journal")
}

/// Closes every directory a killed optimise left open (mode 0555, normalized mtime), then removes
/// its journal. Called with the maintenance lock held exclusively, or the store idle.
pub(crate) fn recover(store: &Path) -> Result<()> {
    let path = journal_path(store);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(
                std::io::Error::new(e.kind(), format!("cannot read `{}`: {e}", path.display())).into()
            );
        }
    };
    for line in text.lines() {
        let rel = Path::new(line);
        // Only directories inside this store; a torn last line or a path since collected is skipped.
        let inside = rel.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        let dir = store.join(rel);
        if line.is_empty() || !inside || !dir.is_dir() {
            continue;
        }
        let dir = dir.as_path();
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o555))?;
        unpack::set_mtime(dir, false)?;
        tracing::info!(dir = %dir.display(), "closed a store directory an interrupted optimise left open");
    }
    fs_err::remove_file(&path)?;
    Ok(())
}
