//! `lock` and `outdated` as values: a profile file resolved against the recipes and this
//! machine's facts into its lock (written beside it), and what a fresh resolution would move.
//! The command line renders what these return.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use envctl_recipes::LockFile;

use crate::error::{Failure, Result};
use crate::manifest::Change;
use crate::resolution::{Context, build_lock, load_lock, load_profile, versions_of};
use crate::settings::{Invocation, Settings};

/// What a lock re-resolves.
#[derive(Debug, Clone)]
pub enum Update {
    /// Nothing the profile file did not change.
    Nothing,
    /// Every package: the newest that fits.
    Everything,
    /// These packages (and what must move with them).
    Packages(Vec<String>),
}

/// What locking one environment of a file did.
#[derive(Debug)]
pub struct Locked {
    /// The lock file.
    pub path: PathBuf,
    /// The environment whose part of the lock this is (`None`: the default one).
    pub environment: Option<String>,
    /// The lock as it now is.
    pub lock: LockFile,
    /// Whether it was written, and what that changed.
    pub outcome: Outcome,
}

/// Whether a lock was written.
#[derive(Debug)]
pub enum Outcome {
    /// The file did not change and its lock still matches the recipes; `unmet` lists what of
    /// this machine the lock does not fit (it is kept anyway).
    UpToDate {
        /// The lock's needs this machine does not meet.
        unmet: Vec<String>,
    },
    /// A new lock was written; what moved.
    Written {
        /// The packages added, removed or changed.
        changes: Vec<Change>,
    },
}

/// The environments `lock FILE` locks, each by its settings: the one `-e` names, else the
/// default one and every named environment the file defines, each in its part of the one lock
/// file (as `pixi lock` does). A name `update` asks for that no environment has, in the file
/// or its lock, is refused before anything is written.
pub fn environments(file: &Path, update: &Update, settings: &Settings) -> Result<Vec<Settings>> {
    let default = load_profile(file, settings)?;
    if settings.invocation.environment.is_some() || default.environments.is_empty() {
        return Ok(vec![settings.clone()]);
    }
    let mut each = vec![(settings.clone(), default.clone())];
    for env in &default.environments {
        let invocation = Invocation { environment: Some(env.clone()), ..settings.invocation.clone() };
        let settings = Settings::load(&invocation)?;
        let profile = load_profile(file, &settings)?;
        each.push((settings, profile));
    }
    if let Update::Packages(names) = update {
        for name in names {
            let mut known = false;
            for (_, profile) in &each {
                let lock = load_lock(profile)?;
                known |= profile.packages.keys().any(|n| n.as_str() == name)
                    || lock.is_some_and(|l| l.get(name).is_some());
            }
            if !known {
                return Err(Failure::new(
                    format!("cannot update `{name}`"),
                    format!(
                        "no environment of `{}` has `{name}`, in the file or in its lock",
                        file.display()
                    ),
                )
                .hint("`envctl update` with no name re-resolves everything"));
            }
        }
    }
    Ok(each.into_iter().map(|(s, _)| s).collect())
}

/// Locks `file` (the environment the settings name), re-resolving what `update` says, and
/// writes the lock beside it. With `skip_unknown`, packages to update that this environment
/// lacks are left out instead of refused (another environment has them). What is worth a
/// warning (a source distribution that cannot be looked into now) goes to `warnings`, failure
/// or not.
pub fn lock(
    file: &Path,
    update: &Update,
    settings: &Settings,
    skip_unknown: bool,
    warnings: &mut Vec<String>,
) -> Result<Locked> {
    let ctx = Context::load(file, settings)?;
    let platform = ctx.platform();
    let request = ctx.profile.request_hash(&platform);
    let path = ctx.profile.lock_path();
    let environment = ctx.profile.environment.clone();
    let old = load_lock(&ctx.profile)?;
    if let (Some(old), Update::Nothing) = (&old, update)
        && old.request == request
    {
        // The profile file did not change; the recipes may have (a publisher replaced an
        // artifact under the same version). That is not re-locked silently.
        if let Err(m) = ctx.lock_mismatch(old) {
            let file = file.display();
            let f =
                Failure::new(format!("`{}` no longer matches its recipes", path.display()), m.to_string());
            return Err(match &m.changed {
                Some(name) => f.hint(format!(
                    "the recipe gives another artifact under the same version: if that is expected, `envctl lock {file} --update {name}` records it"
                )),
                None => f.hint(format!("`envctl lock {file} --update` re-resolves")),
            });
        }
        let unmet = ctx.unmet_by(old);
        return Ok(Locked { path, environment, lock: old.clone(), outcome: Outcome::UpToDate { unmet } });
    }
    let mut preferred = old.as_ref().map(versions_of).unwrap_or_default();
    match update {
        Update::Nothing => {} // a changed request keeps every version that still fits
        Update::Everything => preferred.clear(),
        Update::Packages(names) => {
            for name in names {
                let known = ctx.profile.packages.keys().any(|n| n.as_str() == name)
                    || preferred.keys().any(|n| n.as_str() == name);
                if !known && !skip_unknown {
                    let mut f = Failure::new(
                        format!("cannot update `{name}`"),
                        format!("`{name}` is neither in `{}` nor in its lock", file.display()),
                    );
                    let known = ctx.profile.packages.keys().chain(preferred.keys()).map(|n| n.as_str());
                    if let Some(n) = crate::error::nearest(name, known) {
                        f = f.hint(format!("did you mean `{n}`?"));
                    }
                    return Err(f.hint("`envctl update` with no name re-resolves everything"));
                }
            }
            preferred.retain(|n, _| !names.iter().any(|name| n.as_str() == name));
        }
    }
    let solution = ctx.solve(preferred)?;
    // Updating a package also forgets the wheel it was built into: the next apply records its
    // own build (the way to accept a build that differs from the first one).
    let mut kept = old.clone();
    if let Some(kept) = &mut kept {
        for p in &mut kept.packages {
            match update {
                Update::Nothing => {}
                Update::Everything => p.built = None,
                Update::Packages(names) if names.contains(&p.name) => p.built = None,
                Update::Packages(_) => {}
            }
        }
    }
    let settings = &settings.for_profile(&ctx.profile);
    let mut new = build_lock(&solution, request, &platform, kept.as_ref(), settings, true, warnings)?;
    // The repositories and indexes the file names travel with the lock.
    new.recipes = ctx.profile.recipes.clone();
    new.indexes = ctx.profile.indexes.clone();
    let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    new.write_for(&path, &file_name, environment.as_deref())
        .map_err(|e| Failure::new("cannot write the lock file", e))?;
    let changes = changes(old.as_ref(), &new);
    Ok(Locked { path, environment, lock: new, outcome: Outcome::Written { changes } })
}

/// What changed between two locks: added, changed, then removed packages, by name.
pub fn changes(old: Option<&LockFile>, new: &LockFile) -> Vec<Change> {
    let mut changes = Vec::new();
    let before: BTreeMap<&str, &str> = old
        .map(|o| o.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect())
        .unwrap_or_default();
    let after: BTreeMap<&str, &str> =
        new.packages.iter().map(|p| (p.name.as_str(), p.version.as_str())).collect();
    for (name, v) in &after {
        let (name, version) = (name.to_string(), v.to_string());
        match before.get(name.as_str()) {
            None => changes.push(Change::Added { name, version }),
            Some(b) if b != v => changes.push(Change::Changed { name, old: b.to_string(), new: version }),
            _ => {}
        }
    }
    for (name, v) in &before {
        if !after.contains_key(name) {
            changes.push(Change::Removed { name: name.to_string(), version: v.to_string() });
        }
    }
    changes
}

/// A locked package a fresh resolution would move, or that has a newer version in a recipe.
#[derive(Debug)]
pub struct Outdated {
    /// The package.
    pub name: String,
    /// Its version in the lock.
    pub locked: String,
    /// The version a fresh resolution picks (`None`: it would leave the lock).
    pub allowed: Option<String>,
    /// The newest version any recipe has.
    pub newest: Option<String>,
}

/// `outdated FILE`: each locked package that a fresh resolution (no version kept, as `lock
/// --update` does) would move, and the newest version any recipe has. Writes nothing.
pub fn outdated(file: &Path, settings: &Settings) -> Result<(PathBuf, Vec<Outdated>)> {
    let ctx = Context::load(file, settings)?;
    let lock_path = ctx.profile.lock_path();
    let Some(lock) = load_lock(&ctx.profile)? else {
        return Err(Failure::new(
            format!("cannot compare `{}`", file.display()),
            format!("`{}` does not exist", lock_path.display()),
        )
        .hint(format!("`envctl lock {}` writes it", file.display())));
    };
    let solution = ctx.solve(Default::default())?;
    let mut rows = Vec::new();
    for p in &lock.packages {
        let allowed =
            solution.packages.iter().find(|(n, _)| n.as_str() == p.name).map(|(_, r)| r.version.to_string());
        let newest = ctx.repo.versions(&p.name).and_then(|v| v.keys().next_back()).map(|v| v.to_string());
        if allowed.as_deref() != Some(p.version.as_str()) || newest.as_deref() != Some(p.version.as_str()) {
            rows.push(Outdated { name: p.name.clone(), locked: p.version.clone(), allowed, newest });
        }
    }
    Ok((lock_path, rows))
}
