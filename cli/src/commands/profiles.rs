//! `envctl profiles`, `generations`, `diff`, `rollback`.

use envctl_store::{Generation, Profiles, Store};

use super::Status;
use crate::args::{Cli, DiffArgs, GenerationsArgs, JsonArgs, ListArgs, RollbackArgs};
use crate::error::{Failure, Result, StoreContext};
use crate::manifest::{self, Manifest};
use crate::printer;
use crate::settings::Settings;

/// The profiles, for reading: a listing creates nothing (no home, no directory, no lock file).
fn open(settings: &Settings) -> Result<Profiles> {
    Ok(Profiles::at(&settings.home))
}

fn generations_of(profiles: &Profiles, name: &str) -> Result<Vec<Generation>> {
    let gens = profiles.generations(name).context(|| format!("cannot read profile `{name}`"))?;
    if gens.is_empty() {
        return Err(no_profile(profiles, name, &format!("cannot use profile `{name}`")));
    }
    Ok(gens)
}

/// The failure for a profile that does not exist, with the nearest existing names.
pub fn no_profile(profiles: &Profiles, name: &str, what: &str) -> Failure {
    let names = profiles.names().unwrap_or_default();
    let f = Failure::new(what, format!("there is no profile `{name}`"));
    match crate::error::nearest(name, names.iter().map(String::as_str)) {
        Some(n) => f.hint(format!("did you mean `{n}`? (`envctl profiles` lists them all)")),
        None => f.hint("`envctl profiles` lists the profiles; `envctl apply FILE` creates one"),
    }
}

pub fn list(args: &JsonArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let profiles = open(settings)?;
    let store_dir = settings.store_dir();
    let store = if store_dir.join(".envctl/db.sqlite").exists() {
        Some(Store::open(&store_dir, settings.store_options()).context(|| "cannot open the store".into())?)
    } else {
        None
    };
    let sizes: std::collections::BTreeMap<String, u64> = store
        .as_ref()
        .map(|s| s.list().map(|l| l.into_iter().map(|r| (r.name, r.size)).collect()))
        .transpose()
        .context(|| "cannot list the store".into())?
        .unwrap_or_default();
    let mut rows = Vec::new();
    for name in profiles.names().context(|| "cannot list profiles".into())? {
        let Some(current) = profiles.current(&name).context(|| format!("cannot read profile `{name}`"))?
        else {
            continue;
        };
        let m = Manifest::load(&current.path).ok();
        let packages = m.as_ref().map_or(0, |m| m.packages.len());
        let gen_name = current.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let closure: u64 = sizes.get(&gen_name).copied().unwrap_or(0)
            + m.as_ref().map_or(0, |m| {
                m.packages.iter().map(|p| sizes.get(&p.store_path).copied().unwrap_or(0)).sum()
            });
        rows.push(serde_json::json!({
            "name": name, "generation": current.number, "packages": packages,
            "closure_bytes": closure, "path": current.path,
        }));
    }
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
                r["generation"],
                r["packages"],
                printer::bytes(r["closure_bytes"].as_u64().unwrap_or(0))
            ));
        }
    }
    Ok(Status::Success)
}

/// `envctl list PROFILE`: the current generation's packages, with versions and store sizes.
pub fn packages(args: &ListArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let profiles = open(settings)?;
    let name = &match &args.profile {
        Some(name) => name.clone(),
        None => crate::resolution::load_profile(&super::edit::profile_file(None)?)?.name,
    };
    let current = profiles
        .current(name)
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
        for line in tree(&m) {
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
/// depends on beneath it; a package shown once already is marked `(*)` instead of repeated.
fn tree(m: &Manifest) -> Vec<String> {
    let by_name: std::collections::BTreeMap<&str, &crate::manifest::ManifestPackage> =
        m.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    fn walk<'m>(
        name: &'m str,
        prefix: &str,
        branch: &str,
        by_name: &std::collections::BTreeMap<&str, &'m crate::manifest::ManifestPackage>,
        seen: &mut std::collections::BTreeSet<&'m str>,
        out: &mut Vec<String>,
    ) {
        let Some(p) = by_name.get(name) else { return };
        let again = !seen.insert(name);
        let mark = if again && !p.dependencies.is_empty() { " (*)" } else { "" };
        out.push(format!("{prefix}{branch}{} {}{mark}", p.name, p.version));
        if again {
            return;
        }
        let child_prefix = match branch {
            "" => String::new(),
            "└── " => format!("{prefix}    "),
            _ => format!("{prefix}│   "),
        };
        for (i, d) in p.dependencies.iter().enumerate() {
            let last = i + 1 == p.dependencies.len();
            walk(d, &child_prefix, if last { "└── " } else { "├── " }, by_name, seen, out);
        }
    }
    let mut requested = m.requested.clone();
    requested.sort();
    for r in &requested {
        walk(r, "", "", &by_name, &mut seen, &mut out);
    }
    out
}

pub fn generations(args: &GenerationsArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let profiles = open(settings)?;
    let gens = generations_of(&profiles, &args.profile)?;
    let deleting = !args.delete.is_empty() || args.older_than.is_some() || args.keep.is_some();
    if deleting {
        let _lock =
            profiles.lock(&args.profile).context(|| format!("cannot lock profile `{}`", args.profile))?;
        let gens = generations_of(&profiles, &args.profile)?;
        let mut doomed: Vec<u32> = args.delete.clone();
        if let Some(age) = &args.older_than {
            doomed.extend(older_than(&gens, parse_age(age)?));
        }
        if let Some(keep) = args.keep {
            let mut newest: Vec<&Generation> = gens.iter().collect();
            newest.sort_by_key(|g| std::cmp::Reverse(g.number));
            doomed.extend(newest.iter().skip(keep).filter(|g| !g.current).map(|g| g.number));
        }
        doomed.sort();
        doomed.dedup();
        if args.dry_run {
            printer::status(&format!(
                "would delete {} of `{}`{} (dry run: nothing deleted)",
                printer::count(doomed.len(), "generation"),
                args.profile,
                numbers(&doomed)
            ));
            return Ok(Status::Success);
        }
        profiles
            .delete(&args.profile, &doomed)
            .context(|| format!("cannot delete generations of `{}`", args.profile))?;
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

pub fn diff(args: &DiffArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let profiles = open(settings)?;
    let gens = generations_of(&profiles, &args.profile)?;
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

pub fn rollback(args: &RollbackArgs, settings: &Settings, _cli: &Cli) -> Result<Status> {
    let profiles = open(settings)?;
    // Only a profile that exists gets a lock file.
    generations_of(&profiles, &args.profile)?;
    let _lock = profiles.lock(&args.profile).context(|| format!("cannot lock profile `{}`", args.profile))?;
    let gens = generations_of(&profiles, &args.profile)?;
    let current = gens.iter().find(|g| g.current).map(|g| g.number).unwrap_or(0);
    let target = match args.to {
        Some(n) => n,
        None => gens.iter().filter(|g| g.number < current).map(|g| g.number).max().ok_or_else(|| {
            Failure::new(
                format!("cannot roll back `{}`", args.profile),
                format!("generation {current} is the oldest"),
            )
            .hint(format!("`envctl generations {}` lists them; `--to N` switches to any", args.profile))
        })?,
    };
    profiles.switch(&args.profile, target).context(|| format!("cannot switch `{}`", args.profile))?;
    printer::status(&format!("`{}` is now generation {target} (was {current})", args.profile));
    Ok(Status::Success)
}
