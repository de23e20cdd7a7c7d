//! End-to-end tests of `envctl lock|why|graph|search|show|doctor` on the fixture repository.

mod common;

use std::path::{Path, PathBuf};

use common::{Run, Sandbox, copy_dir};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/recipes")
}

/// A modern machine: CUDA 12 driver, an Ampere GPU.
const MODERN: &[(&str, &str)] =
    &[("ENVCTL_SYSTEM_DRIVER", "535.104.05"), ("ENVCTL_SYSTEM_SM", "8.6"), ("ENVCTL_SYSTEM_GLIBC", "2.35")];

fn run(sb: &Sandbox, args: &[&str]) -> Run {
    let repo = fixtures();
    let mut all = vec!["--recipes", repo.to_str().unwrap()];
    all.extend_from_slice(args);
    sb.run_env(&all, MODERN)
}

fn write(sb: &Sandbox, name: &str, text: &str) -> String {
    let p = sb.path(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn locked_versions(lock: &str) -> Vec<(String, String)> {
    let v: toml::Value = toml::from_str(lock).unwrap();
    v["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["version"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn tf1_and_tf2_lock_to_their_own_stacks() {
    let sb = Sandbox::new();
    let tf1 = write(&sb, "vision.toml", "[packages]\ntensorflow = \"1.15\"\n");
    let tf2 = write(&sb, "nlp.toml", "[packages]\ntensorflow = \"2\"\n");
    run(&sb, &["lock", &tf1]).ok();
    run(&sb, &["lock", &tf2]).ok();
    let one = locked_versions(&std::fs::read_to_string(sb.path("vision.lock")).unwrap());
    let two = locked_versions(&std::fs::read_to_string(sb.path("nlp.lock")).unwrap());
    let get = |l: &[(String, String)], n: &str| l.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get(&one, "cuda"), "10.0.130");
    assert_eq!(get(&one, "cudnn"), "7.6.5.32+cuda10.0");
    assert_eq!(get(&one, "python"), "3.7.17");
    assert_eq!(get(&two, "tensorflow"), "2.15.0");
    assert_eq!(get(&two, "cuda"), "12.4.127");
}

#[test]
fn the_same_request_locked_twice_gives_identical_bytes_and_a_fresh_lock_is_reused() {
    let sb = Sandbox::new();
    let file = write(&sb, "vision.toml", "[packages]\ntensorflow = \"1.15\"\n");
    run(&sb, &["lock", &file]).ok();
    let first = std::fs::read(sb.path("vision.lock")).unwrap();
    std::fs::remove_file(sb.path("vision.lock")).unwrap();
    run(&sb, &["lock", &file]).ok();
    assert_eq!(std::fs::read(sb.path("vision.lock")).unwrap(), first);
    let again = run(&sb, &["lock", &file]);
    again.ok();
    assert!(again.stderr.contains("is up to date"), "{}", again.stderr);
    run(&sb, &["lock", &file, "--update"]).ok();
    assert_eq!(std::fs::read(sb.path("vision.lock")).unwrap(), first);

    // A changed request makes the lock stale; it is re-resolved.
    write(&sb, "vision.toml", "[packages]\ntensorflow = \"1.15\"\npython = \"3.7\"\n");
    let out = run(&sb, &["lock", &file]);
    out.ok();
    assert!(!out.stderr.contains("up to date"), "{}", out.stderr);
    assert_ne!(std::fs::read(sb.path("vision.lock")).unwrap(), first);
}

#[test]
fn update_of_one_package_moves_only_what_it_must() {
    let sb = Sandbox::new();
    // Start with a repository where TensorFlow 2.12 (CUDA 11.8) is the newest.
    let newer = sb.path("newer");
    std::fs::create_dir_all(&newer).unwrap();
    let file = write(&sb, "nlp.toml", "[packages]\ntensorflow = \"2\"\npython = \"3\"\n");
    let hide = sb.path("base");
    copy_dir(&fixtures(), &hide);
    std::fs::remove_file(hide.join("tensorflow/2.15.0.toml")).unwrap();
    let lock = |extra: &[&str]| {
        let mut args =
            vec!["--recipes", hide.to_str().unwrap(), "--recipes", newer.to_str().unwrap(), "lock", &file];
        args.extend_from_slice(extra);
        sb.run_env(&args, MODERN)
    };
    lock(&[]).ok();
    let before = locked_versions(&std::fs::read_to_string(sb.path("nlp.lock")).unwrap());
    assert!(before.contains(&("tensorflow".into(), "2.12.0".into())), "{before:?}");
    assert!(before.contains(&("cuda".into(), "11.8.89".into())), "{before:?}");
    assert!(before.contains(&("python".into(), "3.11.4".into())), "{before:?}");

    // New releases appear in the repository: TensorFlow 2.15 and Python 3.11.9. (In another,
    // higher repository they would hide every other version of their names.)
    std::fs::copy(fixtures().join("tensorflow/2.15.0.toml"), hide.join("tf-2.15.0.toml")).unwrap();
    let py =
        std::fs::read_to_string(fixtures().join("python/3.11.4.toml")).unwrap().replace("3.11.4", "3.11.9");
    std::fs::write(hide.join("py-3.11.9.toml"), py).unwrap();
    let out = lock(&["--update", "tensorflow"]);
    out.ok();
    let after = locked_versions(&std::fs::read_to_string(sb.path("nlp.lock")).unwrap());
    // TensorFlow moves, and must take CUDA 12 and the CUDA 12 cuDNN with it; Python need not move.
    assert!(after.contains(&("tensorflow".into(), "2.15.0".into())), "{after:?}");
    assert!(after.contains(&("cuda".into(), "12.4.127".into())), "{after:?}");
    assert!(after.contains(&("cudnn".into(), "8.9.7.29+cuda12".into())), "{after:?}");
    assert!(after.contains(&("python".into(), "3.11.4".into())), "{after:?}");
    assert!(out.stderr.contains("~ tensorflow 2.12.0 -> 2.15.0"), "{}", out.stderr);
    assert!(!out.stderr.contains("~ python"), "{}", out.stderr);

    // Updating everything moves Python too.
    lock(&["--update"]).ok();
    let all = locked_versions(&std::fs::read_to_string(sb.path("nlp.lock")).unwrap());
    assert!(all.contains(&("python".into(), "3.11.9".into())), "{all:?}");

    let out = lock(&["--update", "nonesuch"]);
    assert!(out.failed().contains("`nonesuch` is neither in"), "{}", out.stderr);
}

#[test]
fn a_clash_names_both_profile_lines() {
    let sb = Sandbox::new();
    let file =
        write(&sb, "vision.toml", "name = \"vision\"\n[packages]\ntensorflow = \"1.15\"\ncuda = \"11.8\"\n");
    let out = run(&sb, &["lock", &file]);
    let err = out.failed();
    assert!(err.contains(&format!("{file}:3: tensorflow = \"1.15\"")), "{err}");
    assert!(err.contains(&format!("{file}:4: cuda = \"11.8\"")), "{err}");
    assert!(!sb.path("vision.lock").exists());
}

#[test]
fn an_old_driver_is_named_with_how_to_override_it() {
    let sb = Sandbox::new();
    let file = write(&sb, "nlp.toml", "[packages]\ncuda = \"11\"\n");
    let repo = fixtures();
    let out = sb.run_env(
        &["--recipes", repo.to_str().unwrap(), "lock", &file],
        &[("ENVCTL_SYSTEM_DRIVER", "418.40")],
    );
    let err = out.failed();
    assert!(err.contains("418.40") && err.contains("too old"), "{err}");
    assert!(err.contains("hint:") && err.contains("ENVCTL_SYSTEM_DRIVER=VERSION"), "{err}");

    // --system FILE resolves for another machine.
    let system = write(&sb, "cluster.toml", "driver = \"535.104.05\"\nsm = [\"8.0\", \"9.0\"]\n");
    sb.run_env(
        &["--recipes", repo.to_str().unwrap(), "--system", &system, "lock", &file],
        &[("ENVCTL_SYSTEM_DRIVER", "418.40")],
    )
    .ok();
}

#[test]
fn a_typo_suggests_the_nearest_name() {
    let sb = Sandbox::new();
    let file = write(&sb, "v.toml", "[packages]\ntensorflw = \"1.15\"\n");
    let out = run(&sb, &["lock", &file]);
    assert!(out.failed().contains("did you mean `tensorflow`"), "{}", out.stderr);
    let out = run(&sb, &["show", "tensorflw"]);
    assert!(out.failed().contains("`tensorflow`"), "{}", out.stderr);
}

#[test]
fn why_graph_search_and_show_describe_the_resolution() {
    let sb = Sandbox::new();
    let file = write(&sb, "vision.toml", "[packages]\ntensorflow = \"1.15\"\n");
    let why = run(&sb, &["why", &file, "cuda"]);
    why.ok();
    assert!(
        why.stdout.contains("tensorflow 1.15.5") && why.stdout.contains("└─ cuda 10.0.130"),
        "{}",
        why.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&run(&sb, &["why", &file, "cudnn", "--json"]).stdout).unwrap();
    assert_eq!(json["chain"][1]["version"], "7.6.5.32+cuda10.0");
    let out = run(&sb, &["why", &file, "pytorch"]);
    assert!(out.failed().contains("not part of the resolution"), "{}", out.stderr);

    let dot = run(&sb, &["graph", &file, "--dot"]);
    assert!(
        dot.stdout.starts_with("digraph") && dot.stdout.contains("\"tensorflow\" -> \"cudnn\";"),
        "{}",
        dot.stdout
    );
    let graph: serde_json::Value =
        serde_json::from_str(&run(&sb, &["graph", &file, "--json"]).stdout).unwrap();
    let names: Vec<&str> = graph.as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names.last(), Some(&"tensorflow"), "dependencies come first: {names:?}");

    let search: serde_json::Value =
        serde_json::from_str(&run(&sb, &["search", "cudnn", "--json"]).stdout).unwrap();
    assert_eq!(search[0]["name"], "cudnn");
    assert_eq!(search[0]["versions"], 5);
    let show: serde_json::Value =
        serde_json::from_str(&run(&sb, &["show", "cudnn@8.9", "--json"]).stdout).unwrap();
    // The fixture repository's two cuDNN 8.9 variants, then the bundled ones it hides.
    let shown: Vec<(&str, bool)> = show
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["version"].as_str().unwrap(), r["hidden"] == true))
        .collect();
    assert_eq!(
        shown,
        [
            ("8.9.7.29+cuda12", false),
            ("8.9.7.29+cuda11", false),
            ("8.9.7.29+cuda12", true),
            ("8.9.7.29+cuda11", true),
            ("8.9.7.29+conda.hbc23b4c_3", true)
        ]
    );
}

#[test]
fn the_bundled_repository_is_embedded_and_doctor_reports_facts_with_origins() {
    let sb = Sandbox::new();
    let out = sb.run(&["show", "cuda-cudart@12.4", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        json[0]["sources"][0]["sha256"],
        "0483bff9a36e7a44465db3cd42874f6f70f019297dcf803fbefcbf58d7448c8f"
    );
    assert!(json[0]["recipe"].as_str().unwrap().starts_with("<bundled>/"));

    let doctor = sb.run_env(
        &["doctor", "--json"],
        &[("ENVCTL_SYSTEM_DRIVER", "470.57.02"), ("ENVCTL_SYSTEM_SM", "7.5,8.6")],
    );
    let facts: serde_json::Value = serde_json::from_str(&doctor.stdout).unwrap();
    assert_eq!(facts["driver"], "470.57.02");
    assert_eq!(facts["cuda"], "11.8");
    assert_eq!(facts["sm"], serde_json::json!(["7.5", "8.6"]));
    assert_eq!(facts["origin"]["driver"], "ENVCTL_SYSTEM_DRIVER");
    // An empty ENVCTL_SYSTEM_DRIVER means "no driver".
    let none: serde_json::Value =
        serde_json::from_str(&sb.run_env(&["doctor", "--json"], &[("ENVCTL_SYSTEM_DRIVER", "")]).stdout)
            .unwrap();
    assert!(none["driver"].is_null() && none["cuda"].is_null(), "{none}");

    // A lock made for a CUDA 12 machine does not fit a CUDA 11 driver.
    let file = write(&sb, "nlp.toml", "[packages]\ntensorflow = \"2.15\"\n");
    run(&sb, &["lock", &file]).ok();
    let repo = fixtures();
    let out = sb.run_env(
        &["--recipes", repo.to_str().unwrap(), "doctor", &file],
        &[("ENVCTL_SYSTEM_DRIVER", "470.57.02")],
    );
    assert!(
        out.failed()
            .contains("cuda 12.4.127 needs a driver supporting CUDA >=12.4 (this machine: 11.8, from"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_bad_recipe_is_named_by_file_line_and_key() {
    let sb = Sandbox::new();
    let repo = sb.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("broken.toml"),
        "name = \"broken\"\nversion = \"1.0\"\n[dependencies]\ncuda = \">=11,<12x\"\n[[source]]\nurl = \"https://example.invalid/b.tar\"\nsha256 = \"00\"\n",
    )
    .unwrap();
    let out = sb.run(&["--recipes", repo.to_str().unwrap(), "search", "x"]);
    let err = out.failed();
    assert!(
        err.contains("broken.toml") && err.contains("line 4") && err.contains("dependencies.cuda"),
        "{err}"
    );
}

#[test]
fn a_missing_profile_file_is_named_with_its_cause_once() {
    let sb = Sandbox::new();
    let out = run(&sb, &["lock", "/nonexistent/vision.toml"]);
    let err = out.failed();
    assert!(err.contains("cannot read the profile file `/nonexistent/vision.toml`"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("hint: give the path of a profile file"), "{err}");
}

/// A directory holding a stand-in `nvidia-smi`, and PATH with it first.
fn fake_nvidia_smi(sb: &Sandbox) -> String {
    let bin = sb.path("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Answers the two queries envctl makes, the way nvidia-smi prints them, and fails on others.
    let script = "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/calls\"\ncase \"$1 $2\" in\n  '--query-gpu=driver_version --format=csv,noheader') printf '550.54.14\\n550.54.14\\n' ;;\n  '--query-gpu=compute_cap --format=csv,noheader') printf '8.6\\n7.5\\n' ;;\n  *) exit 6 ;;\nesac\n";
    let smi = bin.join("nvidia-smi");
    std::fs::write(&smi, script).unwrap();
    std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

#[test]
fn facts_are_detected_through_nvidia_smi_when_the_kernel_files_are_absent() {
    let sb = Sandbox::new();
    let path = fake_nvidia_smi(&sb);
    let out = sb.run_env(&["doctor", "--json"], &[("PATH", &path)]);
    let facts: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    // The kernel's own files win when this machine has them; the GPUs come from nvidia-smi either way.
    let kernel = ["/sys/module/nvidia/version", "/proc/driver/nvidia/version"]
        .into_iter()
        .find(|f| Path::new(f).exists());
    match kernel {
        Some(file) => assert_eq!(facts["origin"]["driver"], file, "{facts}"),
        None => {
            assert_eq!(facts["driver"], "550.54.14", "{facts}");
            assert_eq!(facts["origin"]["driver"], "nvidia-smi", "{facts}");
            assert!(facts["cuda"].as_str().is_some_and(|c| c.starts_with("12.")), "{facts}");
        }
    }
    assert_eq!(facts["sm"], serde_json::json!(["8.6", "7.5"]), "{facts}");
    assert_eq!(facts["origin"]["sm"], "nvidia-smi", "{facts}");
}

#[test]
fn facts_every_override_sets_are_not_detected() {
    let sb = Sandbox::new();
    let path = fake_nvidia_smi(&sb);
    let calls = sb.path("fake-bin/calls");
    let overridden =
        [("PATH", path.as_str()), ("ENVCTL_SYSTEM_DRIVER", "535.104.05"), ("ENVCTL_SYSTEM_SM", "8.0")];
    let out = sb.run_env(&["doctor", "--json"], &overridden);
    let facts: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(facts["sm"], serde_json::json!(["8.0"]), "{facts}");
    assert!(!calls.exists(), "nvidia-smi ran: {}", std::fs::read_to_string(&calls).unwrap_or_default());
    // The driver alone overridden: the GPUs are still asked for, the driver is not.
    let out = sb.run_env(&["doctor", "--json"], &overridden[..2]);
    let facts: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(facts["sm"], serde_json::json!(["8.6", "7.5"]), "{facts}");
    assert_eq!(std::fs::read_to_string(&calls).unwrap(), "--query-gpu=compute_cap --format=csv,noheader\n");
}

#[test]
fn the_highest_cuda_comes_from_nvml_when_it_loads() {
    let sb = Sandbox::new();
    let path = fake_nvidia_smi(&sb);
    // A stand-in NVML with the three entry points envctl calls, built with the C compiler that
    // links Rust programs on this platform.
    let lib = sb.path("fake-lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(
        lib.join("nvml.c"),
        "int nvmlInit_v2(void) { return 0; }\n\
         int nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 12040; return 0; }\n\
         int nvmlShutdown(void) { return 0; }\n",
    )
    .unwrap();
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o", "libnvidia-ml.so.1", "nvml.c"])
        .current_dir(&lib)
        .status()
        .expect("cc, the linker Rust uses here, builds the stand-in NVML");
    assert!(status.success());
    let lib = lib.display().to_string();
    let out = sb.run_env(&["doctor", "--json"], &[("PATH", &path), ("LD_LIBRARY_PATH", &lib)]);
    let facts: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(facts["cuda"], "12.4", "{facts}");
    assert_eq!(facts["origin"]["cuda"], "NVML", "{facts}");
}

#[test]
fn a_team_repository_hides_every_bundled_version_of_a_name_it_defines_and_show_says_so() {
    let sb = Sandbox::new();
    let team = sb.path("team");
    std::fs::create_dir_all(&team).unwrap();
    for v in ["10.0.130", "11.8.89", "12.4.127"] {
        std::fs::write(
            team.join(format!("cuda-cudart-{v}.toml")),
            format!(
                "name = \"cuda-cudart\"\nversion = \"{v}\"\n[[source]]\nurl = \"https://mirror.team.example/cudart-{v}.tar.xz\"\nsha256 = \"{}\"\n",
                "1".repeat(64)
            ),
        )
        .unwrap();
    }
    let p = write(&sb, "team.toml", "[packages]\ncuda-cudart = \"*\"\n");
    // Without the team repository the bundled 12.8.90 is the newest.
    let r = sb.run_env(&["lock", &p], MODERN);
    r.ok();
    assert!(std::fs::read_to_string(sb.path("team.lock")).unwrap().contains("12.8.90"));
    std::fs::remove_file(sb.path("team.lock")).unwrap();
    let r = sb.run_env(&["--recipes", team.to_str().unwrap(), "lock", &p], MODERN);
    r.ok();
    let lock = std::fs::read_to_string(sb.path("team.lock")).unwrap();
    assert!(lock.contains("version = \"12.4.127\"") && lock.contains("mirror.team.example"), "{lock}");
    let show = sb.run_env(&["--recipes", team.to_str().unwrap(), "show", "cuda-cudart"], MODERN);
    show.ok();
    assert!(
        show.stdout.contains(&format!("recipe:       {}", team.join("cuda-cudart-12.4.127.toml").display())),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("hidden by the repository above"), "{}", show.stdout);
    assert!(show.stdout.contains("cuda-cudart 12.8.90    (<bundled>/"), "{}", show.stdout);
    let json = sb.run_env(&["--recipes", team.to_str().unwrap(), "show", "cuda-cudart", "--json"], MODERN);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let hidden: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["hidden"] == true)
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(hidden, ["12.8.90", "12.6.77", "12.4.127", "11.8.89"]);
}

#[test]
fn lock_says_when_a_recipes_source_changed_under_the_same_version_and_how_to_take_it() {
    let f = common::fixture::Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.run(&["lock", &p]).success();
    let before = std::fs::read_to_string(f.sb.path("p.lock")).unwrap();
    // The publisher replaces hello 1.0: same version, another archive.
    let other =
        envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("bin/hello", "other")).tar_gz();
    let sha = f.publish("hello", "1.0", &other, "");
    let run = f.run(&["lock", &p]).failure();
    let e = run.failed();
    assert!(e.contains("p.lock` no longer matches its recipes") && e.contains("hello 1.0"), "{e}");
    assert!(e.contains(&sha) && e.contains("--update hello"), "{e}");
    assert!(!run.stderr.contains("up to date"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(f.sb.path("p.lock")).unwrap(), before, "the lock was rewritten");
    f.run(&["lock", &p, "--update", "hello"]).success();
    assert!(std::fs::read_to_string(f.sb.path("p.lock")).unwrap().contains(&sha));
    f.run(&["lock", &p]).success();
}
