//! Scenario tests on the fixture repository (`tests/fixtures/recipes`): real framework, CUDA,
//! cuDNN and Python pairings.

use std::collections::BTreeMap;
use std::path::Path;

use envctl_recipes::{PackageName, Repository, Requirement, SystemFacts, SystemOverrides, Version};
use envctl_resolver::{Request, SolveError, Task, solve};

fn repo() -> Repository {
    Repository::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/recipes")).unwrap()
}

/// A machine with a recent driver, one Ampere GPU, glibc 2.35, x86_64.
fn machine(driver: &str) -> SystemFacts {
    let mut facts = SystemFacts {
        sm: vec![Version::parse("8.6").unwrap()],
        glibc: Some(Version::parse("2.35").unwrap()),
        arch: Some("x86_64".into()),
        ..SystemFacts::default()
    };
    SystemOverrides { driver: Some(Some(Version::parse(driver).unwrap())), ..Default::default() }
        .apply(&mut facts, "ENVCTL_SYSTEM_DRIVER");
    facts
}

struct Case {
    name: &'static str,
    want: Vec<(&'static str, &'static str)>,
    system: SystemFacts,
    preferred: BTreeMap<PackageName, Version>,
}

impl Case {
    fn new(name: &'static str) -> Case {
        Case { name, want: Vec::new(), system: machine("535.104.05"), preferred: BTreeMap::new() }
    }
    fn want(mut self, name: &'static str, req: &'static str) -> Case {
        self.want.push((name, req));
        self
    }
    fn driver(mut self, d: &str) -> Case {
        self.system = machine(d);
        self
    }
    fn prefer(mut self, name: &str, v: &str) -> Case {
        self.preferred.insert(PackageName::parse(name).unwrap(), Version::parse(v).unwrap());
        self
    }
    fn solve(&self) -> Result<BTreeMap<String, String>, SolveError> {
        let repo = repo();
        let requested = self
            .want
            .iter()
            .enumerate()
            .map(|(i, (n, r))| Request {
                name: PackageName::parse(n).unwrap(),
                requirement: Requirement::parse(r).unwrap(),
                origin: format!("team.toml:{}: {n} = \"{r}\"", i + 2),
            })
            .collect();
        let task = Task { repo: &repo, requested, preferred: self.preferred.clone(), system: &self.system };
        solve(&task).map(|s| s.packages.iter().map(|(n, r)| (n.to_string(), r.version.to_string())).collect())
    }
    fn expect(self, pairs: &[(&str, &str)]) {
        let got = self.solve().unwrap_or_else(|e| panic!("{}: {e}", self.name));
        for (n, v) in pairs {
            assert_eq!(got.get(*n).map(String::as_str), Some(*v), "{}: {got:?}", self.name);
        }
    }
    fn fails(self) -> SolveError {
        match self.solve() {
            Ok(got) => panic!("{}: expected a failure, got {got:?}", self.name),
            Err(e) => e,
        }
    }
}

#[test]
fn tf1_resolves_to_cuda_10_0_cudnn_7_6_and_python_3_7() {
    Case::new("tf1").want("tensorflow", "1.15").expect(&[
        ("tensorflow", "1.15.5"),
        ("cuda", "10.0.130"),
        ("cudnn", "7.6.5.32+cuda10.0"),
        ("python", "3.7.17"),
    ]);
}

#[test]
fn tf2_resolves_to_its_own_cuda() {
    Case::new("tf2 newest").want("tensorflow", "2").expect(&[
        ("tensorflow", "2.15.0"),
        ("cuda", "12.4.127"),
        ("cudnn", "8.9.7.29+cuda12"),
        ("python", "3.11.4"),
    ]);
    Case::new("tf 2.12")
        .want("tensorflow", "2.12")
        .expect(&[("cuda", "11.8.89"), ("cudnn", "8.9.7.29+cuda11")]);
}

#[test]
fn pytorch_takes_the_cuda_variant_the_driver_supports() {
    Case::new("pytorch on a CUDA 12 driver")
        .want("pytorch", "2.1")
        .expect(&[("pytorch", "2.1.2+cu121"), ("cuda", "12.4.127")]);
    Case::new("pytorch on a CUDA 11 driver").want("pytorch", "2.1").driver("470.57.02").expect(&[
        ("pytorch", "2.1.2+cu118"),
        ("cuda", "11.8.89"),
        ("cudnn", "8.9.7.29+cuda11"),
    ]);
}

#[test]
fn tf1_beside_a_cuda_11_pin_fails_naming_both_lines() {
    let e = Case::new("tf1 + cuda 11.8").want("tensorflow", "1.15").want("cuda", "11.8").fails();
    let msg = e.to_string();
    assert!(msg.contains("team.toml:2: tensorflow = \"1.15\""), "{msg}");
    assert!(msg.contains("team.toml:3: cuda = \"11.8\""), "{msg}");
    assert!(msg.contains("cuda"), "{msg}");
}

#[test]
fn an_old_driver_fails_a_cuda_11_request_and_says_how_to_override() {
    let e = Case::new("cuda 11 on 418").want("cuda", "11").driver("418.40").fails();
    let hints = e.hints().join("\n");
    assert!(hints.contains("418.40") && hints.contains("too old"), "{hints}");
    assert!(hints.contains("ENVCTL_SYSTEM_DRIVER"), "{hints}");
    assert!(e.to_string().contains("depends on the CUDA the driver supports >=11"), "{e}");
    // The same request fits CUDA 10.1, which that driver supports.
    Case::new("cuda 10.1 on 418").want("cuda", "10.1").driver("418.40").expect(&[("cuda", "10.1.243")]);
}

#[test]
fn no_driver_at_all_is_explained() {
    let mut case = Case::new("no driver").want("tensorflow", "1.15");
    case.system.driver = None;
    case.system.cuda = None;
    let e = case.fails();
    assert!(e.hints().join("\n").contains("no NVIDIA driver was found"), "{:?}", e.hints());
}

#[test]
fn an_unknown_name_suggests_the_nearest() {
    let e = Case::new("typo").want("tensorflw", "*").fails();
    assert!(e.to_string().contains("did you mean `tensorflow`"), "{e}");
}

#[test]
fn a_preferred_version_is_kept_while_it_fits() {
    Case::new("locked python").want("python", "3").prefer("python", "3.8.18").expect(&[("python", "3.8.18")]);
    // A preference that no longer fits is dropped.
    Case::new("stale preference")
        .want("python", "3.11")
        .prefer("python", "3.8.18")
        .expect(&[("python", "3.11.4")]);
}

#[test]
fn the_graph_orders_dependencies_first_and_explains_why() {
    let repo = repo();
    let system = machine("535.104.05");
    let task = Task {
        repo: &repo,
        requested: vec![Request {
            name: PackageName::parse("tensorflow").unwrap(),
            requirement: Requirement::parse("1.15").unwrap(),
            origin: "x".into(),
        }],
        preferred: BTreeMap::new(),
        system: &system,
    };
    let s = solve(&task).unwrap();
    let order: Vec<String> = s.graph.install_order().iter().map(|n| n.to_string()).collect();
    let pos = |n: &str| order.iter().position(|o| o == n).unwrap();
    assert!(
        pos("cuda") < pos("cudnn") && pos("cudnn") < pos("tensorflow") && pos("python") < pos("tensorflow"),
        "{order:?}"
    );
    let why: Vec<String> =
        s.graph.why(&PackageName::parse("cuda").unwrap()).unwrap().iter().map(|n| n.to_string()).collect();
    assert_eq!(why, ["tensorflow", "cuda"]);
    let dot = s.graph.to_dot(|n| s.packages[n].version.to_string());
    assert!(dot.contains("\"cudnn\" -> \"cuda\";"), "{dot}");
}

#[test]
fn explanations_read_as_sentences_about_the_profile_and_the_machine() {
    let e = Case::new("tf1 + cuda 11.8").want("tensorflow", "1.15").want("cuda", "11.8").fails().to_string();
    assert!(e.contains("your profile depends on cuda 11.8.*, your profile cannot be satisfied"), "{e}");
    assert!(!e.contains("profile 0"), "{e}");
    let e = Case::new("cuda 11 on 418").want("cuda", "11").driver("418.40").fails().to_string();
    assert!(e.contains("This machine has: a driver supporting CUDA up to 10.1."), "{e}");
}

#[test]
fn a_request_no_version_meets_lists_the_available_versions() {
    let e = Case::new("tensorflow 9").want("tensorflow", "9").fails();
    let text = e.to_string();
    assert!(
        text.starts_with("no version of tensorflow matches `9` (asked for at")
            && text.contains("available: 1.15.5, 2.12.0, 2.15.0"),
        "{text}"
    );
    assert!(e.hints().iter().any(|h| h.contains("envctl show tensorflow")), "{:?}", e.hints());
}
