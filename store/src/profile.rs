//! Profiles and generations.
//!
//! ```text
//! <home>/profiles/
//! ├── vision -> vision-3-link                      the current generation (relative link)
//! ├── vision-2-link -> <store>/<hash>-profile-vision
//! ├── vision-3-link -> <store>/<hash>-profile-vision
//! └── .vision.lock                                 the per-profile lock
//! ```
//!
//! A generation is a store path; the numbered links are GC roots. Switching (new generation,
//! rollback, `--to N`) writes the numbered link first, then renames a temporary symlink over
//! `profiles/<name>`, so a reader sees the old generation or the new one, never neither. The
//! per-profile lock serializes creating, switching and deleting generations of one profile;
//! readers (sessions, listings) take no lock.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::lock::FileLock;

/// One generation of a profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Generation {
    /// Its number, from 1.
    pub number: u32,
    /// Its store path.
    pub path: PathBuf,
    /// When it was created (unix seconds; the numbered link's mtime).
    pub created: i64,
    /// Whether it is the current one.
    pub current: bool,
}

/// The profiles directory.
#[derive(Debug, Clone)]
pub struct Profiles {
    dir: PathBuf,
}

/// Checks a profile name: the package-name rules.
pub fn check_profile_name(name: &str) -> Result<()> {
    crate::path::Name::parse(name).map(|_| ()).map_err(|_| Error::Invalid {
        what: "profile name",
        value: name.to_owned(),
        rule: "use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit",
    })
}

fn link_name(name: &str, n: u32) -> String {
    format!("{name}-{n}-link")
}

impl Profiles {
    /// The profiles under `<home>/profiles`, created if needed.
    pub fn open(home: &Path) -> Result<Profiles> {
        let dir = home.join("profiles");
        fs_err::create_dir_all(&dir)?;
        Ok(Profiles { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the per-profile lock (create, switch, delete).
    pub fn lock(&self, name: &str) -> Result<FileLock> {
        check_profile_name(name)?;
        Ok(FileLock::exclusive(&self.dir.join(format!(".{name}.lock")))?)
    }

    /// Profile names, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && !name.ends_with("-link") && check_profile_name(&name).is_ok() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The current generation's number, if the profile exists.
    pub fn current_number(&self, name: &str) -> Result<Option<u32>> {
        match std::fs::read_link(self.dir.join(name)) {
            Ok(target) => Ok(parse_number(name, &target.to_string_lossy())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(std::io::Error::new(e.kind(), format!("cannot read profile `{name}`: {e}")).into()),
        }
    }

    /// Every generation of a profile, oldest first.
    pub fn generations(&self, name: &str) -> Result<Vec<Generation>> {
        check_profile_name(name)?;
        let current = self.current_number(name)?;
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(number) = parse_number(name, &file) else { continue };
            let link = entry.path();
            let path = fs_err::read_link(&link)?;
            let created = fs_err::symlink_metadata(&link)?.mtime();
            out.push(Generation { number, path, created, current: current == Some(number) });
        }
        out.sort_by_key(|g| g.number);
        Ok(out)
    }

    /// The current generation.
    pub fn current(&self, name: &str) -> Result<Option<Generation>> {
        Ok(self.generations(name)?.into_iter().find(|g| g.current))
    }

    /// Adds `store_path` as a new generation and makes it current. Caller holds the profile lock.
    pub fn add_generation(&self, name: &str, store_path: &Path) -> Result<u32> {
        let next = self.generations(name)?.last().map_or(1, |g| g.number + 1);
        let link = self.dir.join(link_name(name, next));
        let tmp = self.dir.join(format!(".{}.tmp{}", link_name(name, next), std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        fs_err::os::unix::fs::symlink(store_path, &tmp)?;
        fs_err::rename(&tmp, &link)?;
        self.switch(name, next)?;
        Ok(next)
    }

    /// Makes generation `number` current: one rename. Caller holds the profile lock.
    pub fn switch(&self, name: &str, number: u32) -> Result<()> {
        let link = link_name(name, number);
        if std::fs::symlink_metadata(self.dir.join(&link)).is_err() {
            return Err(Error::NoGeneration { profile: name.to_owned(), number });
        }
        let tmp = self.dir.join(format!(".{name}.switch{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        fs_err::os::unix::fs::symlink(&link, &tmp)?;
        fs_err::rename(&tmp, self.dir.join(name))?;
        Ok(())
    }

    /// Deletes generations (their links); never the current one. Caller holds the profile lock.
    pub fn delete(&self, name: &str, numbers: &[u32]) -> Result<()> {
        let current = self.current_number(name)?;
        for &n in numbers {
            if Some(n) == current {
                return Err(Error::DeleteCurrent { profile: name.to_owned(), number: n });
            }
        }
        for &n in numbers {
            match std::fs::remove_file(self.dir.join(link_name(name, n))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::NoGeneration { profile: name.to_owned(), number: n });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Store paths of every generation of every profile: GC roots.
    pub fn roots(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.ends_with("-link") && !file.starts_with('.') {
                out.push(fs_err::read_link(entry.path())?);
            }
        }
        Ok(out)
    }
}

fn parse_number(name: &str, file: &str) -> Option<u32> {
    file.strip_prefix(name)?.strip_prefix('-')?.strip_suffix("-link")?.parse().ok()
}
