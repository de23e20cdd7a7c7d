//! Property test: on small random repositories the solver agrees with brute force. Any solution
//! it returns satisfies every requirement; when brute force finds a solution, so does the solver.

use std::collections::BTreeMap;
use std::path::Path;

use envctl_recipes::{PackageName, Recipe, Repository, Requirement, SystemFacts, Version};
use envctl_resolver::{Request, Task, solve};

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn random_req(rng: &mut Rng) -> String {
    let v = 1 + rng.below(3);
    match rng.below(5) {
        0 => "*".into(),
        1 => format!("=={v}"),
        2 => format!(">={v}"),
        3 => format!("<{v}"),
        _ => format!("!={v}"),
    }
}

/// recipes[name][version] = dependencies
type Universe = BTreeMap<&'static str, BTreeMap<u64, Vec<(&'static str, String)>>>;

fn random_universe(rng: &mut Rng) -> Universe {
    let mut u = Universe::new();
    for name in NAMES {
        let mut versions = BTreeMap::new();
        for v in 1..=3 {
            if rng.below(4) == 0 {
                continue;
            }
            let mut deps = Vec::new();
            for dep in NAMES {
                if dep != name && rng.below(3) == 0 {
                    deps.push((dep, random_req(rng)));
                }
            }
            versions.insert(v, deps);
        }
        u.insert(name, versions);
    }
    u
}

fn to_repo(u: &Universe) -> Repository {
    let mut repo = Repository::default();
    for (name, versions) in u {
        for (v, deps) in versions {
            let mut text = format!("name = \"{name}\"\nversion = \"{v}\"\n[dependencies]\n");
            for (d, r) in deps {
                text.push_str(&format!("{d} = \"{r}\"\n"));
            }
            text.push_str(&format!(
                "[[source]]\nurl = \"https://example.invalid/{name}-{v}.tar\"\nsha256 = \"{}\"\n",
                "0".repeat(64)
            ));
            repo.insert(Recipe::parse(&text, Path::new("gen.toml")).unwrap(), false).unwrap();
        }
    }
    repo
}

fn satisfies(u: &Universe, requests: &[(&str, String)], chosen: &BTreeMap<&str, u64>) -> bool {
    let ok = |name: &str, req: &str| {
        chosen.get(name).is_some_and(|v| {
            Requirement::parse(req).unwrap().matches(&Version::parse(&v.to_string()).unwrap())
        })
    };
    requests.iter().all(|(n, r)| ok(n, r))
        && chosen.iter().all(|(n, v)| u[n].get(v).is_some_and(|deps| deps.iter().all(|(d, r)| ok(d, r))))
}

fn brute_force(u: &Universe, requests: &[(&str, String)]) -> bool {
    // Each package: absent (0) or one of versions 1..=3.
    let total = 4u64.pow(NAMES.len() as u32);
    (0..total).any(|mut code| {
        let mut chosen = BTreeMap::new();
        for name in NAMES {
            let v = code % 4;
            code /= 4;
            if v > 0 {
                if !u[name].contains_key(&v) {
                    return false;
                }
                chosen.insert(name, v);
            }
        }
        satisfies(u, requests, &chosen)
    })
}

#[test]
fn the_solver_agrees_with_brute_force_on_small_repositories() {
    let mut rng = Rng(0x2545F4914F6CDD1D);
    let system = SystemFacts::default();
    let (mut solved, mut failed) = (0, 0);
    for _ in 0..1500 {
        let u = random_universe(&mut rng);
        let repo = to_repo(&u);
        let mut requests: Vec<(&str, String)> = Vec::new();
        for name in NAMES {
            if rng.below(3) == 0 && !u[name].is_empty() {
                requests.push((name, random_req(&mut rng)));
            }
        }
        if requests.is_empty() {
            requests.push(("a", "*".into()));
            if u["a"].is_empty() {
                continue;
            }
        }
        let task = Task {
            repo: &repo,
            requested: requests
                .iter()
                .map(|(n, r)| Request {
                    name: PackageName::parse(n).unwrap(),
                    requirement: Requirement::parse(r).unwrap(),
                    origin: format!("{n} = \"{r}\""),
                })
                .collect(),
            preferred: BTreeMap::new(),
            system: &system,
        };
        let expected = brute_force(&u, &requests);
        match solve(&task) {
            Ok(solution) => {
                let chosen: BTreeMap<&str, u64> = solution
                    .packages
                    .iter()
                    .map(|(n, r)| {
                        (
                            *NAMES.iter().find(|x| **x == n.as_str()).unwrap(),
                            r.version.to_string().parse().unwrap(),
                        )
                    })
                    .collect();
                assert!(
                    satisfies(&u, &requests, &chosen),
                    "invalid solution {chosen:?} for {requests:?} in {u:?}"
                );
                solved += 1;
            }
            Err(e) => {
                assert!(
                    !expected,
                    "solver failed but brute force found a solution for {requests:?} in {u:?}: {e}"
                );
                failed += 1;
            }
        }
    }
    // Both outcomes were exercised, or the test proves little.
    assert!(solved > 100 && failed > 100, "solved {solved}, failed {failed}");
}
