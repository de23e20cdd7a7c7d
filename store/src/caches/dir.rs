//! A binary cache in a directory (a local disk, NFS): `DIR` or `file://DIR`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::BinaryCache;
use crate::error::Result;
use crate::fetch::Fetcher;
use crate::transfer::write_atomically;

pub(super) struct Dir(pub(super) PathBuf);

impl BinaryCache for Dir {
    fn is_local(&self) -> bool {
        true
    }

    fn location(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }

    fn has(&self, _: &Fetcher, file: &str) -> Result<bool> {
        Ok(self.0.join(file).is_file())
    }

    fn read(&self, _: &Fetcher, file: &str) -> Result<Option<Vec<u8>>> {
        // Bounded like a download: a cache directory is input from elsewhere too.
        match std::fs::File::open(self.0.join(file)) {
            Ok(f) => {
                let mut bytes = Vec::new();
                f.take(super::OBJECT_LIMIT).read_to_end(&mut bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Written in place through a temporary file and a rename: no copy, whole or not at all.
    fn put(
        &self,
        _: &Fetcher,
        file: &str,
        _: &Path,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        let path = self.0.join(file);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        write_atomically(&path, |f| write(f))
    }
}
