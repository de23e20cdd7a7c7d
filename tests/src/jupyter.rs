//! Jupyter for tests: jupyter_client (the library Jupyter's front ends start kernels with) in a
//! virtual environment, and the wheels of ipykernel's closure with pip's installation report of
//! them, for a profile to install from a local index. Downloaded once per machine into the
//! system's temporary directory under a lock, with pip and the machine's pip configuration, as
//! moto is (`s3.rs`); the tests themselves reach nothing but 127.0.0.1 and local files.

use std::path::PathBuf;
use std::process::Command;

/// The versions the tests run against.
const JUPYTER_CLIENT: &str = "jupyter_client==8.6.3";
const IPYKERNEL: &str = "ipykernel==6.29.5";

/// What [`jupyter`] prepared.
pub struct Jupyter {
    /// The virtual environment's `python`, which has jupyter_client.
    pub python: PathBuf,
    /// A directory of wheels: ipykernel's closure for CPython 3.11 on this machine.
    pub wheels: PathBuf,
    /// pip's installation report of that closure (`pip install --dry-run --report`), for
    /// `envctl import pip --report`.
    pub report: PathBuf,
    /// The ipykernel requirement (`ipykernel==6.29.5`).
    pub requirement: &'static str,
}

/// Prepares (once) and returns the Jupyter test support.
pub fn jupyter() -> Jupyter {
    let dir = std::env::temp_dir().join("envctl-testkit-jupyter");
    let done = dir.join(".done");
    let prepared = Jupyter {
        python: dir.join("venv/bin/python"),
        wheels: dir.join("wheels"),
        report: dir.join("report.json"),
        requirement: IPYKERNEL,
    };
    crate::prepare::once(
        "jupyter",
        || done.exists(),
        || {
            let (_, prefix) = crate::python::find_python("3.11");
            let run = |cmd: &mut Command, what: &str| crate::prepare::run(cmd, "the Jupyter tests", what);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the Jupyter directory");
            run(
                Command::new(prefix.join("bin/python3.11")).arg("-m").arg("venv").arg(dir.join("venv")),
                "a Python virtual environment",
            );
            let pip = || {
                let mut c = Command::new(&prepared.python);
                c.args(["-m", "pip"]);
                c
            };
            run(
                pip().args(["install", "-q", JUPYTER_CLIENT]),
                "jupyter_client from the Python package index (pip, with the machine's pip configuration)",
            );
            run(
                pip()
                    .args(["download", "-q", "--only-binary=:all:", "-d"])
                    .arg(&prepared.wheels)
                    .arg(IPYKERNEL),
                "ipykernel's wheels from the Python package index",
            );
            run(
                pip()
                    .args([
                        "install",
                        "-q",
                        "--dry-run",
                        "--ignore-installed",
                        "--only-binary=:all:",
                        "--no-index",
                    ])
                    .arg("--find-links")
                    .arg(&prepared.wheels)
                    .arg("--report")
                    .arg(&prepared.report)
                    .arg(IPYKERNEL),
                "pip's report of ipykernel's closure",
            );
            std::fs::write(&done, "").expect("mark the Jupyter directory done");
        },
    );
    prepared
}
