//! `envctl doctor`: this machine's facts, where each came from, and whether a profile file's lock
//! (or, with no file, every profile's current generation) fits them.

use envctl_recipes::{LockFile, SystemFacts, Version};
use envctl_store::Profiles;

use super::Status;
use crate::args::{Cli, DoctorArgs};
use crate::error::{Failure, Result, StoreContext};
use crate::manifest::Manifest;
use crate::printer;
use crate::resolution::unmet_needs;
use crate::settings::Settings;

pub fn run(args: &DoctorArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let profile = args.file.as_deref().map(crate::resolution::load_profile).transpose()?;
    let facts = crate::system::facts(profile.as_ref().map(|p| &p.system), cli.system.as_deref())?;
    let mut problems = Vec::new();
    if let Some(profile) = &profile {
        let lock =
            LockFile::load(&profile.lock_path()).map_err(|e| Failure::new("cannot read the lock file", e))?;
        let Some(lock) = lock else {
            return Err(Failure::new(
                format!("cannot check `{}`", profile.path.display()),
                format!("it has no lock file (`{}`)", profile.lock_path().display()),
            )
            .hint(format!("run `envctl lock {}` first", profile.path.display())));
        };
        let repo = settings.repository(cli)?;
        let packages = lock.packages.iter().map(|p| (p.name.as_str(), p.version.as_str()));
        let (found, missing) = unmet_needs(packages, &repo, &facts, "");
        problems.extend(found);
        problems.extend(missing.into_iter().map(|p| format!("{p}: no recipe in the repositories in force")));
    } else if settings.home.join("profiles").is_dir() {
        // No file: every profile's current generation, as built.
        let profiles = Profiles::at(&settings.home);
        let repo = settings.repository(cli)?;
        for name in profiles.names().context(|| "cannot list the profiles".into())? {
            let Some(current) =
                profiles.current(&name).context(|| format!("cannot read profile `{name}`"))?
            else {
                continue;
            };
            let Ok(manifest) = Manifest::load(&current.path) else { continue };
            let packages = manifest.packages.iter().map(|p| (p.name.as_str(), p.version.as_str()));
            let prefix = format!("profile `{name}` (generation {}): ", current.number);
            let (found, missing) = unmet_needs(packages, &repo, &facts, &prefix);
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
        }));
    } else {
        print_facts(&facts);
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
