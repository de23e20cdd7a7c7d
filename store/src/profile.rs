//! Profiles and generations.
//!
//! ```text
//! <home>/profiles/
//! ├── vision -> vision-3-link                      the current generation (relative link)
//! ├── vision-2-link -> <store>/<hash>-profile-vision
//! ├── vision-3-link -> <store>/<hash>-profile-vision
//! ├── .vision.lock                                 the per-profile lock
//! ├── .vision.last                                 the highest number ever given ("3")
//! └── .vision.held                                 a rollback that stands (see below)
//! ```
//!
//! A generation's number is never given twice, as in Nix: deleting generation 3 and applying
//! again gives 4, so "generation 3" in a log or a ticket always meant one environment.
//!
//! A generation is a store path; the numbered links are GC roots. Switching (new generation,
//! rollback, `--to N`) writes the numbered link first, then renames a temporary symlink over
//! `profiles/<name>`, so a reader sees the old generation or the new one, never neither. The
//! per-profile lock serializes creating, switching and deleting generations of one profile;
//! readers (sessions, listings) take no lock.
//!
//! A rollback the user asked for is recorded in `.NAME.held` with the caller's note of what was
//! rolled back from, until a new generation is added: a session started from the profile's file
//! leaves the profile where the user put it while the file is what built the generation left.

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

/// A profile's lock, held: creating, switching and deleting its generations take it as proof.
#[derive(Debug)]
pub struct ProfileLock {
    _lock: FileLock,
    dir: PathBuf,
    name: String,
}

/// The profiles directory.
#[derive(Debug, Clone)]
pub struct Profiles {
    dir: PathBuf,
}

/// Checks a profile name: the package-name rules, and not the shape of a generation link
/// (`NAME-N-link`), so that no profile's link can be another profile's generation.
pub fn check_profile_name(name: &str) -> Result<()> {
    envctl_core::Name::parse(name).map_err(|_| Error::Invalid {
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

/// What a dot-file of `profiles/` is: the profile it belongs to, and whether it is a temporary
/// link or record a killed command may have left (`.NAME.switch<pid>`, `.NAME-N-link.tmp<pid>`,
/// `.NAME.last.tmp<pid>`) rather than the profile's lock (`.NAME.lock`) or record (`.NAME.last`).
fn dot_file(file: &str) -> Option<(&str, bool)> {
    let rest = file.strip_prefix('.')?;
    let pid = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(name) = rest
        .strip_suffix(".lock")
        .or_else(|| rest.strip_suffix(".last"))
        .or_else(|| rest.strip_suffix(".held"))
    {
        return Some((name, false));
    }
    if let Some((name, p)) = rest
        .rsplit_once(".switch")
        .or_else(|| rest.rsplit_once(".last.tmp"))
        .or_else(|| rest.rsplit_once(".held.tmp"))
        && pid(p)
    {
        return Some((name, true));
    }
    let (link, p) = rest.rsplit_once(".tmp")?;
    let (name, _) = link.strip_suffix("-link")?.rsplit_once('-')?;
    (pid(p) && is_generation_link(link)).then_some((name, true))
}

/// The longest recorded history [`Profiles::generations`] asks for link by link.
const PROBE_AT_MOST: u32 = 1024;

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

    /// The profiles in `dir` itself (a user's or a team's directory of a daemon's home), for
    /// reading: nothing is created.
    pub fn in_dir(dir: &Path) -> Profiles {
        Profiles { dir: dir.to_path_buf() }
    }

    /// The profiles in `dir` itself, created if needed.
    pub fn open_dir(dir: &Path) -> Result<Profiles> {
        fs_err::create_dir_all(dir)?;
        Ok(Profiles { dir: dir.to_path_buf() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the per-profile lock (create, switch, delete), then sweeps the temporary links a
    /// killed holder may have left (`.NAME.switch<pid>`, `.NAME-N-link.tmp<pid>`): with the lock
    /// held, nobody else is writing them. The guard is what the changing methods ask for.
    pub fn lock(&self, name: &str) -> Result<ProfileLock> {
        check_profile_name(name)?;
        let lock = FileLock::exclusive(&self.dir.join(format!(".{name}.lock")))?;
        self.sweep_temporaries(name)?;
        Ok(ProfileLock { _lock: lock, dir: self.dir.clone(), name: name.to_owned() })
    }

    /// Takes the per-profile lock only if nobody holds it, sweeping as [`Profiles::lock`] does.
    pub fn try_lock(&self, name: &str) -> Result<Option<ProfileLock>> {
        check_profile_name(name)?;
        let Some(lock) = FileLock::try_exclusive(&self.dir.join(format!(".{name}.lock")))? else {
            return Ok(None);
        };
        self.sweep_temporaries(name)?;
        Ok(Some(ProfileLock { _lock: lock, dir: self.dir.clone(), name: name.to_owned() }))
    }

    /// Checks that `held` is this directory's lock of `name` (a guard of another profile would
    /// protect nothing).
    fn holds(&self, held: &ProfileLock, name: &str) {
        assert!(
            held.dir == self.dir && held.name == name,
            "profile `{name}` changed under the lock of `{}` in `{}`",
            held.name,
            held.dir.display()
        );
    }

    fn sweep_temporaries(&self, name: &str) -> Result<()> {
        for entry in fs_err::read_dir(&self.dir)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            if dot_file(&file) == Some((name, true)) {
                match std::fs::remove_file(self.dir.join(&file)) {
                    Ok(()) => tracing::info!(file, "removed a temporary link left by an interrupted command"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Sweeps the temporary links of every profile nobody is changing right now (see
    /// [`Profiles::lock`]): one read of the directory, and the lock of each profile that has
    /// any. GC calls it; with a thousand profiles, a read per profile was most of its time.
    pub fn sweep_all(&self) -> Result<()> {
        let mut left: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for entry in fs_err::read_dir(&self.dir)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            if let Some((name, true)) = dot_file(&file)
                && check_profile_name(name).is_ok()
            {
                left.entry(name.to_owned()).or_default().push(file);
            }
        }
        for (name, files) in left {
            let Some(_lock) = FileLock::try_exclusive(&self.dir.join(format!(".{name}.lock")))? else {
                continue;
            };
            for file in files {
                match std::fs::remove_file(self.dir.join(&file)) {
                    Ok(()) => tracing::info!(file, "removed a temporary link left by an interrupted command"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Every profile with a name link, a lock or a temporary link, including ones whose link a
    /// crash never wrote.
    pub fn known_names(&self) -> Result<Vec<String>> {
        let mut out = std::collections::BTreeSet::new();
        for entry in fs_err::read_dir(&self.dir)? {
            let file = entry?.file_name().to_string_lossy().into_owned();
            if let Some((name, _)) = dot_file(&file)
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
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // A profile is a symlink; a shared home keeps directories of profiles here too.
            if !name.starts_with('.') && check_profile_name(&name).is_ok() && entry.file_type()?.is_symlink()
            {
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
        // Read first and through the profile's own link: a listing is not atomic, and a
        // generation switched to while it ran could be missed; the current one is always there.
        let current = self.current(name)?;
        let mut out = Vec::new();
        if current.is_none() && !self.dir.exists() {
            return Ok(out);
        }
        // The numbers this profile was ever given are recorded: asking for each link costs its
        // own history, where reading the directory costs every profile's (a home of a thousand
        // profiles holds tens of thousands of links). Without a record (a profile made by an
        // older envctl), or after a very long history, the directory is read.
        let last = self.last_given(name)?;
        let numbers: Vec<u32> = if (1..=PROBE_AT_MOST).contains(&last) {
            (1..=last).collect()
        } else {
            let mut found = Vec::new();
            for entry in fs_err::read_dir(&self.dir)? {
                let file = entry?.file_name().to_string_lossy().into_owned();
                found.extend(parse_number(name, &file));
            }
            found
        };
        for number in numbers {
            if current.as_ref().is_some_and(|c| c.number == number) {
                continue;
            }
            // A generation deleted between the listing and here is simply not there any more.
            if let Some((path, created)) = read_generation(&self.dir.join(link_name(name, number)))? {
                out.push(Generation { number, path, created, current: false });
            }
        }
        out.extend(current);
        out.sort_by_key(|g| g.number);
        Ok(out)
    }

    /// The current generation, read through the profile's own link (never a listing, which a
    /// deletion running beside it could change underneath).
    pub fn current(&self, name: &str) -> Result<Option<Generation>> {
        check_profile_name(name)?;
        // Switched away and deleted between our two reads: read the profile again.
        for _ in 0..10 {
            let Some(number) = self.current_number(name)? else { return Ok(None) };
            if let Some((path, created)) = read_generation(&self.dir.join(link_name(name, number)))? {
                return Ok(Some(Generation { number, path, created, current: true }));
            }
        }
        let message = format!("profile `{name}` keeps changing while it is read");
        Err(std::io::Error::new(std::io::ErrorKind::Interrupted, message).into())
    }

    /// The highest generation number ever given to a profile (see the module docs); 0 when none
    /// was recorded (a profile made before numbers were recorded counts what it has).
    fn last_given(&self, name: &str) -> Result<u32> {
        let path = self.dir.join(format!(".{name}.last"));
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| {
                Error::Invalid {
                    what: "generation record",
                    value: path.display().to_string(),
                    rule: "it holds the highest generation number given; write the highest `NAME-N-link` number into it",
                }
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(std::io::Error::new(e.kind(), format!("cannot read `{}`: {e}", path.display())).into()),
        }
    }

    /// Adds `store_path` as a new generation and makes it current, under the profile's lock.
    /// Its number is one more than any this profile was ever given, recorded before the link is
    /// made: a crash in between skips a number, never reuses one.
    pub fn add_generation(&self, held: &ProfileLock, name: &str, store_path: &Path) -> Result<u32> {
        self.holds(held, name);
        let highest = self.generations(name)?.last().map_or(0, |g| g.number);
        let next = highest.max(self.last_given(name)?) + 1;
        let record = self.dir.join(format!(".{name}.last"));
        let tmp = self.dir.join(format!(".{name}.last.tmp{}", std::process::id()));
        fs_err::write(&tmp, format!("{next}\n"))?;
        fs_err::rename(&tmp, &record)?;
        let link = self.dir.join(link_name(name, next));
        let tmp = self.dir.join(format!(".{}.tmp{}", link_name(name, next), std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        fs_err::os::unix::fs::symlink(store_path, &tmp)?;
        fs_err::rename(&tmp, &link)?;
        self.switch(held, name, next)?;
        // A new generation is the user's latest word: a rollback no longer stands.
        match std::fs::remove_file(self.held_path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        Ok(next)
    }

    /// Deletes the profile `name`: its current link first (so no one starts a session in it
    /// after), then every generation's link and its rollback record, under the profile's lock.
    /// Its number record stays, so a new profile of the same name does not give a number twice.
    /// Returns the generations deleted. Their store paths go at the next GC, unless a session
    /// holds them.
    pub fn delete_profile(&self, held: &ProfileLock, name: &str) -> Result<Vec<u32>> {
        self.holds(held, name);
        let numbers: Vec<u32> = self.generations(name)?.iter().map(|g| g.number).collect();
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        gone(std::fs::remove_file(self.dir.join(name)))?;
        for &n in &numbers {
            gone(std::fs::remove_file(self.dir.join(link_name(name, n))))?;
        }
        gone(std::fs::remove_file(self.held_path(name)))?;
        Ok(numbers)
    }

    fn held_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.held"))
    }

    /// Records that `name` was rolled back on purpose, with `note` (the caller's record of the
    /// generation left), until a new generation is added.
    pub fn hold(&self, held: &ProfileLock, name: &str, note: &str) -> Result<()> {
        self.holds(held, name);
        let tmp = self.dir.join(format!(".{name}.held.tmp{}", std::process::id()));
        fs_err::write(&tmp, note)?;
        fs_err::rename(&tmp, self.held_path(name))?;
        Ok(())
    }

    /// The note of a rollback of `name` that stands, if any.
    pub fn held(&self, name: &str) -> Result<Option<String>> {
        match std::fs::read_to_string(self.held_path(name)) {
            Ok(note) => Ok(Some(note)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes generation `number` current: one rename, under the profile's lock.
    pub fn switch(&self, held: &ProfileLock, name: &str, number: u32) -> Result<()> {
        self.holds(held, name);
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

    /// Deletes generations (their links); never the current one; under the profile's lock.
    pub fn delete(&self, held: &ProfileLock, name: &str, numbers: &[u32]) -> Result<()> {
        self.holds(held, name);
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

/// A generation link's target and creation time (the link's mtime); `None` when it is gone.
fn read_generation(link: &Path) -> Result<Option<(PathBuf, i64)>> {
    let read = std::fs::symlink_metadata(link).and_then(|meta| Ok((std::fs::read_link(link)?, meta.mtime())));
    match read {
        Ok(found) => Ok(Some(found)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            let message = format!("failed to read symbolic link `{}`: {e}", link.display());
            Err(std::io::Error::new(e.kind(), message).into())
        }
    }
}

fn parse_number(name: &str, file: &str) -> Option<u32> {
    file.strip_prefix(name)?.strip_prefix('-')?.strip_suffix("-link")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles() -> (envctl_testkit::TempDir, Profiles) {
        let home = envctl_testkit::tempdir();
        let profiles = Profiles::open(home.path()).unwrap();
        (home, profiles)
    }

    #[test]
    fn a_deleted_generations_number_is_never_given_again() {
        let (_home, p) = profiles();
        let lock = p.lock("vision").unwrap();
        for n in 1..=3 {
            assert_eq!(p.add_generation(&lock, "vision", Path::new(&format!("/store/g{n}"))).unwrap(), n);
        }
        p.switch(&lock, "vision", 1).unwrap();
        p.delete(&lock, "vision", &[2, 3]).unwrap();
        assert_eq!(p.generations("vision").unwrap().len(), 1);
        let next = p.add_generation(&lock, "vision", Path::new("/store/g4")).unwrap();
        assert_eq!(next, 4, "generation numbers 2 and 3 were given before");
        let numbers: Vec<u32> = p.generations("vision").unwrap().iter().map(|g| g.number).collect();
        assert_eq!(numbers, [1, 4]);
        assert_eq!(p.current("vision").unwrap().unwrap().path, Path::new("/store/g4"));
        // The record is the profile's, not a profile of its own, and not a temporary to sweep.
        assert_eq!(p.known_names().unwrap(), ["vision"]);
        assert_eq!(p.names().unwrap(), ["vision"]);
    }

    #[test]
    fn sweep_all_removes_the_temporaries_of_profiles_nobody_is_changing() {
        let (_home, p) = profiles();
        for name in ["a", "b"] {
            let lock = p.lock(name).unwrap();
            p.add_generation(&lock, name, Path::new("/store/x")).unwrap();
        }
        // `b` is being changed (taking its lock sweeps its own leftovers: these come after).
        let busy = p.lock("b").unwrap();
        let left = [".a.switch999999", ".a-1-link.tmp999999", ".b.held.tmp999999", ".b.switch999998"];
        for file in left {
            std::fs::write(p.dir().join(file), "").unwrap();
        }
        p.sweep_all().unwrap();
        assert!(!p.dir().join(".a.switch999999").exists() && !p.dir().join(".a-1-link.tmp999999").exists());
        assert!(p.dir().join(".b.switch999998").exists(), "swept under another command's lock");
        drop(busy);
        p.sweep_all().unwrap();
        assert!(!p.dir().join(".b.switch999998").exists() && !p.dir().join(".b.held.tmp999999").exists());
        assert_eq!(p.names().unwrap(), ["a", "b"]);
        assert!(
            std::fs::symlink_metadata(p.dir().join("a-1-link")).is_ok() && p.dir().join(".a.last").exists()
        );
    }

    #[test]
    fn a_profile_without_a_record_counts_from_its_links_and_a_killed_write_is_swept() {
        let (_home, p) = profiles();
        let lock = p.lock("nlp").unwrap();
        p.add_generation(&lock, "nlp", Path::new("/store/a")).unwrap();
        p.add_generation(&lock, "nlp", Path::new("/store/b")).unwrap();
        // As an older envctl left it: links only.
        std::fs::remove_file(p.dir().join(".nlp.last")).unwrap();
        std::fs::write(p.dir().join(".nlp.last.tmp999999"), "7\n").unwrap();
        assert_eq!(p.add_generation(&lock, "nlp", Path::new("/store/c")).unwrap(), 3);
        drop(lock);
        let lock = p.lock("nlp").unwrap();
        assert!(!p.dir().join(".nlp.last.tmp999999").exists(), "the temporary record was not swept");
        std::fs::write(p.dir().join(".nlp.last"), "not a number").unwrap();
        let e = p.add_generation(&lock, "nlp", Path::new("/store/d")).unwrap_err().to_string();
        assert!(e.contains(".nlp.last"), "{e}");
    }
}
