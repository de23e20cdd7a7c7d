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

/// Checks a profile name: the package-name rules, and not the shape of a generation link
/// (`NAME-N-link`), so that no profile's link can be another profile's generation.
pub fn check_profile_name(name: &str) -> Result<()> {
    crate::path::Name::parse(name).map_err(|_| Error::Invalid {
        what: "profile name",
        value: name.to_owned(),
        rule: "use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit",
    })?;
    if is_generation_link(name) {
        return Err(Error::Invalid {
            what: "profile name",
            value: name.to_owned(),
            rule: "a name ending in `-<number>-link` is how envctl names a generation; choose another",
        });
    }
    Ok(())
}

/// Whether a file name has the shape of a generation link, `<anything>-<digits>-link`.
fn is_generation_link(file: &str) -> bool {
    file.strip_suffix("-link")
        .and_then(|rest| rest.rsplit_once('-'))
        .is_some_and(|(stem, n)| !stem.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
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

    /// The profiles under `<home>/profiles` for reading: nothing is created, and a home without
    /// profiles simply has none.
    pub fn at(home: &Path) -> Profiles {
        Profiles { dir: home.join("profiles") }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the per-profile lock (create, switch, delete), then sweeps the temporary links a
    /// killed holder may have left (`.NAME.switch<pid>`, `.NAME-N-link.tmp<pid>`): with the lock
    /// held, nobody else is writing them.
    pub fn lock(&self, name: &str) -> Result<FileLock> {
        check_profile_name(name)?;
        let lock = FileLock::exclusive(&self.dir.join(format!(".{name}.lock")))?;
        self.sweep_temporaries(name)?;
        Ok(lock)
    }

    /// Takes the per-profile lock only if nobody holds it, sweeping as [`Profiles::lock`] does.
    pub fn try_lock(&self, name: &str) -> Result<Option<FileLock>> {
        check_profile_name(name)?;
        let Some(lock) = FileLock::try_exclusive(&self.dir.join(format!(".{name}.lock")))? else {
            return Ok(None);
        };
        self.sweep_temporaries(name)?;
        Ok(Some(lock))
    }

    fn sweep_temporaries(&self, name: &str) -> Result<()> {
        for entry in fs_err::read_dir(&self.dir)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            let Some(rest) = file.strip_prefix('.') else { continue };
            let temporary = rest
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(".switch"))
                .or_else(|| {
                    rest.rsplit_once(".tmp")
                        .filter(|(link, _)| parse_number(name, link).is_some())
                        .map(|(_, pid)| pid)
                })
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
            if temporary {
                match std::fs::remove_file(self.dir.join(&file)) {
                    Ok(()) => tracing::info!(file, "removed a temporary link left by an interrupted command"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Every profile with a name file or a lock, including ones whose link a crash never wrote.
    pub fn known_names(&self) -> Result<Vec<String>> {
        let mut out = std::collections::BTreeSet::new();
        for entry in fs_err::read_dir(&self.dir)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            let Some(rest) = file.strip_prefix('.') else { continue };
            // `.NAME.lock`, `.NAME.switch<pid>`, `.NAME-N-link.tmp<pid>`
            let name = rest
                .strip_suffix(".lock")
                .or_else(|| rest.rsplit_once(".switch").map(|(n, _)| n))
                .or_else(|| {
                    let (link, _) = rest.rsplit_once(".tmp")?;
                    let (name, _) = link.strip_suffix("-link")?.rsplit_once('-')?;
                    Some(name)
                });
            if let Some(name) = name
                && check_profile_name(name).is_ok()
            {
                out.insert(name.to_owned());
            }
        }
        out.extend(self.names()?);
        Ok(out.into_iter().collect())
    }

    /// Profile names, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if !self.dir.exists() {
            return Ok(out);
        }
        for entry in fs_err::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && check_profile_name(&name).is_ok() {
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
        if current.is_none() && !self.dir.exists() {
            return Ok(out);
        }
        for entry in fs_err::read_dir(&self.dir)? {
            let entry = entry?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(number) = parse_number(name, &file) else { continue };
            let link = entry.path();
            // A generation deleted between the listing and here is simply not there any more.
            let (path, meta) = match (std::fs::read_link(&link), std::fs::symlink_metadata(&link)) {
                (Ok(path), Ok(meta)) => (path, meta),
                (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
                (Err(e), _) | (_, Err(e)) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("failed to read symbolic link `{}`: {e}", link.display()),
                    )
                    .into());
                }
            };
            out.push(Generation { number, path, created: meta.mtime(), current: current == Some(number) });
        }
        // A listing is not atomic: a generation switched to while it ran may be missed. The
        // current one is read through the profile's link, so it is always there.
        if let Some(now) = self.current(name)? {
            out.retain(|g| g.number != now.number);
            for g in &mut out {
                g.current = false;
            }
            out.push(now);
        }
        out.sort_by_key(|g| g.number);
        Ok(out)
    }

    /// The current generation, read through the profile's own link (never a listing, which a
    /// deletion running beside it could change underneath).
    pub fn current(&self, name: &str) -> Result<Option<Generation>> {
        check_profile_name(name)?;
        let mut tries = 0;
        loop {
            let Some(number) = self.current_number(name)? else { return Ok(None) };
            let link = self.dir.join(link_name(name, number));
            match (std::fs::read_link(&link), std::fs::symlink_metadata(&link)) {
                (Ok(path), Ok(meta)) => {
                    return Ok(Some(Generation { number, path, created: meta.mtime(), current: true }));
                }
                // Switched away and deleted between our two reads: read the profile again.
                (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound && tries < 10 => {
                    tries += 1;
                }
                (Err(e), _) | (_, Err(e)) => {
                    let message = format!(
                        "profile `{name}` points at generation {number}, whose link `{}` cannot be read: {e}",
                        link.display()
                    );
                    return Err(std::io::Error::new(e.kind(), message).into());
                }
            }
        }
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
            if is_generation_link(&file) && !file.starts_with('.') {
                match std::fs::read_link(entry.path()) {
                    Ok(target) => out.push(target),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(out)
    }
}

fn parse_number(name: &str, file: &str) -> Option<u32> {
    file.strip_prefix(name)?.strip_prefix('-')?.strip_suffix("-link")?.parse().ok()
}
