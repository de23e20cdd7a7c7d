//! The README's examples run as written: the quickstart's two-team story over the stand-in
//! artifacts in `examples/`, and `examples/make-artifacts.py` reproducing the committed archives
//! and recipes byte for byte.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, Sandbox, copy_tracked};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A sandbox holding a copy of `examples/` (applying writes locks beside the profile files).
fn sandbox() -> Sandbox {
    sandbox_from(&examples())
}

/// A sandbox holding a copy of `src` as git tracks it (see [`copy_tracked`]).
fn sandbox_from(src: &Path) -> Sandbox {
    let sb = Sandbox::new();
    copy_tracked(src, &sb.path("examples"));
    sb
}

#[test]
fn locks_left_by_a_readme_walk_do_not_reach_the_tests_copy() {
    // A walk through the README leaves locks made with other settings beside the profiles.
    let walked = Sandbox::new();
    copy_tracked(&examples(), &walked.path("examples"));
    std::fs::write(walked.path("examples/vision.lock"), "not a lock a test could use\n").unwrap();
    std::fs::write(walked.path("examples/frameworks/torch-2.8.lock"), "nor this\n").unwrap();
    let sb = sandbox_from(&walked.path("examples"));
    assert!(
        !sb.path("examples/vision.lock").exists() && !sb.path("examples/frameworks/torch-2.8.lock").exists()
    );
    let vision = sb.path("examples/vision.toml").display().to_string();
    envctl(&sb, &["apply", &vision]).ok();
}

#[test]
fn the_stand_in_pythons_say_the_version_they_stand_for() {
    let sb = sandbox();
    let vision = sb.path("examples/vision.toml").display().to_string();
    envctl(&sb, &["apply", &vision]).ok();
    let run = envctl(&sb, &["run", "vision", "--", "python3", "--version"]);
    assert_eq!(run.ok().trim(), "Python 3.7.17 (stand-in)");
    let run = envctl(&sb, &["run", "vision", "--", "python3", "-c", "print(6 * 7)"]);
    assert_eq!(run.ok().trim(), "42");
}

fn envctl(sb: &Sandbox, args: &[&str]) -> Run {
    let recipes = sb.path("examples/recipes").display().to_string();
    let mut all = vec!["--recipes", &recipes];
    all.extend_from_slice(args);
    sb.run_env(&all, &[("ENVCTL_SYSTEM_DRIVER", "550.54.14")])
}

fn tf_version(sb: &Sandbox, profile: &str) -> String {
    let code = "import tensorflow; print(tensorflow.__version__)";
    envctl(sb, &["run", profile, "--", "python3", "-c", code]).ok().trim().to_owned()
}

#[test]
fn the_two_team_example_applies_runs_upgrades_and_rolls_back() {
    let sb = sandbox();
    let vision = sb.path("examples/vision.toml").display().to_string();
    let nlp = sb.path("examples/nlp.toml").display().to_string();
    envctl(&sb, &["apply", &vision]).ok();
    envctl(&sb, &["apply", &nlp]).ok();
    assert_eq!(tf_version(&sb, "vision"), "1.15.5");
    assert_eq!(tf_version(&sb, "nlp"), "2.15.1");
    assert_eq!(envctl(&sb, &["run", "nlp", "--", "nvcc"]).ok().trim(), "nvcc stand-in: release 12.4.131");

    let text = std::fs::read_to_string(&nlp).unwrap().replace("\"2.15\"", "\"2.16\"");
    std::fs::write(&nlp, text).unwrap();
    let out = envctl(&sb, &["apply", &nlp]);
    out.ok();
    assert!(
        out.stderr.contains("generation 2") && out.stderr.contains("tensorflow 2.15.1 -> 2.16.1"),
        "{}",
        out.stderr
    );
    assert_eq!(tf_version(&sb, "nlp"), "2.16.1");
    envctl(&sb, &["rollback", "nlp"]).ok();
    assert_eq!(tf_version(&sb, "nlp"), "2.15.1");
    assert_eq!(tf_version(&sb, "vision"), "1.15.5");

    // The rest of the README's walk, which CI also runs as an ordinary user (.ci/as-user): a
    // read-only store tree can be moved into the store, collected, repaired and optimised by
    // its owner, not only by root.
    envctl(&sb, &["generations", "nlp", "--delete", "2"]).ok();
    let gc = envctl(&sb, &["gc"]);
    gc.ok();
    assert!(!gc.stderr.contains("0 store paths"), "gc removed nothing: {}", gc.stderr);
    let tf216: Vec<String> =
        common::list(&sb.store()).into_iter().filter(|n| n.ends_with("-tensorflow-2.16.1")).collect();
    assert!(tf216.is_empty(), "{tf216:?}");
    let store = sb.store();
    let victim = common::list(&store).into_iter().find(|n| n.ends_with("-tensorflow-1.15.5")).unwrap();
    let file = common::fixture::walk(&store.join(&victim)).into_iter().find(|p| p.is_file()).unwrap();
    common::move_tree(&store.join(&victim), &sb.path("aside"));
    envctl(&sb, &["store", "verify"]).failure();
    envctl(&sb, &["store", "verify", "--repair"]).ok();
    assert!(file.is_file(), "repair did not put `{}` back", file.display());
    envctl(&sb, &["store", "optimise"]).ok();
    envctl(&sb, &["store", "verify"]).ok();
    assert_eq!(tf_version(&sb, "vision"), "1.15.5");
    // A second gc finds nothing, and the store opens again cleanly (nothing half-moved).
    envctl(&sb, &["gc"]).ok();
    assert_eq!(tf_version(&sb, "nlp"), "2.15.1");
}

#[test]
fn without_a_driver_the_example_says_how_to_pretend_one() {
    let sb = sandbox();
    let vision = sb.path("examples/vision.toml").display().to_string();
    let recipes = sb.path("examples/recipes").display().to_string();
    let out = sb.run_env(&["--recipes", &recipes, "apply", &vision], &[("ENVCTL_SYSTEM_DRIVER", "")]);
    let err = out.failed();
    assert!(err.contains("ENVCTL_SYSTEM_DRIVER=VERSION") && err.contains("vision.toml:6"), "{err}");
}

#[test]
fn make_artifacts_reproduces_the_committed_archives_and_recipes() {
    let sb = sandbox();
    // Start from nothing the script writes, so a script that wrote nothing would fail here.
    let generated = ["artifacts", "recipes/cuda", "recipes/cudnn", "recipes/python", "recipes/tensorflow"];
    for dir in &generated[1..] {
        std::fs::remove_dir_all(sb.path("examples").join(dir)).unwrap();
    }
    for e in std::fs::read_dir(sb.path("examples/artifacts")).unwrap() {
        let e = e.unwrap();
        if !e.file_name().to_string_lossy().starts_with("hello-") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let status = std::process::Command::new("python3")
        .arg(sb.path("examples/make-artifacts.py"))
        .status()
        .expect("the tests need a python3 on PATH");
    assert!(status.success());
    for dir in generated {
        for e in std::fs::read_dir(examples().join(dir)).unwrap() {
            let e = e.unwrap();
            let fresh = std::fs::read(sb.path("examples").join(dir).join(e.file_name())).unwrap();
            assert!(
                fresh == std::fs::read(e.path()).unwrap(),
                "{dir}/{:?} differs when rebuilt",
                e.file_name()
            );
        }
    }
}

#[test]
fn a_lock_made_for_a_newer_driver_is_refused_here_with_what_it_needs() {
    let sb = sandbox();
    let nlp = sb.path("examples/nlp.toml").display().to_string();
    envctl(&sb, &["apply", &nlp]).ok();
    let recipes = sb.path("examples/recipes").display().to_string();
    // After a driver downgrade, doctor names the profile that no longer fits, and why.
    envctl(&sb, &["doctor"]).ok();
    let out = sb.run_env(&["--recipes", &recipes, "doctor"], &[("ENVCTL_SYSTEM_DRIVER", "418.40")]);
    assert!(
        out.failed().contains(
            "problem: profile `nlp` (generation 1): cuda 12.4.131 needs the NVIDIA driver >=525.60.13"
        ),
        "{}",
        out.stderr
    );
    // The committed lock, applied on a second machine (its own home) with an older driver.
    let second = sb.path("second-machine").display().to_string();
    let old_driver = [("ENVCTL_SYSTEM_DRIVER", "418.40"), ("ENVCTL_HOME", second.as_str())];

    let out = sb.run_env(&["--recipes", &recipes, "apply", &nlp, "--frozen"], &old_driver);
    let err = out.failed();
    assert!(err.contains("does not fit this machine"), "{err}");
    assert!(
        err.contains("cuda 12.4.131 needs the NVIDIA driver >=525.60.13 (this machine: 418.40, from ENVCTL_SYSTEM_DRIVER)"),
        "{err}"
    );
    assert!(err.contains("--update"), "{err}");

    let out = sb.run_env(&["--recipes", &recipes, "lock", &nlp], &old_driver);
    out.ok();
    assert!(
        out.stderr.contains("up to date") && out.stderr.contains("warning: it does not fit"),
        "{}",
        out.stderr
    );
    assert!(!sb.path("second-machine/profiles/nlp").exists(), "a profile was built that cannot run");
    // A newer driver there takes the same lock as it is.
    let new_driver = [("ENVCTL_SYSTEM_DRIVER", "535.104.05"), ("ENVCTL_HOME", second.as_str())];
    sb.run_env(&["--recipes", &recipes, "apply", &nlp, "--frozen"], &new_driver).ok();
    assert!(sb.path("second-machine/profiles/nlp").exists());
}

#[test]
fn without_a_lock_the_current_generation_keeps_its_versions_while_they_fit() {
    let sb = sandbox();
    let nlp = sb.path("examples/nlp.toml").display().to_string();
    envctl(&sb, &["apply", &nlp]).ok();
    std::fs::remove_file(sb.path("examples/nlp.lock")).unwrap();
    let text = std::fs::read_to_string(&nlp).unwrap().replace("\"2.15\"", "\"2\"");
    std::fs::write(&nlp, text).unwrap();
    let out = envctl(&sb, &["apply", &nlp]);
    out.ok();
    assert!(out.stderr.contains("no package changes"), "{}", out.stderr);
    assert_eq!(tf_version(&sb, "nlp"), "2.15.1");
    // Moving on is asked for by name.
    envctl(&sb, &["lock", &nlp, "--update", "tensorflow"]).ok();
    envctl(&sb, &["apply", &nlp]).ok();
    assert_eq!(tf_version(&sb, "nlp"), "2.16.1");
}

#[test]
fn quiet_keeps_stderr_for_what_went_wrong() {
    let sb = sandbox();
    let vision = sb.path("examples/vision.toml").display().to_string();
    let out = envctl(&sb, &["-q", "apply", &vision]);
    out.ok();
    assert_eq!(out.stderr, "", "a quiet apply said something");
    let out = envctl(&sb, &["-q", "run", "vision", "--", "python3", "-c", "print('hi')"]);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("hi\n", ""));
    let out = envctl(&sb, &["-q", "rollback", "vision", "--to", "7"]);
    assert!(out.failed().contains("has no generation 7"), "{}", out.stderr);
}

#[test]
fn an_ad_hoc_environment_runs_and_its_clashes_name_the_flags() {
    let sb = sandbox();
    let code = "import tensorflow; print(tensorflow.__version__)";
    // A GC inside the session (it holds its temporary root) leaves the environment working.
    let bin = env!("CARGO_BIN_EXE_envctl");
    let inner = format!("'{bin}' -q gc && python3 -c '{code}'");
    let out = envctl(&sb, &["shell", "-p", "tensorflow=2.16", "--", "sh", "-c", &inner]);
    out.ok();
    assert_eq!(out.stdout, "2.16.1\n", "the GC inside removed something");
    // No profile keeps it: once the session is over, it is garbage.
    let profiles = envctl(&sb, &["profiles", "--json"]).ok();
    assert!(!profiles.contains("adhoc"), "{profiles}");
    let gc = envctl(&sb, &["gc"]);
    gc.ok();
    assert!(
        gc.stdout.contains("-profile-adhoc") && gc.stdout.contains("-tensorflow-2.16.1"),
        "{}",
        gc.stdout
    );
    let out = envctl(&sb, &["shell", "-p", "tensorflow=1.15", "-p", "cuda=12", "--", "true"]);
    let err = out.failed();
    assert!(err.contains("cannot resolve `-p tensorflow=1.15 -p cuda=12`"), "{err}");
    assert!(err.contains("\n  -p tensorflow=1.15\n  -p cuda=12"), "{err}");
    assert!(!err.contains("adhoc"), "the ad-hoc file leaked into the message: {err}");
}

/// Output as a user sees it (stdout, then stderr, marked when there are both), with what differs
/// between runs replaced: the sandbox's path by
/// `[SANDBOX]`, UTC timestamps (`2026-11-25T11:20:10Z`) by `[TIME]` and generations' hashes.
/// Package store paths stay: the example artifacts are deterministic, so their hashes are too.
fn seen(sb: &Sandbox, out: &Run) -> String {
    let root = sb.path("").display().to_string();
    let text = match (out.stdout.is_empty(), out.stderr.is_empty()) {
        (false, false) => format!("[stdout]\n{}[stderr]\n{}", out.stdout, out.stderr),
        _ => format!("{}{}", out.stdout, out.stderr),
    };
    let text = text.replace(root.trim_end_matches('/'), "[SANDBOX]");
    let shape = |b: u8, s: u8| match s {
        b'd' => b.is_ascii_digit(),
        _ => b == s,
    };
    let pattern = b"dddd-dd-ddTdd:dd:ddZ";
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes.len() - i >= pattern.len() && pattern.iter().zip(&bytes[i..]).all(|(s, b)| shape(*b, *s)) {
            out.push_str("[TIME]");
            i += pattern.len();
        } else {
            let ch = text[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    // A generation's hash covers its links, which name the store by its absolute path.
    let mut text = out;
    let mut from = 0;
    while let Some(at) = text[from..].find("-profile-").map(|i| from + i) {
        if at >= 32 && text.is_char_boundary(at - 32) {
            text.replace_range(at - 32..at, "[GENERATION-HASH]");
            from = at - 32 + "[GENERATION-HASH]-profile-".len();
        } else {
            from = at + 1;
        }
    }
    text
}

/// `seen`, with byte counts (`1.4 KiB`, `416 B`) replaced by `[SIZE]`: a generation's size is
/// the length of its links, which depends on where the sandbox is.
fn seen_without_sizes(sb: &Sandbox, out: &Run) -> String {
    let text = seen(sb, out);
    let mut result = String::new();
    let mut rest = text.as_str();
    while let Some(at) = [" B", " KiB", " MiB", " GiB"]
        .iter()
        .filter_map(|unit| {
            let at = rest.find(unit)?;
            let end = at + unit.len();
            let bounded = rest[end..].chars().next().is_none_or(|c| !c.is_alphanumeric());
            bounded.then_some((at, end))
        })
        .min()
    {
        let (at, end) = at;
        let start = rest[..at].trim_end_matches(|c: char| c.is_ascii_digit() || c == '.').len();
        if start < at {
            result.push_str(&rest[..start]);
            result.push_str("[SIZE]");
        } else {
            result.push_str(&rest[..end]);
        }
        rest = &rest[end..];
    }
    result.push_str(rest);
    result
}

#[test]
fn what_a_user_sees_through_the_two_team_story() {
    let sb = sandbox();
    let vision = sb.path("examples/vision.toml").display().to_string();
    let nlp = sb.path("examples/nlp.toml").display().to_string();

    insta::assert_snapshot!("dry_run", seen(&sb, &envctl(&sb, &["apply", &vision, "--dry-run"])));
    insta::assert_snapshot!("apply_vision", seen(&sb, &envctl(&sb, &["apply", &vision])));
    let lock = std::fs::read_to_string(sb.path("examples/vision.lock")).unwrap();
    insta::assert_snapshot!("vision_lock", lock.replace(&sb.path("").display().to_string(), "[SANDBOX]/"));
    envctl(&sb, &["apply", &nlp]).ok();
    let text = std::fs::read_to_string(&nlp).unwrap().replace("\"2.15\"", "\"2.16\"");
    std::fs::write(&nlp, text).unwrap();
    insta::assert_snapshot!("upgrade_nlp", seen(&sb, &envctl(&sb, &["apply", &nlp])));
    insta::assert_snapshot!("generations_nlp", seen(&sb, &envctl(&sb, &["generations", "nlp"])));
    insta::assert_snapshot!("profiles", seen_without_sizes(&sb, &envctl(&sb, &["profiles"])));
    insta::assert_snapshot!("why_cudnn", seen(&sb, &envctl(&sb, &["why", &vision, "cudnn"])));
    insta::assert_snapshot!("why_cudnn_in_profile", seen(&sb, &envctl(&sb, &["why", "vision", "cudnn"])));
    insta::assert_snapshot!("list_vision", seen_without_sizes(&sb, &envctl(&sb, &["list", "vision"])));
    insta::assert_snapshot!("list_tree_vision", seen(&sb, &envctl(&sb, &["list", "vision", "--tree"])));
    insta::assert_snapshot!("outdated_vision", seen(&sb, &envctl(&sb, &["outdated", &vision])));
    envctl(&sb, &["rollback", "nlp"]).ok();
    envctl(&sb, &["generations", "nlp", "--delete", "2"]).ok();
    insta::assert_snapshot!("gc", seen_without_sizes(&sb, &envctl(&sb, &["gc"])));
}

#[test]
fn what_a_user_sees_when_something_does_not_fit() {
    let sb = sandbox();
    let clash = envctl(&sb, &["shell", "-p", "tensorflow=1.15", "-p", "cuda=12", "--", "true"]);
    insta::assert_snapshot!("clash", seen(&sb, &clash));
    let nlp = sb.path("examples/nlp.toml").display().to_string();
    let recipes = sb.path("examples/recipes").display().to_string();
    let old = sb.run_env(&["--recipes", &recipes, "lock", &nlp], &[("ENVCTL_SYSTEM_DRIVER", "418.40")]);
    insta::assert_snapshot!("old_driver", seen(&sb, &old));
    let typo = envctl(&sb, &["shell", "-p", "tensorflw=2", "--", "true"]);
    insta::assert_snapshot!("typo", seen(&sb, &typo));
}
