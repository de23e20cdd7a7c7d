//! `envctl search`, `envctl show`: what the recipe repositories offer.

use envctl_recipes::{Recipe, Requirement};

use super::Status;
use crate::args::{SearchArgs, ShowArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::settings::Settings;

pub fn search(args: &SearchArgs, settings: &Settings) -> Result<Status> {
    let repo = settings.repository()?;
    let found = repo.search(&args.text);
    if args.json {
        let rows: Vec<_> = found
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name.as_str(),
                    "version": r.version.to_string(),
                    "versions": repo.versions(r.name.as_str()).map_or(0, |v| v.len()),
                    "summary": r.summary,
                })
            })
            .collect();
        printer::json(&rows);
        return Ok(Status::Success);
    }
    if found.is_empty() {
        printer::info(&format!("no package matches `{}`", args.text));
        return Ok(Status::Failure);
    }
    for r in found {
        printer::data(&format!("{:<24} {:<20} {}", r.name, r.version, r.summary));
    }
    Ok(Status::Success)
}

fn recipe_json(r: &Recipe) -> serde_json::Value {
    let s = &r.system;
    let opt = |o: &Option<Requirement>| o.as_ref().map(|r| r.to_string());
    serde_json::json!({
        "name": r.name.as_str(),
        "version": r.version.to_string(),
        "summary": r.summary,
        "license": r.license,
        "dependencies": r.dependencies.iter().map(|(n, q)| (n.to_string(), q.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        "system": { "driver": opt(&s.driver), "cuda": opt(&s.cuda), "sm": opt(&s.sm), "glibc": opt(&s.glibc), "arch": s.arch },
        "sources": r.sources,
        "env": r.env,
        "hints": r.hints.iter().map(|(n, h)| (n.to_string(), h.clone())).collect::<std::collections::BTreeMap<_, _>>(),
        "recipe": r.origin.display().to_string(),
    })
}

pub fn show(args: &ShowArgs, settings: &Settings) -> Result<Status> {
    let repo = settings.repository()?;
    let (name, req) = match args.spec.split_once('@') {
        Some((n, r)) => {
            (n, Requirement::parse(r).map_err(|e| Failure::new(format!("cannot show `{}`", args.spec), e))?)
        }
        None => (args.spec.as_str(), Requirement::any()),
    };
    let Some(versions) = repo.versions(name) else {
        let near: Vec<String> = repo.suggest(name).iter().map(|n| format!("`{n}`")).collect();
        let mut f = Failure::new(format!("cannot show `{name}`"), format!("no recipe provides `{name}`"));
        if !near.is_empty() {
            f = f.hint(format!("did you mean {}?", near.join(" or ")));
        }
        return Err(f);
    };
    let matching: Vec<&Recipe> =
        versions.values().rev().filter(|r| req.matches(&r.version)).map(|r| r.as_ref()).collect();
    if matching.is_empty() {
        let all: Vec<String> = versions.keys().map(|v| v.to_string()).collect();
        return Err(Failure::new(
            format!("cannot show `{}`", args.spec),
            format!("no version of `{name}` matches `{req}`"),
        )
        .hint(format!("available: {}", all.join(", "))));
    }
    // What a higher repository hides: shown so a team sees that its own recipes won.
    let hidden: Vec<&Recipe> =
        repo.hidden(name).into_iter().filter(|r| req.matches(&r.version)).map(|r| r.as_ref()).collect();
    if args.json {
        let mut out: Vec<serde_json::Value> = matching.iter().map(|r| recipe_json(r)).collect();
        for r in &hidden {
            let mut v = recipe_json(r);
            v["hidden"] = serde_json::Value::Bool(true);
            out.push(v);
        }
        printer::json(&out);
        return Ok(Status::Success);
    }
    for (i, r) in matching.iter().enumerate() {
        if i > 0 {
            printer::data("");
        }
        printer::data(&format!("{} {}", r.name, r.version));
        if !r.summary.is_empty() {
            printer::data(&format!("  {}", r.summary));
        }
        if !r.license.is_empty() {
            printer::data(&format!("  license:      {}", r.license));
        }
        for (n, q) in &r.dependencies {
            printer::data(&format!("  depends on:   {n} {q}"));
        }
        let s = &r.system;
        for (key, v) in [("driver", &s.driver), ("cuda", &s.cuda), ("sm", &s.sm), ("glibc", &s.glibc)] {
            if let Some(v) = v {
                printer::data(&format!("  needs:        {key} {v}"));
            }
        }
        if let Some(a) = &s.arch {
            printer::data(&format!("  needs:        arch {a}"));
        }
        for src in &r.sources {
            printer::data(&format!(
                "  source:       {}{}{} (sha256 {})",
                src.platform.as_deref().map(|p| format!("[{p}] ")).unwrap_or_default(),
                src.python.as_ref().map(|p| format!("[python {}] ", p.as_str())).unwrap_or_default(),
                src.url,
                src.sha256
            ));
        }
        for (dep, hint) in &r.hints {
            printer::data(&format!("  without {dep}: {hint}"));
        }
        printer::data(&format!("  recipe:       {}", r.origin.display()));
    }
    if !hidden.is_empty() {
        printer::data("");
        printer::data(
            "hidden by the repository above (a name defined higher up hides every version of it below):",
        );
        for r in &hidden {
            printer::data(&format!("  {} {}    ({})", r.name, r.version, r.origin.display()));
        }
    }
    Ok(Status::Success)
}
