//! envctl's PEP 440 matching against the reference: `packaging`, the implementation pip itself
//! uses (pip's vendored copy, so any CPython with pip has it), over generated versions and
//! specifiers. Every disagreement is a failure naming the version and the specifier.
//!
//! What is compared is matching itself: `packaging` is asked with `prereleases=True`, since
//! whether pre-releases are considered at all is the resolver's policy, not the specifier's.

use std::str::FromStr;

use envctl_recipes::{Requirement, Version};

/// A small xorshift generator, so a failure is reproduced from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn version(rng: &mut Rng) -> String {
    let mut s = public_version(rng);
    if rng.below(6) == 0 {
        s.push_str(["+cu11", "+cu12", "+local.0", "+local.1"][rng.below(4) as usize]);
    }
    s
}

/// A version without a local label (what PEP 440 allows in ordered comparisons).
fn public_version(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3);
    let mut s = (0..n).map(|_| rng.below(3).to_string()).collect::<Vec<_>>().join(".");
    match rng.below(13) {
        0 => s.push_str(&format!("rc{}", rng.below(2))),
        1 => s.push_str(&format!("a{}", rng.below(2))),
        2 => s.push_str(&format!(".post{}", rng.below(2))),
        3 => s.push_str(&format!(".dev{}", rng.below(2))),
        4 => s.push_str(&format!("b{}.post{}.dev{}", rng.below(2), rng.below(2), rng.below(2))),
        5 => s.push_str(&format!("rc{}.dev{}", rng.below(2), rng.below(2))),
        6 => s = format!("1!{s}"),
        7 => s.push_str(&format!(".post{}.dev{}", rng.below(2), rng.below(2))),
        _ => {}
    }
    s
}

/// A specifier of one or two clauses, as PEP 440 allows them: release-only versions for `~=`
/// and `.*`, no local label in ordered comparisons.
fn specifier(rng: &mut Rng) -> String {
    let clause = |rng: &mut Rng| -> String {
        let op = ["==", "!=", "<", "<=", ">", ">=", "~=", "==*", "!=*"][rng.below(9) as usize];
        match op {
            "~=" => {
                let n = 2 + rng.below(2);
                format!("~={}", (0..n).map(|_| rng.below(3).to_string()).collect::<Vec<_>>().join("."))
            }
            "==*" | "!=*" => {
                let n = 1 + rng.below(2);
                let base = (0..n).map(|_| rng.below(3).to_string()).collect::<Vec<_>>().join(".");
                format!("{}{base}.*", &op[..2])
            }
            "==" | "!=" => format!("{op}{}", version(rng)),
            _ => format!("{op}{}", public_version(rng)),
        }
    };
    let mut s = clause(rng);
    if rng.below(3) == 0 {
        s.push(',');
        s.push_str(&clause(rng));
    }
    s
}

const ORACLE: &str = r#"
import sys
try:
    import packaging
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
except ImportError:
    from pip._vendor import packaging
    from pip._vendor.packaging.specifiers import SpecifierSet
    from pip._vendor.packaging.version import Version
if int(packaging.__version__.split(".")[0]) < 22:
    sys.exit(3)
for line in sys.stdin:
    spec, version = line.rstrip("\n").split("\t")
    try:
        print("1" if SpecifierSet(spec).contains(Version(version), prereleases=True) else "0")
    except Exception as e:
        print("E " + type(e).__name__)
"#;

/// Interpreters to try, newest first: `packaging` 22 (pip 24.1) settled what `==1.0.*` does
/// with post-releases (21.3 padded the release after cutting it, so `0.post1` missed `==0.0.*`).
fn interpreters() -> Vec<std::path::PathBuf> {
    let mut found: Vec<std::path::PathBuf> = Vec::new();
    for series in ["3.14", "3.13", "3.12"] {
        found.push(format!("python{series}").into());
        if let Ok(rd) = std::fs::read_dir("/root/.pyenv/versions") {
            let mut versions: Vec<_> = rd
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{series}.")))
                .map(|e| e.path().join(format!("bin/python{series}")))
                .collect();
            versions.sort();
            found.extend(versions.into_iter().rev());
        }
    }
    found.push("python3".into());
    found
}

/// The oracle's answers, one line per case, from the first interpreter with `packaging` 22 or
/// newer (its own or pip's vendored copy). Panics, saying what to install, if there is none.
fn ask_oracle(input: &str) -> std::process::Output {
    use std::io::Write;
    let mut tried = Vec::new();
    for exe in interpreters() {
        let Ok(mut child) = std::process::Command::new(&exe)
            .args(["-c", ORACLE])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            continue;
        };
        // Written from a thread, since the answers fill their pipe before the questions end. The
        // oracle may exit before reading (an old `packaging`): a broken pipe is its answer.
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_owned();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        if out.status.success() {
            return out;
        }
        tried.push(format!("{} ({})", exe.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    panic!(
        "this test needs a CPython whose `packaging` is 22 or newer (pip 24.1 or newer vendors it): \
         `python3 -m pip install -U pip`, or a pyenv 3.13; tried {}",
        tried.join(", ")
    );
}

/// The one known difference, documented in `docs/reference/versions.md`: an envctl requirement is
/// a union of intervals, and `packaging` punches holes in `>V` and `<V` that no interval can
/// follow. `>2.0a1` leaves out `2.0b1.post1` and `2.0rc1+cu12` (post-releases and local variants of
/// the pre-releases between `V` and its release; with `V` a post-release, local variants of the
/// release's post-releases too), and `<2.0.post2` leaves out `2.0.post1.dev0` (dev releases of
/// its post-releases). envctl takes them. Everything else, including what `>V` and `<V` leave out
/// of the release itself (`>2.0rc1` takes neither `2.0+cu12` nor `2.0.post1`), must agree.
fn is_known_hole(spec: &str, candidate: &str) -> bool {
    use pep440_rs::Version as V;
    let c = V::from_str(candidate).unwrap();
    let same_release =
        |v: &V| v.epoch() == c.epoch() && V::new(v.release().iter().copied()) == c.only_release();
    let release = c.only_release().with_epoch(c.epoch());
    spec.split(',').any(|clause| {
        if let Some(v) = clause.strip_prefix('>').filter(|v| !v.starts_with('=')) {
            let v = V::from_str(v).unwrap();
            same_release(&v) && c > v && (c < release || (v.is_post() && c.is_post() && c.is_local()))
        } else if let Some(v) = clause.strip_prefix('<').filter(|v| !v.starts_with('=')) {
            let v = V::from_str(v).unwrap();
            same_release(&v) && c < v && !v.is_pre() && !v.is_dev() && c.is_post() && c.is_dev()
        } else {
            false
        }
    })
}

/// Cases a generator would rarely write, from real indexes: the CUDA builds of a release against
/// its release candidate, and dev releases.
const DIRECTED: &[(&str, &str)] = &[
    (">2.1.0rc1", "2.1.0+cu121"),
    (">2.1.0rc1", "2.1.0"),
    (">2.1.0rc1", "2.1.0.post1"),
    (">2.1.0rc1.post1", "2.1.0.post1"),
    (">2.1.0rc1.post1", "2.1.0+cu121"),
    (">0.dev0", "0.dev1"),
    (">2.16.0.dev20231001", "2.16.0.dev20231002"),
    (">2.16.0.dev20231001", "2.16.0rc0"),
    (">=2.1.0rc1", "2.1.0+cu121"),
    ("<=2.1.0", "2.1.0+cu121"),
    ("<2.1.0", "2.1.0rc1"),
    ("<2.1.0", "2.1.0+cu121"),
    ("<2.1.0.post1", "2.1.0"),
    ("==2.1.*", "2.1.0.post1"),
    ("==2.1.*", "2.1.0+cu121"),
    ("!=2.1.*", "2.1.0rc1"),
    ("==2.1.0", "2.1.0+cu121"),
    ("==2.1.0+cu121", "2.1.0+cu118"),
    ("~=2.1", "2.9.1+cu121"),
    ("~=2.1.0", "2.1.9+cu121"),
    ("~=2.1.0", "2.2.0.dev0"),
    (">=8.9,<9", "8.9.7.29+cuda12"),
];

#[test]
fn matching_agrees_with_the_packaging_library_on_generated_cases() {
    let mut rng = Rng(0x5eed_0440);
    let mut questions: Vec<(String, String)> =
        DIRECTED.iter().map(|(s, v)| (s.to_string(), v.to_string())).collect();
    while questions.len() < 40_000 {
        questions.push((specifier(&mut rng), version(&mut rng)));
    }
    let mut cases = Vec::new();
    for (spec, v) in questions {
        // Only what envctl accepts is compared; its refusals are tested elsewhere.
        let (Ok(req), Ok(ver)) = (Requirement::parse(&spec), Version::parse(&v)) else { continue };
        let ours = req.matches(&ver);
        cases.push((spec, v, ours));
    }
    let input: String = cases.iter().map(|(s, v, _)| format!("{s}\t{v}\n")).collect();
    let out = ask_oracle(&input);
    let answers: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(answers.len(), cases.len());
    let (mut disagreements, mut holes, mut refused) = (Vec::new(), 0, Vec::new());
    for ((spec, v, ours), theirs) in cases.iter().zip(&answers) {
        if theirs.starts_with('E') {
            refused.push(format!("`{spec}` on {v}: {theirs}"));
        } else if (theirs == "1") != *ours {
            if *ours && is_known_hole(spec, v) {
                holes += 1;
            } else {
                disagreements.push(format!("`{spec}` on {v}: envctl {ours}, packaging {theirs}"));
            }
        }
    }
    // The generator writes only specifiers PEP 440 allows: the reference refusing one is a bug here.
    assert!(refused.is_empty(), "the reference refused {} cases:\n{}", refused.len(), refused.join("\n"));
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    // The holes are rare corners; if they stopped being rare the generator would be testing them
    // instead of the rest.
    assert!(holes * 100 < cases.len(), "{holes} of {} cases fall in the known hole", cases.len());
}
