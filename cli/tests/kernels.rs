//! `envctl kernel`: a profile as a Jupyter kernel, started by the real jupyter_client (the test
//! support installs it, and downloads ipykernel's closure once, as it does moto). The profile
//! installs ipykernel from a local index; the kernel runs the profile's current generation at
//! each start.

mod common;

use std::process::Command;

use common::fixture::Fixture;
use common::{Run, Sandbox};
use envctl_testkit::jupyter::{Jupyter, jupyter};
use envctl_testkit::python::Wheel;

/// Starts the kernel `name` with jupyter_client, runs `code` in it and gives what it printed
/// (an exception as `ERROR name: value`), then shuts it down.
const RUN_IN_KERNEL: &str = r#"
import sys
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name=sys.argv[1], startup_timeout=120)
out = []
def hook(msg):
    if msg["msg_type"] == "stream":
        out.append(msg["content"]["text"])
    elif msg["msg_type"] == "error":
        out.append("ERROR %s: %s\n" % (msg["content"]["ename"], msg["content"]["evalue"]))
try:
    kc.execute_interactive(sys.argv[2], timeout=120, output_hook=hook)
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
print("".join(out), end="")
"#;

fn in_kernel(sb: &Sandbox, j: &Jupyter, kernel: &str, code: &str) -> String {
    let mut c = Command::new(&j.python);
    c.args(["-c", RUN_IN_KERNEL, kernel, code]);
    jupyter_env(sb, &mut c);
    let out = Run::from(c.output().unwrap());
    assert_eq!(out.code, 0, "the kernel did not run:\n{}\n{}", out.stdout, out.stderr);
    out.stdout
}

/// Jupyter's directories inside the sandbox, and the sandbox's environment for envctl.
fn jupyter_env(sb: &Sandbox, c: &mut Command) {
    let envctl = sb.command(&[]);
    for (k, v) in envctl.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env("JUPYTER_DATA_DIR", sb.path("jupyter")).env("JUPYTER_RUNTIME_DIR", sb.path("jupyter-runtime"));
}

fn envctl(sb: &Sandbox, args: &[&str]) -> Run {
    let mut c = sb.command(args);
    jupyter_env(sb, &mut c);
    Run::from(c.output().unwrap())
}

/// A fixture whose repository has CPython 3.11, ipykernel's closure (recipes from pip's report,
/// the wheels on a local index) and a small `greeter` wheel.
fn fixture(j: &Jupyter) -> Fixture {
    let f = Fixture::new();
    f.publish_python("3.11");
    let repo = f.repo.display().to_string();
    let report = j.report.display().to_string();
    f.run(&["import", "pip", j.requirement, "--python", "3.11", "--report", &report, "--out", &repo]).ok();
    f.sb.config(&format!("recipes = [\"{repo}\"]\n[indexes]\npypi = [\"{}\"]", j.wheels.display()));
    let greeter =
        Wheel::new("greeter", "1.0", "py3-none-any").file("greeter/__init__.py", "HI = 'hi from greeter'\n");
    f.publish_wheel(&greeter, &greeter.build(), "python = \">=3\"");
    f
}

#[test]
fn a_kernel_runs_the_profile_and_its_next_start_follows_an_apply() {
    let j = jupyter();
    let f = fixture(&j);
    let nb = f.profile("nb", "[packages]\npython = \"3.11\"\nipykernel = \"6.29.5\"\n");
    f.run(&["apply", &nb]).ok();
    let out = envctl(&f.sb, &["kernel", "install", "nb"]);
    out.ok();
    assert!(
        out.stderr.contains("installed the Jupyter kernel `envctl-nb` (nb (Python 3.11."),
        "{}",
        out.stderr
    );
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.sb.path("jupyter/kernels/envctl-nb/kernel.json")).unwrap())
            .unwrap();
    assert_eq!(spec["argv"][4], "nb");
    assert_eq!(spec["language"], "python");

    let code = "import os, sys; print(os.environ['ENVCTL_PROFILE']); print(sys.prefix)\nimport greeter; print(greeter.HI)";
    let first = in_kernel(&f.sb, &j, "envctl-nb", code);
    let mut lines = first.lines();
    assert_eq!(lines.next(), Some("nb"), "{first}");
    assert!(lines.next().is_some_and(|p| p.contains("-profile-nb")), "the profile's Python:\n{first}");
    assert!(first.contains("ERROR ModuleNotFoundError: No module named 'greeter'"), "{first}");

    // The team adds a package: the kernel's next start has it, with no reinstall.
    std::fs::write(&nb, "[packages]\npython = \"3.11\"\nipykernel = \"6.29.5\"\ngreeter = \"1\"\n").unwrap();
    f.run(&["apply", &nb]).ok();
    let second = in_kernel(&f.sb, &j, "envctl-nb", code);
    assert!(second.ends_with("hi from greeter\n"), "{second}");
    envctl(&f.sb, &["rollback", "nb"]).ok();
    assert!(in_kernel(&f.sb, &j, "envctl-nb", code).contains("No module named 'greeter'"));
}

#[test]
fn kernels_are_listed_named_and_removed_and_a_profile_without_ipykernel_says_so() {
    let j = jupyter();
    let f = fixture(&j);
    let bare = f.profile("bare", "[packages]\npython = \"3.11\"\n");
    f.run(&["apply", &bare]).ok();
    let err = envctl(&f.sb, &["kernel", "install", "bare"]).failed().to_owned();
    assert!(err.contains("lacks `ipykernel`") && err.contains("envctl add ipykernel"), "{err}");
    assert!(!f.sb.path("jupyter/kernels").exists(), "nothing written");

    let nb = f.profile("nb", "[packages]\npython = \"3.11\"\nipykernel = \"6.29.5\"\n");
    f.run(&["apply", &nb]).ok();
    envctl(&f.sb, &["kernel", "install", "nb", "--name", "team-nb", "--display-name", "Team notebook"]).ok();
    // Someone else's kernel beside it is neither listed, replaced nor removed.
    let other = f.sb.path("jupyter/kernels/python3");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("kernel.json"),
        r#"{"argv": ["python3"], "display_name": "Python 3", "language": "python"}"#,
    )
    .unwrap();
    let listed = envctl(&f.sb, &["kernel", "list"]).success().stdout;
    assert_eq!(listed, "team-nb\tnb\tTeam notebook\n");
    let err = envctl(&f.sb, &["kernel", "install", "nb", "--name", "python3"]).failed().to_owned();
    assert!(err.contains("a kernel envctl did not make"), "{err}");
    let err = envctl(&f.sb, &["kernel", "remove", "python3"]).failed().to_owned();
    assert!(err.contains("jupyter kernelspec remove python3"), "{err}");
    envctl(&f.sb, &["kernel", "remove", "team-nb"]).ok();
    assert!(!f.sb.path("jupyter/kernels/team-nb").exists() && other.join("kernel.json").exists());
    assert_eq!(envctl(&f.sb, &["kernel", "list", "--json"]).ok(), "[]");
}
