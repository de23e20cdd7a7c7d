//! What `why` and `graph` look at: the dependency graph of a profile file resolved now (pinned
//! to its lock when that is up to date), or of an applied profile's current generation as it
//! was built.

use std::collections::BTreeMap;
use std::path::Path;

use envctl_recipes::PackageName;
use envctl_resolver::DepGraph;

use crate::error::{Failure, Result, StoreContext};
use crate::manifest::Manifest;
use crate::resolution::{Context, versions_of};
use crate::settings::Settings;

/// A dependency graph with what explains it.
#[derive(Debug)]
pub struct View {
    /// Who needs whom.
    pub graph: DepGraph,
    /// Each package's version.
    pub versions: BTreeMap<PackageName, String>,
    /// The requirement behind each edge, when resolved from a file.
    pub needs: BTreeMap<(PackageName, PackageName), String>,
    /// Where each requested package was asked for.
    pub asked: BTreeMap<PackageName, String>,
    /// What was looked at, for messages.
    pub what: String,
}

/// The view of `target`: a file when it ends in `.toml` or is a file; otherwise a profile.
pub fn view(target: &str, settings: &Settings) -> Result<View> {
    let path = Path::new(target);
    if target.ends_with(".toml") || path.is_file() {
        return of_file(path, settings);
    }
    let (profile, profiles) = settings.profile(target)?;
    let current =
        profiles.current(&profile.name).context(|| format!("cannot read profile `{target}`"))?.ok_or_else(
            || crate::generations::no_profile(&profiles, target, &format!("cannot read profile `{target}`")),
        )?;
    let m = Manifest::load(&current.path)
        .map_err(|e| Failure::new(format!("cannot read profile `{target}`"), e))?;
    if m.requested.is_empty() {
        return Err(Failure::new(
            format!("cannot show the dependencies of profile `{target}`"),
            format!("its generation {} was built before envctl recorded them", current.number),
        )
        .hint("apply its profile file again, or give the file instead of the name"));
    }
    let parse = |n: &str| PackageName::parse(n).ok();
    let edges = m
        .packages
        .iter()
        .filter_map(|p| Some((parse(&p.name)?, p.dependencies.iter().filter_map(|d| parse(d)).collect())));
    let roots: Vec<PackageName> = m.requested.iter().filter_map(|n| parse(n)).collect();
    let asked = roots
        .iter()
        .map(|n| (n.clone(), format!("asked for by profile `{target}`, generation {}", current.number)))
        .collect();
    Ok(View {
        graph: DepGraph::from_edges(edges, &roots),
        versions: m.packages.iter().filter_map(|p| Some((parse(&p.name)?, p.version.clone()))).collect(),
        needs: BTreeMap::new(),
        asked,
        what: format!("profile `{target}`'s current generation"),
    })
}

/// A profile file resolved now, keeping its lock's versions when the lock is up to date.
fn of_file(path: &Path, settings: &Settings) -> Result<View> {
    let ctx = Context::load(path, settings)?;
    let preferred = ctx.fresh_lock()?.as_ref().map(versions_of).unwrap_or_default();
    let solution = ctx.solve(preferred)?;
    let versions = solution.packages.iter().map(|(n, r)| (n.clone(), r.version.to_string())).collect();
    let needs = solution
        .packages
        .iter()
        .flat_map(|(n, r)| r.dependencies.iter().map(move |(d, q)| ((n.clone(), d.clone()), q.to_string())))
        .collect();
    let asked = ctx
        .profile
        .packages
        .iter()
        .map(|(n, r)| (n.clone(), format!("asked for at {}:{}: {}", path.display(), r.line, r.text)))
        .collect();
    Ok(View {
        graph: solution.graph,
        versions,
        needs,
        asked,
        what: format!("the resolution of `{}`", path.display()),
    })
}
