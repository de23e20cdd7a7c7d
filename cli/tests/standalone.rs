//! A profile works without a session (issue 26): job scripts, IDEs and Jupyter start the
//! profile's `bin/python3`, or a script's `#!`, with none of the session's variables. The
//! frameworks' wheels find each other's libraries through run paths relative to themselves
//! (`$ORIGIN/../../nvidia/cublas/lib`); those climbs must end inside the profile.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixture::Fixture;
use envctl_testkit::python::Wheel;

/// Compiles `libdep.so` (`dep_answer` gives 42) and `libfw.so` (`fw_answer` calls it), whose run
/// path is `$ORIGIN/../../nvidia/dep/lib`, the way torch's libraries reach NVIDIA's wheels.
fn libraries(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let compile = |args: &[&str]| {
        let out = Command::new(&cc)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("this test needs a C compiler (`{cc}`): {e}"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(dir.join("dep.c"), "int dep_answer(void) { return 42; }\n").unwrap();
    std::fs::write(dir.join("fw.c"), "int dep_answer(void);\nint fw_answer(void) { return dep_answer(); }\n")
        .unwrap();
    compile(&["-shared", "-fPIC", "-o", "libdep.so", "dep.c"]);
    compile(&[
        "-shared",
        "-fPIC",
        "-o",
        "libfw.so",
        "fw.c",
        "-L.",
        "-ldep",
        "-Wl,-rpath,$ORIGIN/../../nvidia/dep/lib",
    ]);
    (std::fs::read(dir.join("libfw.so")).unwrap(), std::fs::read(dir.join("libdep.so")).unwrap())
}

/// A profile `fw` of a framework-shaped wheel and the NVIDIA-shaped wheel it loads; returns the
/// profile's directory.
fn framework_profile(f: &Fixture) -> PathBuf {
    f.publish_python("3.11");
    let build = f.sb.path("build");
    std::fs::create_dir_all(&build).unwrap();
    let (fw_lib, dep_lib) = libraries(&build);
    let dep = Wheel::new("nvidia-dep-cu12", "12.4.1", "py3-none-any")
        .file("nvidia/__init__.py", "")
        .file("nvidia/dep/__init__.py", "")
        .file("nvidia/dep/lib/libdep.so", dep_lib);
    let fw = Wheel::new("fw", "2.1.0", "py3-none-any")
        .file(
            "fw/__init__.py",
            "import ctypes, os, sys\n\
             _lib = ctypes.CDLL(os.path.join(os.path.dirname(__file__), 'lib', 'libfw.so'))\n\
             def answer():\n    return _lib.fw_answer()\n\
             def main():\n    print(answer())\n    return 0\n",
        )
        .file("fw/lib/libfw.so", fw_lib)
        .console_script("fw-answer", "fw:main")
        .requires("nvidia-dep-cu12");
    f.publish_wheel(&dep, &dep.build(), "python = \">=3.7\"");
    f.publish_wheel(&fw, &fw.build(), "nvidia-dep-cu12 = \"*\"\npython = \">=3.7\"");
    let p = f.profile("fw", "[packages]\nfw = \"*\"\npython = \"3.11\"\n");
    f.run(&["apply", &p]).success();
    f.profiles_dir().join("fw")
}

fn bare(program: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("env").arg("-i").arg(program).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_profiles_python_loads_a_frameworks_libraries_with_an_empty_environment() {
    let f = Fixture::new();
    let profile = framework_profile(&f);
    let (ok, out, err) = bare(&profile.join("bin/python3"), &["-c", "import fw; print(fw.answer())"]);
    assert!(ok && out == "42", "{out}\n{err}");
    // An entry-point script run by its path: its `#!` is the profile's Python.
    let (ok, out, err) = bare(&profile.join("bin/fw-answer"), &[]);
    assert!(ok && out == "42", "{out}\n{err}");
    // Through the generation's own store path too (a job script may hold that).
    let generation = std::fs::canonicalize(&profile).unwrap();
    let (ok, out, err) = bare(&generation.join("bin/python3"), &["-c", "import fw; print(fw.answer())"]);
    assert!(ok && out == "42", "{out}\n{err}");
    // The directory the climb starts from is a real one in the farm; the rest stays linked.
    let site = generation.join("lib/python3.11/site-packages");
    assert!(std::fs::symlink_metadata(site.join("fw/lib")).unwrap().is_dir());
    assert!(std::fs::symlink_metadata(site.join("fw/lib/libfw.so")).unwrap().file_type().is_symlink());
    assert!(std::fs::symlink_metadata(site.join("nvidia")).unwrap().file_type().is_symlink());
    f.run(&["store", "verify"]).success();
}

/// Issue 26, 2: `python` is the profile's Python, as in a venv; `pip` says the profile is
/// read-only and what to run instead, and changes nothing.
#[test]
fn python_is_the_profiles_and_pip_says_what_to_run_instead() {
    let f = Fixture::new();
    let profile = framework_profile(&f);
    let (ok, out, err) =
        bare(&profile.join("bin/python"), &["-c", "import fw, sys; print(fw.answer(), sys.prefix)"]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("42 {}", profile.display()));
    let out = f.run(&["run", "fw", "--", "python", "-c", "import fw; print(fw.answer())"]).success();
    assert_eq!(out.stdout.trim(), "42");

    let store = f.sb.path("envctl/store");
    let before = common::fixture::walk(&store).len();
    for pip in ["pip", "pip3", "pip3.11"] {
        let (ok, _, err) = bare(&profile.join("bin").join(pip), &["install", "requests"]);
        assert!(!ok, "`{pip} install` succeeded");
        assert!(err.contains("read-only") && err.contains("envctl add NAME"), "{pip}: {err}");
    }
    let r = f.run(&["run", "fw", "--", "pip", "install", "requests"]);
    assert!(r.failed().contains("envctl add NAME"), "{}", r.stderr);
    assert_eq!(common::fixture::walk(&store).len(), before, "pip changed the store");
}
