//! `envctl profiles`, `generations`, `diff`, `rollback`.

use std::collections::{BTreeMap, BTreeSet};

use envctl_ops::profiles::ProfileRef;

use envctl_store::{Generation, Profiles, Store};

use super::Status;
use crate::args::{Cli, DiffArgs, GenerationsArgs, JsonArgs, ListArgs, RollbackArgs};
use crate::error::{Failure, Result, StoreContext};
use crate::manifest::{self, Manifest};
use crate::printer;
use crate::settings::Settings;

/// A profile a command names, and its profiles directory for reading (nothing is created).
fn locate(settings: &Settings, spec: &str) -> Result<(ProfileRef, Profiles)> {
    settings.profile(spec)
}

fn generations_of(profiles: &Profiles, profile: &ProfileRef) -> Result<Vec<Generation>> {
    envctl_ops::generations::generations_of(profiles, &profile.name, &profile.to_string())
}

pub use envctl_ops::generations::no_profile;

pub fn list(args: &JsonArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let rows: Vec<serde_json::Value> = envctl_ops::profiles::summaries(settings)?
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name, "generation": s.generation, "packages": s.packages,
                "closure_bytes": s.closure_bytes, "path": s.path,
            })
        })
        .collect();
    if args.json {
        printer::json(&rows);
    } else if rows.is_empty() {
        printer::status(&format!(
            "no profiles in `{}` yet: `envctl apply FILE` creates one",
            settings.home.display()
        ));
    } else {
        let width = rows.iter().map(|r| r["name"].as_str().unwrap_or("").len()).max().unwrap_or(0).max(7);
        printer::data(&format!(
            "{:<width$}  {:>10}  {:>8}  {:>10}",
            "PROFILE", "GENERATION", "PACKAGES", "SIZE"
        ));
        for r in &rows {
            printer::data(&format!(
                "{:<width$}  {:>10}  {:>8}  {:>10}",
                r["name"].as_str().unwrap_or(""),
                // Numbers, not JSON values: a value's Display ignores the width.
                r["generation"].as_u64().unwrap_or(0),
                r["packages"].as_u64().unwrap_or(0),
                printer::bytes(r["closure_bytes"].as_u64().unwrap_or(0))
            ));
        }
    }
    Ok(Status::Success)
}

/// `envctl list PROFILE`: the current generation's packages, with versions and store sizes.
pub fn packages(args: &ListArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let spec = match &args.profile {
        Some(name) => name.clone(),
        None => crate::resolution::load_profile(&super::edit::profile_file(None)?, settings)?.name,
    };
    let (profile, profiles) = locate(settings, &spec)?;
    let name = &profile.to_string();
    let current = profiles
        .current(&profile.name)
        .context(|| format!("cannot read profile `{name}`"))?
        .ok_or_else(|| no_profile(&profiles, name, &format!("cannot list profile `{name}`")))?;
    let m = Manifest::load(&current.path)
        .map_err(|e| Failure::new(format!("cannot list profile `{name}`"), e))?;
    let store_dir = settings.store_dir();
    let store =
        Store::open(&store_dir, settings.store_options()).context(|| "cannot open the store".into())?;
    let mut rows = Vec::new();
    for p in &m.packages {
        let size = envctl_store::StorePathName::parse(&p.store_path)
            .ok()
            .and_then(|n| store.info(&n).ok())
            .map(|i| i.record.size);
        rows.push(serde_json::json!({
            "name": p.name, "version": p.version, "bytes": size, "store_path": p.store_path,
        }));
    }
    if args.json {
        printer::json(
            &serde_json::json!({ "profile": name, "generation": current.number, "packages": rows }),
        );
        return Ok(Status::Success);
    }
    if args.tree {
        if m.requested.is_empty() {
            return Err(Failure::new(
                format!("cannot show profile `{name}` as a tree"),
                format!("its generation {} was built before envctl recorded dependencies", current.number),
            )
            .hint("apply its profile file again"));
        }
        for line in tree(&m, args.depth, args.invert.as_deref())? {
            printer::data(&line);
        }
        return Ok(Status::Success);
    }
    let width = m.packages.iter().map(|p| p.name.len()).max().unwrap_or(0).max(7);
    let vwidth = m.packages.iter().map(|p| p.version.len()).max().unwrap_or(0).max(7);
    printer::data(&format!("{:<width$}  {:<vwidth$}  {:>10}", "PACKAGE", "VERSION", "SIZE"));
    let mut total = 0;
    for r in &rows {
        let bytes = r["bytes"].as_u64();
        total += bytes.unwrap_or(0);
        printer::data(&format!(
            "{:<width$}  {:<vwidth$}  {:>10}",
            r["name"].as_str().unwrap_or(""),
            r["version"].as_str().unwrap_or(""),
            bytes.map_or_else(|| "?".to_owned(), printer::bytes)
        ));
    }
    printer::status(&format!(
        "`{name}` generation {}: {}, {}",
        current.number,
        printer::count(rows.len(), "package"),
        printer::bytes(total)
    ));
    Ok(Status::Success)
}

/// The generation's packages as `cargo tree` draws them: each requested package, then what it
/// depends on beneath it (or, `invert`ed, the package then what depends on it); a package shown
/// once already is marked `(*)` instead of repeated; at most `depth` levels below a root.
fn tree(m: &Manifest, depth: Option<usize>, invert: Option<&str>) -> Result<Vec<String>> {
    let by_name: BTreeMap<&str, &crate::manifest::ManifestPackage> =
        m.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in &m.packages {
        for d in &p.dependencies {
            match invert {
                Some(_) => edges.entry(d.as_str()).or_default().push(p.name.as_str()),
                None => edges.entry(p.name.as_str()).or_default().push(d.as_str()),
            }
        }
    }
    let roots: Vec<&str> = match invert {
        Some(name) => {
            let found = m.packages.iter().find(|p| {
                envctl_recipes::PackageName::parse(&p.name).ok()
                    == envctl_recipes::PackageName::parse(name).ok()
            });
            let Some(p) = found else {
                let names: Vec<&str> = m.packages.iter().map(|p| p.name.as_str()).collect();
                let near = envctl_recipes::nearest(name, names.iter().copied())
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                return Err(Failure::new(
                    format!("cannot invert the tree on `{name}`"),
                    format!("the profile has no package `{name}`{near}"),
                ));
            };
            vec![p.name.as_str()]
        }
        None => {
            let mut r: Vec<&str> = m.requested.iter().map(String::as_str).collect();
            r.sort();
            r
        }
    };
    struct Walk<'m> {
        by_name: BTreeMap<&'m str, &'m crate::manifest::ManifestPackage>,
        edges: BTreeMap<&'m str, Vec<&'m str>>,
        depth: Option<usize>,
        seen: BTreeSet<&'m str>,
        out: Vec<String>,
    }
    impl<'m> Walk<'m> {
        fn walk(&mut self, name: &'m str, prefix: &str, branch: &str, level: usize) {
            let Some(p) = self.by_name.get(name).copied() else { return };
            let children = self.edges.get(name).cloned().unwrap_or_default();
            let again = !self.seen.insert(name);
            let mark = if again && !children.is_empty() { " (*)" } else { "" };
            self.out.push(format!("{prefix}{branch}{} {}{mark}", p.name, p.version));
            if again || self.depth.is_some_and(|d| level >= d) {
                return;
            }
            let child_prefix = match branch {
                "" => String::new(),
                "└── " => format!("{prefix}    "),
                _ => format!("{prefix}│   "),
            };
            for (i, d) in children.iter().enumerate() {
                let last = i + 1 == children.len();
                self.walk(d, &child_prefix, if last { "└── " } else { "├── " }, level + 1);
            }
        }
    }
    let mut w = Walk { by_name, edges, depth, seen: BTreeSet::new(), out: Vec::new() };
    for r in roots {
        w.walk(r, "", "", 0);
    }
    Ok(w.out)
}

pub fn generations(args: &GenerationsArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let (profile, profiles) = locate(settings, &args.profile)?;
    let gens = generations_of(&profiles, &profile)?;
    let deleting = !args.delete.is_empty() || args.older_than.is_some() || args.keep.is_some();
    if deleting {
        let what = envctl_ops::generations::Deletion {
            numbers: args.delete.clone(),
            older_than_secs: args.older_than.as_deref().map(parse_age).transpose()?,
            keep: args.keep,
            dry_run: args.dry_run,
        };
        let doomed: Vec<u32> = match settings.daemon() {
            Some(daemon) => {
                let request = envctl_ops::daemon::protocol::Request::DeleteGenerations {
                    profile: profile.clone(),
                    what,
                };
                let (value, _) =
                    envctl_ops::daemon::client::request(settings, &daemon, request).map_err(|(f, _)| f)?;
                serde_json::from_value(value["deleted"].clone()).unwrap_or_default()
            }
            None => envctl_ops::generations::delete(&profiles, &profile.name, &profile.to_string(), &what)?,
        };
        if args.dry_run {
            printer::status(&format!(
                "would delete {} of `{}`{} (dry run: nothing deleted)",
                printer::count(doomed.len(), "generation"),
                args.profile,
                numbers(&doomed)
            ));
            return Ok(Status::Success);
        }
        printer::status(&format!(
            "deleted {} of `{}`{}; `envctl gc` frees what only they used",
            printer::count(doomed.len(), "generation"),
            args.profile,
            numbers(&doomed)
        ));
        return Ok(Status::Success);
    }
    let mut rows = Vec::new();
    let mut previous: Option<Manifest> = None;
    for g in &gens {
        let m = Manifest::load(&g.path).ok();
        let changes = m.as_ref().map(|m| manifest::diff(previous.as_ref(), m)).unwrap_or_default();
        rows.push((g, changes));
        previous = m;
    }
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(g, c)| serde_json::json!({ "number": g.number, "created": printer::timestamp(g.created), "current": g.current, "path": g.path, "changes": c }))
            .collect();
        printer::json(&v);
    } else {
        for (g, changes) in rows {
            let what = changes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
            printer::data(&format!(
                "{:>4}  {}  {}{}",
                g.number,
                printer::timestamp(g.created),
                if g.current { "(current)  " } else { "" },
                what
            ));
        }
    }
    Ok(Status::Success)
}

/// ` (1, 2)`, or nothing for none.
fn numbers(doomed: &[u32]) -> String {
    if doomed.is_empty() {
        String::new()
    } else {
        format!(" ({})", doomed.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))
    }
}

pub use envctl_ops::generations::{older_than, parse_age};

pub fn diff(args: &DiffArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let (profile, profiles) = locate(settings, &args.profile)?;
    let gens = generations_of(&profiles, &profile)?;
    let find = |n: u32| {
        gens.iter().find(|g| g.number == n).ok_or_else(|| {
            Failure::new(
                format!("cannot diff `{}`", args.profile),
                format!("profile `{}` has no generation {n}", args.profile),
            )
        })
    };
    let current = gens.iter().find(|g| g.current).unwrap_or(&gens[gens.len() - 1]);
    let (a, b) = match (args.a, args.b) {
        (Some(a), Some(b)) => (Some(find(a)?), find(b)?),
        (Some(a), None) => (Some(find(a)?), current),
        _ => (gens.iter().rfind(|g| g.number < current.number), current),
    };
    let load =
        |g: &Generation| Manifest::load(&g.path).map_err(|e| Failure::new("cannot read a generation", e));
    let old = a.map(load).transpose()?;
    let new = load(b)?;
    let changes = manifest::diff(old.as_ref(), &new);
    if args.json {
        printer::json(
            &serde_json::json!({ "from": a.map(|g| g.number), "to": b.number, "changes": changes }),
        );
    } else {
        printer::info(&format!(
            "{} generation {} -> {}",
            args.profile,
            a.map_or("(none)".into(), |g| g.number.to_string()),
            b.number
        ));
        for c in changes {
            printer::change(&c.to_string());
        }
    }
    Ok(Status::Success)
}

/// `envctl delete PROFILE`
pub fn delete(args: &crate::args::DeleteArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let (profile, profiles) = locate(settings, &args.profile)?;
    let deleted: Vec<u32> = match settings.daemon() {
        Some(daemon) => {
            let request = envctl_ops::daemon::protocol::Request::DeleteProfile {
                profile: profile.clone(),
                dry_run: args.dry_run,
            };
            let (value, _) =
                envctl_ops::daemon::client::request(settings, &daemon, request).map_err(|(f, _)| f)?;
            serde_json::from_value(value["deleted"].clone()).unwrap_or_default()
        }
        None => envctl_ops::generations::delete_profile(
            &profiles,
            &profile.name,
            &profile.to_string(),
            args.dry_run,
        )?,
    };
    let what = format!(
        "profile `{}` and its {}{}",
        args.profile,
        printer::count(deleted.len(), "generation"),
        numbers(&deleted)
    );
    if args.dry_run {
        printer::status(&format!("would delete {what} (dry run: nothing deleted)"));
    } else {
        printer::status(&format!("deleted {what}; `envctl gc` frees the store paths no other profile uses"));
    }
    Ok(Status::Success)
}

pub fn rollback(args: &RollbackArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let (profile, profiles) = locate(settings, &args.profile)?;
    let (target, was) = match settings.daemon() {
        Some(daemon) => {
            let request =
                envctl_ops::daemon::protocol::Request::Rollback { profile: profile.clone(), to: args.to };
            let (value, _) =
                envctl_ops::daemon::client::request(settings, &daemon, request).map_err(|(f, _)| f)?;
            (value["generation"].as_u64().unwrap_or(0) as u32, value["was"].as_u64().unwrap_or(0) as u32)
        }
        None => envctl_ops::generations::rollback(&profiles, &profile.name, &profile.to_string(), args.to)?,
    };
    printer::status(&format!("`{}` is now generation {target} (was {was})", args.profile));
    Ok(Status::Success)
}
