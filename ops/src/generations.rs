//! Changing a profile's history: roll back (or switch to any generation), delete generations.
//! Each takes the profile's lock; the daemon runs the same functions for its clients.

use envctl_store::{Generation, Profiles};

use crate::error::{Failure, Result, StoreContext};
use crate::manifest::Manifest;

/// A profile's generations, or a failure naming the nearest profiles when it has none.
pub fn generations_of(profiles: &Profiles, name: &str, label: &str) -> Result<Vec<Generation>> {
    let gens = profiles.generations(name).context(|| format!("cannot read profile `{label}`"))?;
    if gens.is_empty() {
        return Err(no_profile(profiles, label, &format!("cannot use profile `{label}`")));
    }
    Ok(gens)
}

/// The failure for a profile that does not exist, with the nearest existing names.
pub fn no_profile(profiles: &Profiles, name: &str, what: &str) -> Failure {
    let names = profiles.names().unwrap_or_default();
    let short = name.rsplit('/').next().unwrap_or(name);
    let f = Failure::new(what, format!("there is no profile `{name}`"));
    match crate::error::nearest(short, names.iter().map(String::as_str)) {
        Some(n) => f.hint(format!("did you mean `{n}`? (`envctl profiles` lists them all)")),
        None => f.hint("`envctl profiles` lists the profiles; `envctl apply FILE` creates one"),
    }
}

/// Switches `name` to generation `to`, or to the one before the current one; returns the
/// generation switched to and the one it was.
pub fn rollback(profiles: &Profiles, name: &str, label: &str, to: Option<u32>) -> Result<(u32, u32)> {
    // Only a profile that exists gets a lock file.
    generations_of(profiles, name, label)?;
    let lock = profiles.lock(name).context(|| format!("cannot lock profile `{label}`"))?;
    let gens = generations_of(profiles, name, label)?;
    let current = gens.iter().find(|g| g.current).map(|g| g.number).unwrap_or(0);
    let target = match to {
        Some(n) => n,
        None => gens.iter().filter(|g| g.number < current).map(|g| g.number).max().ok_or_else(|| {
            Failure::new(format!("cannot roll back `{label}`"), format!("generation {current} is the oldest"))
                .hint(format!("`envctl generations {label}` lists them; `--to N` switches to any"))
        })?,
    };
    profiles.switch(&lock, name, target).context(|| format!("cannot switch `{label}`"))?;
    // The rollback stands while the profile's file is what built the generation left (see
    // `apply::ApplyOptions::keep_rollback`).
    let left = gens.iter().find(|g| g.number == current).and_then(|g| Manifest::load(&g.path).ok());
    if let Some(m) = left {
        profiles
            .hold(&lock, name, &format!("{current} {}\n", m.origin()))
            .context(|| format!("cannot record the rollback of `{label}`"))?;
    }
    Ok((target, current))
}

/// Deletes the profile `name` and all its generations; returns their numbers. With `dry_run`,
/// only says which.
pub fn delete_profile(profiles: &Profiles, name: &str, label: &str, dry_run: bool) -> Result<Vec<u32>> {
    generations_of(profiles, name, label)?;
    let lock = profiles.lock(name).context(|| format!("cannot lock profile `{label}`"))?;
    if dry_run {
        return Ok(generations_of(profiles, name, label)?.iter().map(|g| g.number).collect());
    }
    profiles.delete_profile(&lock, name).context(|| format!("cannot delete profile `{label}`"))
}

/// Which generations to delete.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Deletion {
    /// These numbers.
    pub numbers: Vec<u32>,
    /// Those created more than this many seconds ago.
    pub older_than_secs: Option<i64>,
    /// All but the newest this many.
    pub keep: Option<usize>,
    /// Only say which.
    pub dry_run: bool,
}

/// Deletes generations of `name` (never the current one); returns their numbers.
pub fn delete(profiles: &Profiles, name: &str, label: &str, what: &Deletion) -> Result<Vec<u32>> {
    generations_of(profiles, name, label)?;
    let lock = profiles.lock(name).context(|| format!("cannot lock profile `{label}`"))?;
    let gens = generations_of(profiles, name, label)?;
    let mut doomed: Vec<u32> = what.numbers.clone();
    if let Some(secs) = what.older_than_secs {
        doomed.extend(older_than(&gens, secs));
    }
    if let Some(keep) = what.keep {
        let mut newest: Vec<&Generation> = gens.iter().collect();
        newest.sort_by_key(|g| std::cmp::Reverse(g.number));
        doomed.extend(newest.iter().skip(keep).filter(|g| !g.current).map(|g| g.number));
    }
    doomed.sort();
    doomed.dedup();
    if !what.dry_run {
        profiles
            .delete(&lock, name, &doomed)
            .context(|| format!("cannot delete generations of `{label}`"))?;
    }
    Ok(doomed)
}

/// The generations (never the current one) created more than `secs` ago.
pub fn older_than(gens: &[Generation], secs: i64) -> Vec<u32> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    gens.iter().filter(|g| !g.current && now - g.created > secs).map(|g| g.number).collect()
}

/// An age with its unit (`30d`, `12h`, `90m`, `45s`). A bare number is refused: read as seconds it
/// once deleted a month of history meant as `30` days.
pub fn parse_age(s: &str) -> Result<i64> {
    let (num, unit) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let n: i64 = num.parse().map_err(|_| {
        Failure::new(format!("invalid age `{s}`"), "expected a number and a unit: 30d, 12h, 90m")
    })?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        "" => {
            return Err(Failure::new(format!("invalid age `{s}`"), format!("`{s}` has no unit"))
                .hint(format!("write {s}d for days, {s}h for hours, {s}m for minutes or {s}s for seconds")));
        }
        _ => return Err(Failure::new(format!("invalid age `{s}`"), "units are d, h, m and s")),
    };
    Ok(n * mult)
}
