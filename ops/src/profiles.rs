//! Whose a profile is and where it lives.
//!
//! A single-user home keeps every profile in `<home>/profiles/`. A daemon's home (a system store
//! several users share) keeps each user's own and each team's apart:
//!
//! ```text
//! <home>/profiles/
//! ├── per-user/alice/vision -> vision-3-link        alice's own; only she changes it
//! └── per-team/vision/tf115 -> tf115-2-link         the Unix group `vision`'s; any member
//!                                                   changes it, everyone may run it
//! ```
//!
//! On the command line a profile is `NAME` (your own, or the home's in single-user mode) or
//! `TEAM/NAME` (a team's, in a daemon's home).

use std::path::{Path, PathBuf};

use envctl_store::Profiles;

use crate::error::{Failure, Result, StoreContext};

/// Whose a profile is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// A single-user home's.
    Home,
    /// A user's own, in a daemon's home.
    User(String),
    /// A team's (a Unix group's), in a daemon's home.
    Team(String),
}

/// A profile: whose, and its name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProfileRef {
    /// Whose it is.
    pub owner: Owner,
    /// Its name (the package-name rules).
    pub name: String,
}

impl ProfileRef {
    /// Reads `NAME` or `TEAM/NAME`. In a daemon's home (`user` given) a bare name is that
    /// user's own; in a single-user home, the home's, and a team is refused.
    pub fn parse(spec: &str, user: Option<&str>) -> Result<ProfileRef> {
        let (owner, name) = match (spec.split_once('/'), user) {
            (Some((team, name)), Some(_)) => (Owner::Team(team.to_owned()), name),
            (Some(_), None) => {
                return Err(Failure::new(
                    format!("cannot use the profile `{spec}`"),
                    "`TEAM/NAME` names a team's profile, and this home is a single user's",
                )
                .hint("team profiles live in a store shared through envctl's daemon (docs/guides/shared-machine.md)"));
            }
            (None, Some(user)) => (Owner::User(user.to_owned()), spec),
            (None, None) => (Owner::Home, spec),
        };
        envctl_store::check_profile_name(name).context(|| format!("cannot use the profile `{spec}`"))?;
        if let Owner::Team(team) | Owner::User(team) = &owner {
            envctl_store::check_profile_name(team).context(|| format!("cannot use the profile `{spec}`"))?;
        }
        Ok(ProfileRef { owner, name: name.to_owned() })
    }

    /// The directory its links are in, under `home`.
    pub fn dir(&self, home: &Path) -> PathBuf {
        match &self.owner {
            Owner::Home => home.join("profiles"),
            Owner::User(user) => home.join("profiles/per-user").join(user),
            Owner::Team(team) => home.join("profiles/per-team").join(team),
        }
    }

    /// Its profiles directory, for reading.
    pub fn profiles(&self, home: &Path) -> Profiles {
        Profiles::in_dir(&self.dir(home))
    }
}

impl std::fmt::Display for ProfileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.owner {
            Owner::Team(team) => write!(f, "{team}/{}", self.name),
            Owner::Home | Owner::User(_) => f.write_str(&self.name),
        }
    }
}

/// Every profile directory of a daemon's home (each user's and each team's), with its owner.
pub fn all_dirs(home: &Path) -> Vec<(Owner, PathBuf)> {
    let mut out = vec![(Owner::Home, home.join("profiles"))];
    for (kind, make) in [("per-user", Owner::User as fn(String) -> Owner), ("per-team", Owner::Team)] {
        if let Ok(rd) = std::fs::read_dir(home.join("profiles").join(kind)) {
            let mut dirs: Vec<(Owner, PathBuf)> = rd
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| (make(e.file_name().to_string_lossy().into_owned()), e.path()))
                .collect();
            dirs.sort_by(|a, b| a.1.cmp(&b.1));
            out.extend(dirs);
        }
    }
    out
}

/// The profiles this user sees, each directory with its team (`None`: the user's own): in a
/// home of their own, its profiles; in a shared home, their own, then every team's (anyone may
/// run them).
pub fn visible(settings: &crate::Settings) -> Vec<(Profiles, Option<String>)> {
    match settings.daemon_user() {
        None => vec![(Profiles::at(&settings.home), None)],
        Some(me) => all_dirs(&settings.home)
            .into_iter()
            .filter_map(|(owner, dir)| match owner {
                Owner::User(u) if u == me => Some((Profiles::in_dir(&dir), None)),
                Owner::Team(t) => Some((Profiles::in_dir(&dir), Some(t))),
                _ => None,
            })
            .collect(),
    }
}

/// What `profiles` shows of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// As the command line names it (`NAME`, or `TEAM/NAME` for a team's).
    pub name: String,
    /// Its current generation's number.
    pub generation: u32,
    /// How many packages that generation holds.
    pub packages: usize,
    /// The bytes of the generation and its packages' store paths.
    pub closure_bytes: u64,
    /// The generation's store path.
    pub path: PathBuf,
}

/// Every profile the caller may see, with its current generation (profiles without one are left
/// out). Profiles often share a generation (teams applying one lock): each generation's
/// manifest is read once, the distinct ones on every core while the store's sizes are read in
/// one query.
pub fn summaries(settings: &crate::Settings) -> Result<Vec<Summary>> {
    let mut current = Vec::new();
    for (profiles, team) in visible(settings) {
        for short in profiles.names().context(|| "cannot list profiles".into())? {
            let name = match &team {
                Some(t) => format!("{t}/{short}"),
                None => short.clone(),
            };
            if let Some(generation) =
                profiles.current(&short).context(|| format!("cannot read profile `{name}`"))?
            {
                current.push((name, generation));
            }
        }
    }
    let mut generations: Vec<PathBuf> = current.iter().map(|(_, g)| g.path.clone()).collect();
    generations.sort();
    generations.dedup();
    let store = envctl_store::Store::open_existing(&settings.store_dir(), settings.store_options())
        .context(|| "cannot open the store".into())?;
    let (sizes, contents) = std::thread::scope(|s| {
        let sizes = s.spawn(|| store.as_ref().map(|s| s.sizes()).transpose());
        let contents = envctl_store::parallel::map_on_threads(
            envctl_store::parallel::cores(),
            &generations,
            || (),
            |_, _, path| crate::manifest::Manifest::load_store_paths(path).unwrap_or_default(),
            |_| false,
        );
        (sizes.join().expect("reading the sizes does not panic"), contents)
    });
    let sizes = sizes.context(|| "cannot list the store".into())?.unwrap_or_default();
    let size = |name: &str| sizes.get(name).copied().unwrap_or(0);
    let by_generation: std::collections::HashMap<&PathBuf, (usize, u64)> = generations
        .iter()
        .zip(contents)
        .map(|(path, paths)| {
            let paths = paths.unwrap_or_default();
            let own = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (path, (paths.len(), size(&own) + paths.iter().map(|p| size(p)).sum::<u64>()))
        })
        .collect();
    Ok(current
        .into_iter()
        .map(|(name, generation)| {
            let (packages, closure_bytes) = by_generation[&generation.path];
            Summary { name, generation: generation.number, packages, closure_bytes, path: generation.path }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_their_owners_and_teams_need_a_shared_home() {
        let own = ProfileRef::parse("vision", Some("alice")).unwrap();
        assert_eq!(own.owner, Owner::User("alice".into()));
        assert_eq!(own.dir(Path::new("/h")), Path::new("/h/profiles/per-user/alice"));
        let team = ProfileRef::parse("vision/tf115", Some("alice")).unwrap();
        assert_eq!(team.owner, Owner::Team("vision".into()));
        assert_eq!(team.to_string(), "vision/tf115");
        assert_eq!(team.dir(Path::new("/h")), Path::new("/h/profiles/per-team/vision"));
        assert_eq!(ProfileRef::parse("vision", None).unwrap().dir(Path::new("/h")), Path::new("/h/profiles"));
        assert!(ProfileRef::parse("vision/tf115", None).is_err());
        assert!(ProfileRef::parse("../x/y", Some("alice")).is_err());
        assert!(ProfileRef::parse("a/b/c", Some("alice")).is_err());
    }
}
