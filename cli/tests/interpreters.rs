//! CPython from python-build-standalone-shaped archives: metadata in uv's format listing fixture
//! builds with the project's layouts (`python/` for install_only builds, `python/install/` inside
//! a full build), imported with `envctl import python-build-standalone` and served through a
//! loopback mirror.

mod common;

use common::fixture::Fixture;
use envctl_testkit::{Archive, Entry, sha256_hex};

const ROOT: &str = "https://github.com/astral-sh/python-build-standalone/releases/download";

#[test]
fn install_only_and_full_builds_unpack_to_a_python_on_the_session_path() {
    let f = Fixture::new();
    let stand_in = |version: &str| format!("#!/bin/sh\necho Python {version}\n");
    // 3.11: an install_only build, everything under python/.
    let install_only = Archive::new()
        .with(Entry::file_mode("python/bin/python3.11", stand_in("3.11.9"), 0o755))
        .with(Entry::symlink("python/bin/python3", "python3.11"))
        .with(Entry::file("python/lib/python3.11/os.py", "# os"))
        .tar_gz();
    // 3.7: a full build: the interpreter under python/install/, build debris beside it.
    let full = Archive::new()
        .with(Entry::file("python/PYTHON.json", "{}"))
        .with(Entry::file("python/build/lib/junk.o", "object"))
        .with(Entry::file_mode("python/install/bin/python3.7m", stand_in("3.7.9"), 0o755))
        .with(Entry::symlink("python/install/bin/python3", "python3.7m"))
        .with(Entry::file("python/install/lib/python3.7/os.py", "# os"))
        .tar_zst();
    let install_name = "cpython-3.11.9%2B20240814-x86_64-unknown-linux-gnu-install_only_stripped.tar.gz";
    let full_name = "cpython-3.7.9-x86_64-unknown-linux-gnu-pgo-20200823T0036.tar.zst";
    f.server.serve(&format!("/pbs/20240814/{install_name}"), install_only.clone());
    f.server.serve(&format!("/pbs/20200822/{full_name}"), full.clone());
    let metadata = serde_json::json!({
        "cpython-3.11.9-linux-x86_64-gnu": {
            "name": "cpython", "arch": {"family": "x86_64", "variant": null}, "os": "linux", "libc": "gnu",
            "major": 3, "minor": 11, "patch": 9, "prerelease": "",
            "url": format!("{ROOT}/20240814/{install_name}"), "sha256": sha256_hex(&install_only),
            "variant": null, "build": "20240814"
        },
        "cpython-3.11.9-linux-x86_64_v3-gnu": {
            "name": "cpython", "arch": {"family": "x86_64", "variant": "v3"}, "os": "linux", "libc": "gnu",
            "major": 3, "minor": 11, "patch": 9, "prerelease": "",
            "url": format!("{ROOT}/20240814/other.tar.gz"), "sha256": "0".repeat(64), "variant": null
        },
    });
    let pin = serde_json::json!({
        "name": "cpython", "major": 3, "minor": 7, "patch": 9, "os": "linux", "arch": "x86_64", "libc": "gnu",
        "url": format!("{ROOT}/20200822/{full_name}"), "sha256": sha256_hex(&full),
        "archive_layout": {"strip_prefix": "python/install"}
    });
    std::fs::write(f.sb.path("download-metadata.json"), metadata.to_string()).unwrap();
    std::fs::write(f.sb.path("cpython-3.7.9.pin.json"), pin.to_string()).unwrap();
    let team = f.sb.path("team");
    let files = [f.sb.path("download-metadata.json"), f.sb.path("cpython-3.7.9.pin.json")];
    let args: Vec<&str> = ["import", "python-build-standalone"]
        .into_iter()
        .chain(files.iter().map(|p| p.to_str().unwrap()))
        .chain(["--out", team.to_str().unwrap()])
        .collect();
    f.run(&args).ok();
    let versions: Vec<String> = common::list(&team.join("python"));
    assert_eq!(versions, ["3.11.9.toml", "3.7.9.toml"], "the v3 micro-architecture build is left out");
    std::fs::write(
        f.sb.path("config.toml"),
        format!(
            "recipes = [\"{}\"]\n[mirrors]\npython-build-standalone = [\"{}\"]\n",
            team.display(),
            f.server.url("/pbs")
        ),
    )
    .unwrap();
    for (profile, series, want) in [("old", "3.7", "Python 3.7.9"), ("new", "3.11", "Python 3.11.9")] {
        let p = f.profile(profile, &format!("[packages]\npython = \"{series}\"\n"));
        f.run(&["apply", &p]).ok();
        assert_eq!(f.run(&["run", profile, "--", "python3"]).ok(), want);
    }
    let old = std::fs::canonicalize(f.profiles_dir().join("old")).unwrap();
    assert!(old.join("lib/python3.7/os.py").exists());
    assert!(
        !old.join("PYTHON.json").exists() && !old.join("build").exists() && !old.join("install").exists()
    );
}

#[test]
fn import_python_makes_this_machines_interpreter_relocatable_and_a_profile_runs_it_with_no_environment() {
    let (version, prefix) = envctl_testkit::python::find_python("3.11");
    let sb = common::Sandbox::new();
    let made = sb.path("made");
    let out =
        sb.run(&["import", "python", &prefix.display().to_string(), "--out", &made.display().to_string()]);
    let out = out.success();
    assert!(out.stderr.contains(&format!("python {version} from {}", prefix.display())), "{}", out.stderr);
    assert!(out.stderr.contains("a copy unpacked elsewhere ran as the same build"), "{}", out.stderr);
    let recipe = std::fs::read_to_string(made.join(format!("python/{version}.toml"))).unwrap();
    assert!(
        recipe.contains(&format!("version = \"{version}\"")) && recipe.contains("url = \"../artifacts/"),
        "{recipe}"
    );

    // The repository moves (another machine's path); a profile takes its interpreter.
    let moved = sb.path("elsewhere/team-recipes");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&made, &moved).unwrap();
    sb.config(&format!("recipes = [\"{}\"]", moved.display()));
    let p = sb.path("py.toml");
    std::fs::write(&p, format!("[packages]\npython = \"{version}\"\n")).unwrap();
    sb.run(&["apply", &p.display().to_string()]).success();
    let python = sb.path("envctl/profiles/py/bin/python3");
    let host = std::process::Command::new(prefix.join("bin/python3.11"))
        .args(["-c", "import sys; print(sys.version)"])
        .output()
        .unwrap();
    let ran = std::process::Command::new(&python)
        .args(["-c", "import sys, ssl, sqlite3, ctypes; print(sys.version)"])
        .env_clear()
        .output()
        .unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(ran.stdout, host.stdout, "the same build, its own libpython");
    // The dynamic loader finds libpython inside the store path, not at the old prefix (an
    // interpreter with libpython linked in, as Debian's, needs none: so must its copy).
    let ldd = |exe: &std::path::Path| {
        let out = std::process::Command::new("ldd").arg(exe).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let copy = ldd(&std::fs::canonicalize(&python).unwrap());
    match copy.lines().find(|l| l.contains("libpython")) {
        Some(line) => assert!(
            line.contains(&sb.store().display().to_string()) && !line.contains(&prefix.display().to_string()),
            "{copy}"
        ),
        None => assert!(!ldd(&prefix.join("bin/python3.11")).contains("libpython"), "{copy}"),
    }

    // What cannot be made relocatable is refused, saying why.
    let err = sb.run(&["import", "python", "/nonexistent/python3", "--out", &made.display().to_string()]);
    assert!(err.failed().contains("/nonexistent/python3"));
}
