//! Solving: one version per package name that satisfies every requirement, newest first unless a
//! lock says otherwise, with the machine's facts as virtual packages.
//!
//! | virtual package | its one version | asked for by a recipe's |
//! | --- | --- | --- |
//! | `__driver` | the NVIDIA driver version | `system.driver` |
//! | `__cuda` | the highest CUDA the driver supports | `system.cuda` |
//! | `__sm` | the lowest compute capability among the GPUs | `system.sm` |
//! | `__glibc` | the glibc version | `system.glibc` |
//! | `__arch-<name>` | present only for this machine's architecture | `system.arch` |
//!
//! A fact the machine lacks (no driver, no GPU) is a virtual package with no version, so anything
//! that needs it cannot be chosen, and the explanation says why.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use envctl_recipes::{PackageName, Recipe, Repository, Requirement, SystemFacts, Version};
use pubgrub::{
    DefaultStringReporter, Dependencies, DependencyProvider, DerivationTree, External,
    PackageResolutionStatistics, PubGrubError, Reporter, VersionSet,
};

use crate::graph::DepGraph;
use crate::set::Set;

/// One requested package and where the request was written.
#[derive(Debug, Clone)]
pub struct Request {
    /// Package name.
    pub name: PackageName,
    /// Requirement.
    pub requirement: Requirement,
    /// Where it was asked for (`vision.toml:3: tensorflow = "1.15"`), for explanations.
    pub origin: String,
}

/// What to solve.
#[derive(Debug, Clone)]
pub struct Task<'a> {
    /// The recipes.
    pub repo: &'a Repository,
    /// What was asked for.
    pub requested: Vec<Request>,
    /// Versions to keep when they still fit (from a lock or an installed generation).
    pub preferred: BTreeMap<PackageName, Version>,
    /// The machine.
    pub system: &'a SystemFacts,
}

/// An exact, consistent set of recipes.
#[derive(Debug, Clone)]
pub struct Solution {
    /// Chosen recipe per package.
    pub packages: BTreeMap<PackageName, Arc<Recipe>>,
    /// The dependency graph of the chosen recipes.
    pub graph: DepGraph,
}

/// Why solving failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SolveError {
    /// A requested name no repository knows.
    #[error("no recipe provides `{name}` (asked for at {origin}){}", suggestion(.suggestions))]
    UnknownPackage {
        /// The name.
        name: String,
        /// Where it was asked for.
        origin: String,
        /// Nearest known names.
        suggestions: Vec<String>,
    },
    /// No set of versions satisfies everything.
    #[error("{explanation}")]
    NoSolution {
        /// The chain of reasons, in words.
        explanation: String,
        /// What the user can do.
        hints: Vec<String>,
    },
}

fn suggestion(s: &[String]) -> String {
    match s {
        [] => String::new(),
        [one] => format!("; did you mean `{one}`?"),
        many => format!(
            "; did you mean one of {}?",
            many.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl SolveError {
    /// Hints for the user.
    pub fn hints(&self) -> &[String] {
        match self {
            SolveError::NoSolution { hints, .. } => hints,
            SolveError::UnknownPackage { .. } => &[],
        }
    }
}

/// A machine fact the solver treats as a package.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fact {
    /// NVIDIA driver version.
    Driver,
    /// Highest CUDA the driver supports.
    Cuda,
    /// Lowest GPU compute capability.
    Sm,
    /// glibc.
    Glibc,
    /// CPU architecture.
    Arch(String),
}

/// A solver package.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pkg {
    /// The profile.
    Root,
    /// A real package.
    Real(PackageName),
    /// A fact of the machine.
    Fact(Fact),
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkg::Root => f.write_str("your profile"),
            Pkg::Real(n) => write!(f, "{n}"),
            Pkg::Fact(Fact::Driver) => f.write_str("the NVIDIA driver"),
            Pkg::Fact(Fact::Cuda) => f.write_str("the CUDA the driver supports"),
            Pkg::Fact(Fact::Sm) => f.write_str("the GPU compute capability"),
            Pkg::Fact(Fact::Glibc) => f.write_str("glibc"),
            Pkg::Fact(Fact::Arch(a)) => write!(f, "the {a} architecture"),
        }
    }
}

struct Provider<'a> {
    task: &'a Task<'a>,
    platform: String,
    root: Vec<(Pkg, Set)>,
    /// Per package: versions with a source for the platform, newest first. Filled on first use;
    /// the solver asks for the same package many times.
    candidates: std::cell::RefCell<std::collections::HashMap<PackageName, std::rc::Rc<Vec<Version>>>>,
    /// Requirement text to its set: recipes repeat the same requirements over and over.
    sets: std::cell::RefCell<std::collections::HashMap<String, Set>>,
}

impl Provider<'_> {
    fn fact(&self, fact: &Fact) -> Option<Version> {
        let s = self.task.system;
        match fact {
            Fact::Driver => s.driver.clone(),
            Fact::Cuda => s.cuda.clone(),
            Fact::Sm => s.min_sm().cloned(),
            Fact::Glibc => s.glibc.clone(),
            Fact::Arch(a) => {
                (s.arch.as_deref() == Some(a.as_str())).then(|| Version::parse("1").expect("valid"))
            }
        }
    }

    fn set(&self, req: &Requirement) -> Set {
        if let Some(s) = self.sets.borrow().get(req.as_str()) {
            return s.clone();
        }
        let s = Set::from(req);
        self.sets.borrow_mut().insert(req.as_str().to_owned(), s.clone());
        s
    }

    /// Versions of a real package usable on this platform, newest first.
    fn usable(&self, name: &PackageName) -> std::rc::Rc<Vec<Version>> {
        if let Some(c) = self.candidates.borrow().get(name) {
            return c.clone();
        }
        let list: Vec<Version> = self
            .task
            .repo
            .versions(name.as_str())
            .into_iter()
            .flat_map(|versions| versions.iter().rev())
            .filter(|(_, r)| r.has_source(&self.platform))
            .map(|(v, _)| v.clone())
            .collect();
        let list = std::rc::Rc::new(list);
        self.candidates.borrow_mut().insert(name.clone(), list.clone());
        list
    }
}

impl DependencyProvider for Provider<'_> {
    type P = Pkg;
    type V = Version;
    type VS = Set;
    type M = String;
    type Err = Infallible;
    type Priority = (u32, Reverse<usize>);

    fn prioritize(&self, package: &Pkg, range: &Set, stats: &PackageResolutionStatistics) -> Self::Priority {
        let count = match package {
            Pkg::Root => 1,
            Pkg::Fact(f) => usize::from(self.fact(f).is_some_and(|v| range.contains(&v))),
            Pkg::Real(n) => self.usable(n).iter().filter(|v| range.contains(v)).count(),
        };
        if count <= 1 {
            // Decide forced and impossible choices first: they fail fast or cost nothing.
            return (u32::MAX, Reverse(count));
        }
        (stats.conflict_count(), Reverse(count))
    }

    fn choose_version(&self, package: &Pkg, range: &Set) -> Result<Option<Version>, Infallible> {
        Ok(match package {
            Pkg::Root => Some(Version::parse("0").expect("valid")),
            Pkg::Fact(f) => self.fact(f).filter(|v| range.contains(v)),
            Pkg::Real(n) => {
                let usable = self.usable(n);
                let mut fits = usable.iter().filter(|v| range.contains(v));
                if let Some(p) = self.task.preferred.get(n)
                    && range.contains(p)
                    && usable.contains(p)
                {
                    return Ok(Some(p.clone()));
                }
                // Newest release; a pre-release only when nothing else fits.
                match fits.next() {
                    Some(v) if v.is_prerelease() => Some(
                        usable.iter().find(|c| range.contains(c) && !c.is_prerelease()).unwrap_or(v).clone(),
                    ),
                    other => other.cloned(),
                }
            }
        })
    }

    fn get_dependencies(
        &self,
        package: &Pkg,
        version: &Version,
    ) -> Result<Dependencies<Pkg, Set, String>, Infallible> {
        Ok(match package {
            Pkg::Root => Dependencies::Available(self.root.iter().cloned().collect()),
            Pkg::Fact(_) => Dependencies::Available(Vec::<(Pkg, Set)>::new().into_iter().collect()),
            Pkg::Real(n) => {
                let Some(recipe) = self.task.repo.get(n.as_str(), version) else {
                    return Ok(Dependencies::Unavailable("no recipe".into()));
                };
                let mut deps: Vec<(Pkg, Set)> =
                    recipe.dependencies.iter().map(|(d, r)| (Pkg::Real(d.clone()), self.set(r))).collect();
                let sys = &recipe.system;
                for (fact, req) in [
                    (Fact::Driver, &sys.driver),
                    (Fact::Cuda, &sys.cuda),
                    (Fact::Sm, &sys.sm),
                    (Fact::Glibc, &sys.glibc),
                ] {
                    // A compute-capability need is on the GPUs: a machine without one meets it
                    // (the code runs on the CPU there, as on any machine without a GPU).
                    if matches!(fact, Fact::Sm) && self.task.system.sm.is_empty() {
                        continue;
                    }
                    if let Some(req) = req {
                        deps.push((Pkg::Fact(fact), self.set(req)));
                    }
                }
                if let Some(a) = &sys.arch {
                    deps.push((Pkg::Fact(Fact::Arch(a.clone())), Set::full()));
                }
                Dependencies::Available(deps.into_iter().collect())
            }
        })
    }
}

/// Solves a task.
pub fn solve(task: &Task<'_>) -> Result<Solution, SolveError> {
    for r in &task.requested {
        if task.repo.versions(r.name.as_str()).is_none() {
            return Err(SolveError::UnknownPackage {
                name: r.name.to_string(),
                origin: r.origin.clone(),
                suggestions: task.repo.suggest(r.name.as_str()).into_iter().map(|n| n.to_string()).collect(),
            });
        }
    }
    let provider = Provider {
        task,
        platform: task.system.platform(),
        root: task.requested.iter().map(|r| (Pkg::Real(r.name.clone()), Set::from(&r.requirement))).collect(),
        candidates: Default::default(),
        sets: Default::default(),
    };
    // A request no version can meet is said plainly, with what there is, before solving: the
    // solver's own account of it ("your profile depends on …") leaves out the reason.
    for r in &task.requested {
        let usable = provider.usable(&r.name);
        if !usable.iter().any(|v| r.requirement.matches(v)) {
            let all = task.repo.versions(r.name.as_str()).map(|v| v.len()).unwrap_or(0);
            let there = if usable.is_empty() {
                format!("none of its {all} versions has a source for {}", provider.platform)
            } else {
                const SHOWN: usize = 8;
                let mut shown: Vec<String> = usable.iter().take(SHOWN).rev().map(|v| v.to_string()).collect();
                if usable.len() > SHOWN {
                    shown.insert(0, format!("({} older)", usable.len() - SHOWN));
                }
                format!("available: {}", shown.join(", "))
            };
            return Err(SolveError::NoSolution {
                explanation: format!(
                    "no version of {} matches `{}` (asked for at {}): {there}",
                    r.name, r.requirement, r.origin
                ),
                hints: vec![format!("`envctl show {}` lists its versions and what each needs", r.name)],
            });
        }
    }
    match pubgrub::resolve(&provider, Pkg::Root, Version::parse("0").expect("valid")) {
        Ok(selected) => {
            let mut packages = BTreeMap::new();
            for (pkg, version) in selected {
                if let Pkg::Real(name) = pkg {
                    let recipe =
                        task.repo.get(name.as_str(), &version).expect("the solver chose an existing recipe");
                    packages.insert(name, recipe.clone());
                }
            }
            let roots: Vec<PackageName> = task.requested.iter().map(|r| r.name.clone()).collect();
            let graph = DepGraph::new(&packages, &roots);
            Ok(Solution { packages, graph })
        }
        Err(PubGrubError::NoSolution(mut tree)) => {
            tree.collapse_no_versions();
            Err(explain(&tree, task))
        }
        Err(e) => {
            Err(SolveError::NoSolution { explanation: format!("the solver failed: {e}"), hints: Vec::new() })
        }
    }
}

type Tree = DerivationTree<Pkg, Set, String>;

fn walk<'t>(tree: &'t Tree, out: &mut Vec<&'t External<Pkg, Set, String>>) {
    match tree {
        DerivationTree::External(e) => out.push(e),
        DerivationTree::Derived(d) => {
            walk(&d.cause1, out);
            walk(&d.cause2, out);
        }
    }
}

fn explain(tree: &Tree, task: &Task<'_>) -> SolveError {
    let mut externals = Vec::new();
    walk(tree, &mut externals);
    let mut asked: BTreeSet<PackageName> = BTreeSet::new();
    let mut facts: BTreeSet<Fact> = BTreeSet::new();
    for e in &externals {
        match e {
            External::FromDependencyOf(Pkg::Root, _, Pkg::Real(n), _) => {
                asked.insert(n.clone());
            }
            External::FromDependencyOf(_, _, Pkg::Fact(f), _) | External::NoVersions(Pkg::Fact(f), _) => {
                facts.insert(f.clone());
            }
            _ => {}
        }
    }
    let mut explanation = DefaultStringReporter::report(tree)
        .replace("your profile 0 is forbidden", "your profile cannot be satisfied")
        .replace("your profile 0", "your profile");
    if !facts.is_empty() {
        let s = task.system;
        let show = |v: &Option<Version>, what: &str, none: &str| match v {
            Some(v) => format!("{what} {v}"),
            None => none.to_owned(),
        };
        let mut offered = Vec::new();
        for f in &facts {
            offered.push(match f {
                Fact::Driver => show(&s.driver, "NVIDIA driver", "no NVIDIA driver"),
                Fact::Cuda => {
                    show(&s.cuda, "a driver supporting CUDA up to", "no driver supporting any CUDA")
                }
                Fact::Sm => show(&s.min_sm().cloned(), "GPU compute capability", "no GPU"),
                Fact::Glibc => show(&s.glibc, "glibc", "no glibc"),
                Fact::Arch(_) => format!("the {} architecture", s.arch.as_deref().unwrap_or("unknown")),
            });
        }
        explanation.push_str(&format!("\nThis machine has: {}.", offered.join(", ")));
    }
    let lines: Vec<&Request> = task.requested.iter().filter(|r| asked.contains(&r.name)).collect();
    if !lines.is_empty() {
        explanation.push_str("\n\nThe requirements that clash were asked for at:");
        for r in lines {
            explanation.push_str(&format!("\n  {}", r.origin));
        }
    }
    let s = task.system;
    let origin = |k: &str| s.origin.get(k).map(|o| format!(" ({o})")).unwrap_or_default();
    let mut hints = Vec::new();
    for f in &facts {
        let hint = match f {
            Fact::Driver | Fact::Cuda => match &s.driver {
                None => format!(
                    "no NVIDIA driver was found{}. To resolve for a machine that has one, set ENVCTL_SYSTEM_DRIVER=VERSION \
                     (and ENVCTL_SYSTEM_CUDA=VERSION), or pass --system FILE",
                    origin("driver")
                ),
                Some(d) => format!(
                    "the NVIDIA driver here is {d}{}, which supports CUDA up to {}{}: it is too old for what was asked. \
                     Upgrade the driver, or resolve for another machine with ENVCTL_SYSTEM_DRIVER=VERSION or \
                     ENVCTL_SYSTEM_CUDA=VERSION, or --system FILE",
                    origin("driver"),
                    s.cuda.as_ref().map(|c| c.to_string()).unwrap_or_else(|| "no known version".into()),
                    origin("cuda")
                ),
            },
            Fact::Sm => format!(
                "the GPUs here have compute capability {}{}; set ENVCTL_SYSTEM_SM=X.Y or pass --system FILE to resolve for other GPUs",
                if s.sm.is_empty() {
                    "none (no GPU found)".into()
                } else {
                    s.sm.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
                },
                origin("sm")
            ),
            Fact::Glibc => format!(
                "glibc here is {}{}; set ENVCTL_SYSTEM_GLIBC=VERSION or pass --system FILE to resolve for another machine",
                s.glibc.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "unknown".into()),
                origin("glibc")
            ),
            Fact::Arch(a) => format!(
                "a package needs the {a} architecture; this machine is {}{}",
                s.arch.as_deref().unwrap_or("unknown"),
                origin("arch")
            ),
        };
        if !hints.contains(&hint) {
            hints.push(hint);
        }
    }
    // What a recipe says to do when one of its dependencies cannot be met.
    for e in &externals {
        if let External::FromDependencyOf(Pkg::Real(p), versions, Pkg::Real(d), _) = e {
            let recipes = task.repo.versions(p.as_str()).into_iter().flat_map(|vs| vs.iter());
            for (_, recipe) in recipes.filter(|(v, _)| versions.contains(v)) {
                if let Some(hint) = recipe.hints.get(d)
                    && !hints.contains(hint)
                {
                    hints.push(hint.clone());
                }
            }
        }
    }
    SolveError::NoSolution { explanation, hints }
}
