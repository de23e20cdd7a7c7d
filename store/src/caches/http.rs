//! A binary cache on an HTTP(S) base: read with `GET`, written with `PUT`.

use std::io::Write;
use std::path::Path;

use super::BinaryCache;
use crate::error::Result;
use crate::fetch::Fetcher;

pub(super) struct Http(pub(super) String);

impl BinaryCache for Http {
    fn is_local(&self) -> bool {
        false
    }

    fn location(&self, file: &str) -> String {
        format!("{}/{file}", self.0)
    }

    fn has(&self, fetcher: &Fetcher, file: &str) -> Result<bool> {
        fetcher.exists(&self.location(file))
    }

    fn read(&self, fetcher: &Fetcher, file: &str) -> Result<Option<Vec<u8>>> {
        super::read_url(fetcher, &self.location(file))
    }

    fn put(
        &self,
        fetcher: &Fetcher,
        file: &str,
        staging: &Path,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        super::put_url(fetcher, &self.location(file), staging, write)
    }
}
