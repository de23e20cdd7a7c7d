//! Resolution benchmark: a synthetic repository of 5,000 recipes (500 names × 10 versions, up to
//! 5 dependencies each) written to a temp dir, then, per round:
//!
//! - floor: read every recipe file (no parsing);
//! - load: `Repository::load_dir` (read + parse + check);
//! - load, cached: `Repository::load_dir_cached` with its cache written (what envctl does);
//! - solve (warm): one resolution with the repository already loaded;
//! - cold: load + solve, as a fresh `envctl lock` does in-process.
//!
//! `cargo bench -p envctl-resolver` prints medians over the rounds; docs/performance.md records them.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use envctl_recipes::{PackageName, Repository, Requirement, SystemFacts, Version};
use envctl_resolver::{Request, Task, solve};

const NAMES: usize = 500;
const VERSIONS: usize = 10;

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn generate(dir: &Path) {
    let mut rng = Rng(0x853c49e6748fea9b);
    for i in 0..NAMES {
        let pkg = dir.join(format!("p{i:03}"));
        std::fs::create_dir_all(&pkg).unwrap();
        for v in 1..=VERSIONS {
            let mut text = format!(
                "name = \"p{i:03}\"\nversion = \"{v}.0.{}\"\nsummary = \"synthetic package {i}\"\nlicense = \"MIT\"\n\n[dependencies]\n",
                rng.below(20)
            );
            // Dependencies point to higher-numbered packages, so the graph is a DAG; ranges are
            // wide enough that most combinations solve, narrow enough to make the solver choose.
            let deps = rng.below(6) as usize;
            let mut seen = Vec::new();
            for _ in 0..deps {
                if i + 1 >= NAMES {
                    break;
                }
                let j = i + 1 + rng.below(((NAMES - i - 1) as u64).min(40)) as usize;
                if seen.contains(&j) {
                    continue;
                }
                seen.push(j);
                let lo = 1 + rng.below(5);
                let hi = lo + 3 + rng.below(6);
                text.push_str(&format!("p{j:03} = \">={lo},<{hi}\"\n"));
            }
            text.push_str(&format!(
                "\n[system]\nglibc = \">=2.17\"\n\n[[source]]\nplatform = \"linux-x86_64\"\nurl = \"https://example.invalid/p{i:03}-{v}.tar.zst\"\nsha256 = \"{}\"\n",
                format!("{:016x}", rng.below(u64::MAX)).repeat(4)
            ));
            let file = pkg.join(format!("{v}.toml"));
            std::fs::write(&file, text).unwrap();
            // Dated a minute back, as a repository is between edits (a cache is only written for
            // files that are not brand new).
            let old = std::time::SystemTime::now() - Duration::from_secs(60);
            std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        }
    }
}

fn read_all(dir: &Path) -> usize {
    let mut n = 0;
    for d in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            n += std::fs::read(f.unwrap().path()).unwrap().len();
        }
    }
    n
}

fn resolve(repo: &Repository, system: &SystemFacts) -> usize {
    let requested = (0..10)
        .map(|i| Request {
            name: PackageName::parse(&format!("p{:03}", i * 7)).unwrap(),
            requirement: Requirement::any(),
            origin: "bench".into(),
        })
        .collect();
    let task = Task { repo, requested, preferred: BTreeMap::new(), system };
    solve(&task).expect("the synthetic request is solvable").packages.len()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(11);
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let system = SystemFacts {
        glibc: Some(Version::parse("2.35").unwrap()),
        arch: Some("x86_64".into()),
        ..Default::default()
    };
    if std::env::var_os("SOLVE_ONLY").is_some() {
        // For profilers: load once, then only solve.
        let repo = Repository::load_dir(dir.path()).unwrap();
        for _ in 0..rounds {
            resolve(&repo, &system);
        }
        return;
    }
    let (mut floor, mut load, mut warm, mut cold) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cached, mut cached_cold) = (Vec::new(), Vec::new());
    let cache = tempfile::tempdir().unwrap();
    Repository::load_dir_cached(dir.path(), cache.path()).unwrap();
    let mut solved = 0;
    let mut recipes = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        read_all(dir.path());
        floor.push(t.elapsed());

        let t = Instant::now();
        let repo = Repository::load_dir(dir.path()).unwrap();
        load.push(t.elapsed());
        recipes = repo.len();

        let t = Instant::now();
        solved = resolve(&repo, &system);
        warm.push(t.elapsed());

        let t = Instant::now();
        let repo = Repository::load_dir(dir.path()).unwrap();
        resolve(&repo, &system);
        cold.push(t.elapsed());

        let t = Instant::now();
        let repo = Repository::load_dir_cached(dir.path(), cache.path()).unwrap();
        cached.push(t.elapsed());
        assert_eq!(repo.len(), recipes);

        let t = Instant::now();
        let repo = Repository::load_dir_cached(dir.path(), cache.path()).unwrap();
        resolve(&repo, &system);
        cached_cold.push(t.elapsed());
    }
    println!(
        "repository: {recipes} recipes ({NAMES} names x {VERSIONS} versions); solution: {solved} packages; {rounds} rounds"
    );
    println!("| step | median |");
    println!("| --- | ---: |");
    println!("| floor: read every recipe file | {} |", ms(median(floor)));
    println!("| load (read + parse + check) | {} |", ms(median(load)));
    println!("| solve, repository loaded (warm) | {} |", ms(median(warm)));
    println!("| cold: load + solve | {} |", ms(median(cold)));
    println!("| load, cached | {} |", ms(median(cached)));
    println!("| cold with the cache: cached load + solve | {} |", ms(median(cached_cold)));
}
