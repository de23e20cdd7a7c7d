//! `envctl doctor`: this machine's facts, where each came from, and whether a profile file's lock
//! (or, with no file, every profile's current generation) fits them.

use envctl_recipes::{SystemFacts, SystemOverrides, Version};
use envctl_store::Profiles;

use super::Status;
use crate::args::DoctorArgs;
use crate::error::{Failure, Result, StoreContext};
use crate::manifest::Manifest;
use crate::printer;
use crate::resolution::unmet_needs;
use crate::settings::Settings;

pub fn run(args: &DoctorArgs, settings: &Settings) -> Result<Status> {
    let profile = args.file.as_deref().map(|f| crate::resolution::load_profile(f, settings)).transpose()?;
    let facts = crate::system::facts(profile.as_ref().map(|p| &p.system), settings.system())?;
    let mut problems = Vec::new();
    let mut assumptions = std::collections::BTreeMap::new();
    if let Some(profile) = &profile {
        let lock = crate::resolution::load_lock(profile)?;
        let Some(lock) = lock else {
            return Err(Failure::new(
                format!("cannot check `{}`", profile.path.display()),
                format!("it has no lock file (`{}`)", profile.lock_path().display()),
            )
            .hint(format!("run `envctl lock {}` first", profile.path.display())));
        };
        let repo = settings.repository()?;
        let packages = lock.packages.iter().map(|p| (p.name.as_str(), p.version.as_str()));
        let (found, missing) = unmet_needs(packages, &repo, &facts, "");
        problems.extend(found);
        problems.extend(missing.into_iter().map(|p| format!("{p}: no recipe in the repositories in force")));
    } else if settings.home.join("profiles").is_dir() {
        // A profile file's `[system]` is part of what its generations were built for: each
        // profile is judged with it, as `envctl doctor FILE` judges the file.
        // No file: every profile's current generation, as built.
        let profiles = Profiles::at(&settings.home);
        let repo = settings.repository()?;
        for name in profiles.names().context(|| "cannot list the profiles".into())? {
            let Some(current) =
                profiles.current(&name).context(|| format!("cannot read profile `{name}`"))?
            else {
                continue;
            };
            let Ok(manifest) = Manifest::load(&current.path) else { continue };
            let packages = manifest.packages.iter().map(|p| (p.name.as_str(), p.version.as_str()));
            let prefix = format!("profile `{name}` (generation {}): ", current.number);
            let assumed = match manifest.system.as_deref().map(SystemOverrides::from_canonical) {
                Some(Ok(o)) if !o.is_empty() => Some(o),
                Some(Err(e)) => {
                    problems.push(format!("{prefix}its record of the profile's [system] is unreadable: {e}"));
                    None
                }
                _ => None,
            };
            let own_facts = match &assumed {
                Some(o) => {
                    let own = crate::system::facts(Some(o), settings.system())?;
                    if !args.json {
                        printer::info(&format!(
                            "note: {prefix}its profile file's [system] sets {}; judged with those facts",
                            describe_effective(o, &own)
                        ));
                    }
                    assumptions.insert(name.clone(), o.describe());
                    own
                }
                None => facts.clone(),
            };
            let (found, missing) = unmet_needs(packages, &repo, &own_facts, &prefix);
            problems.extend(found);
            if !missing.is_empty() {
                printer::info(&format!(
                    "note: {prefix}not checked, no recipe in the repositories in force: {}",
                    missing.join(", ")
                ));
            }
        }
    }
    if args.json {
        printer::json(&serde_json::json!({
            "driver": facts.driver.as_ref().map(|v| v.to_string()),
            "cuda": facts.cuda.as_ref().map(|v| v.to_string()),
            "sm": facts.sm.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "glibc": facts.glibc.as_ref().map(|v| v.to_string()),
            "arch": facts.arch,
            "platform": facts.platform(),
            "origin": facts.origin,
            "problems": problems,
            "assumed": assumptions,
        }));
    } else {
        print_facts(&facts);
        // What each GPU runs of the bundled stacks (a machine without one runs their CPU builds).
        let mut ccs: Vec<&Version> = facts.sm.iter().collect();
        ccs.dedup();
        if !ccs.is_empty() {
            let repo = settings.repository()?;
            for v in ccs {
                let c = v.components();
                let cc = (c.first().copied().unwrap_or(0) as i32, c.get(1).copied().unwrap_or(0) as i32);
                printer::data(&format!("GPUs of compute {v}:"));
                for line in super::gpus::fit_lines(&envctl_ops::gpus::fits::fits(&repo, &facts, Some(cc))) {
                    printer::data(&format!("    {line}"));
                }
            }
        }
        if let Some(p) = &profile
            && problems.is_empty()
        {
            printer::info(&format!("`{}`'s lock fits this machine", p.path.display()));
        }
        for problem in &problems {
            printer::info(&format!("problem: {problem}"));
        }
    }
    Ok(if problems.is_empty() { Status::Success } else { Status::Failure })
}

fn print_facts(f: &SystemFacts) {
    let show = |v: Option<&Version>| v.map(|v| v.to_string()).unwrap_or_else(|| "none".into());
    let origin = |k: &str| f.origin.get(k).map(|o| format!("    ({o})")).unwrap_or_default();
    printer::data(&format!("driver:    {}{}", show(f.driver.as_ref()), origin("driver")));
    printer::data(&format!("cuda:      {}{}", show(f.cuda.as_ref()), origin("cuda")));
    let sm = if f.sm.is_empty() {
        "none (no GPU found)".to_owned()
    } else {
        f.sm.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
    };
    printer::data(&format!("sm:        {sm}{}", origin("sm")));
    printer::data(&format!("glibc:     {}{}", show(f.glibc.as_ref()), origin("glibc")));
    printer::data(&format!("arch:      {}{}", f.arch.as_deref().unwrap_or("unknown"), origin("arch")));
    printer::data(&format!("platform:  {}", f.platform()));
}

/// The facts `o` sets, each with the value that holds once later overrides (ENVCTL_SYSTEM_*,
/// --system) are applied, so the note never claims a value that is not the one used.
fn describe_effective(o: &SystemOverrides, facts: &SystemFacts) -> String {
    let mut parts = Vec::new();
    let origin = |k: &str| facts.origin.get(k).map(String::as_str).unwrap_or("");
    let later = |k: &str| {
        let o = origin(k);
        if o == crate::system::PROFILE_ORIGIN { String::new() } else { format!(" (overridden by {o})") }
    };
    if o.driver.is_some() {
        let v = facts.driver.as_ref().map_or("none".to_owned(), |v| v.to_string());
        parts.push(format!("driver {v}{}", later("driver")));
    }
    if o.cuda.is_some() {
        let v = facts.cuda.as_ref().map_or("none".to_owned(), |v| v.to_string());
        parts.push(format!("cuda {v}{}", later("cuda")));
    }
    if o.sm.is_some() {
        let v: Vec<String> = facts.sm.iter().map(|v| v.to_string()).collect();
        parts.push(format!("sm {}{}", v.join(" "), later("sm")));
    }
    if o.glibc.is_some() {
        let v = facts.glibc.as_ref().map_or("none".to_owned(), |v| v.to_string());
        parts.push(format!("glibc {v}{}", later("glibc")));
    }
    if o.arch.is_some() {
        parts.push(format!("arch {}{}", facts.arch.as_deref().unwrap_or("unknown"), later("arch")));
    }
    parts.join(", ")
}
