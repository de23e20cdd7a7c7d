//! `envctl doctor`: this machine's facts, where each came from, and whether a profile's lock fits.

use envctl_recipes::{LockFile, ProfileFile, Requirement, SystemFacts, Version};

use super::Status;
use crate::args::{Cli, DoctorArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::settings::Settings;

pub fn run(args: &DoctorArgs, settings: &Settings, cli: &Cli) -> Result<Status> {
    let profile = args
        .file
        .as_deref()
        .map(|f| {
            ProfileFile::load(f)
                .map_err(|e| Failure::new(format!("cannot read the profile file `{}`", f.display()), e))
        })
        .transpose()?;
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
        for p in &lock.packages {
            let Ok(v) = Version::parse(&p.version) else { continue };
            let Some(recipe) = repo.get(&p.name, &v) else {
                problems.push(format!("{} {}: no recipe in the repositories in force", p.name, p.version));
                continue;
            };
            let s = &recipe.system;
            let check = |what: &str,
                         req: &Option<Requirement>,
                         have: Option<&Version>,
                         problems: &mut Vec<String>| {
                if let Some(req) = req {
                    match have {
                        Some(h) if req.matches(h) => {}
                        Some(h) => problems.push(format!(
                            "{} {} needs {what} {req}; this machine has {h}",
                            p.name, p.version
                        )),
                        None => problems.push(format!(
                            "{} {} needs {what} {req}; this machine has none",
                            p.name, p.version
                        )),
                    }
                }
            };
            check("driver", &s.driver, facts.driver.as_ref(), &mut problems);
            check("cuda", &s.cuda, facts.cuda.as_ref(), &mut problems);
            check("sm", &s.sm, facts.min_sm(), &mut problems);
            check("glibc", &s.glibc, facts.glibc.as_ref(), &mut problems);
            if let Some(a) = &s.arch
                && facts.arch.as_deref() != Some(a.as_str())
            {
                problems.push(format!(
                    "{} {} needs arch {a}; this machine is {}",
                    p.name,
                    p.version,
                    facts.arch.as_deref().unwrap_or("unknown")
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
        if let Some(p) = &profile {
            if problems.is_empty() {
                printer::info(&format!("`{}`'s lock fits this machine", p.path.display()));
            }
            for problem in &problems {
                printer::info(&format!("problem: {problem}"));
            }
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
