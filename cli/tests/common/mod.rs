//! A sandbox per test: its own home, store and configuration, with `HOME`, `XDG_*` and `ENVCTL_*`
//! pointed inside, so the real binary runs exactly as a user's would and touches nothing else.

#![allow(dead_code)]

pub mod fixture;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub struct Sandbox {
    pub dir: envctl_testkit::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout's first line.
    pub fn ok(&self) -> String {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self.stdout.lines().next().unwrap_or("").to_owned()
    }

    /// Asserts success and returns the whole run.
    pub fn success(self) -> Run {
        self.ok();
        self
    }

    /// Asserts exit code 1 and returns the whole run.
    pub fn failure(self) -> Run {
        self.failed();
        self
    }

    /// Asserts exit code 1 and returns stderr.
    pub fn failed(&self) -> &str {
        assert_eq!(self.code, 1, "expected failure (1)\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        &self.stderr
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let s = Sandbox { dir: envctl_testkit::tempdir() };
        std::fs::create_dir_all(s.path("user")).unwrap();
        s.config("");
        s
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn store(&self) -> PathBuf {
        self.path("envctl/store")
    }

    /// Writes the configuration file: fast retries, plus `extra`.
    pub fn config(&self, extra: &str) {
        std::fs::write(
            self.path("config.toml"),
            format!("{extra}\n[fetch]\nretries = 2\nbackoff-ms = 20\nread-timeout-secs = 20\n"),
        )
        .unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_envctl"));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ENVCTL_") || k.to_string_lossy().starts_with("XDG_") {
                c.env_remove(k);
            }
        }
        c.args(args)
            .env("HOME", self.path("user"))
            .env("XDG_DATA_HOME", self.path("user/.local/share"))
            .env("XDG_CONFIG_HOME", self.path("user/.config"))
            .env("ENVCTL_HOME", self.path("envctl"))
            .env("ENVCTL_CONFIG", self.path("config.toml"))
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    /// `envctl ARGS` run through another program (`sh -c …`, `setpriv …`): `prefix`, then the
    /// envctl binary and `args`, with the sandbox's environment.
    pub fn through(&self, prefix: &[&str], args: &[&str]) -> Command {
        let inner = self.command(args);
        let mut c = Command::new(prefix[0]);
        c.args(&prefix[1..]).arg(inner.get_program()).args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// Runs with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().unwrap())
    }

    /// Runs `args`, failing the test if they take longer than `secs` (a hang, a deadlock): the
    /// process is killed and its output shown.
    pub fn run_within(&self, args: &[&str], secs: u64) -> Run {
        let mut child = self.spawn(args);
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed().as_secs() >= secs {
                let _ = child.kill();
                let out = wait(child);
                panic!("`envctl {}` ran past {secs} s (hung):\n{}", args.join(" "), out.stderr);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        wait(child)
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// `envctl store add URL --sha256 SHA --name NAME --version VERSION EXTRA…`
    pub fn add(&self, url: &str, sha: &str, name: &str, version: &str, extra: &[&str]) -> Run {
        let mut args = vec!["store", "add", url, "--sha256", sha, "--name", name, "--version", version];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Entries of `.tmp/` (leftovers of installs).
    pub fn tmp_entries(&self) -> Vec<String> {
        list(&self.store().join(".tmp"))
    }

    /// Store directory entries that are not dot-files: the store paths on disk.
    pub fn store_paths_on_disk(&self) -> Vec<String> {
        list(&self.store()).into_iter().filter(|n| !n.starts_with('.')).collect()
    }
}

/// Copies the tree at `from` to `to` (files and directories).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Copies `examples/` (or a copy of it) as git tracks it: without the locks a walk through the
/// README leaves beside the profile files (git ignores them), which would otherwise be applied
/// instead of the files.
pub fn copy_tracked(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tracked(&e.path(), &to.join(e.file_name()));
        } else if e.path().extension().is_none_or(|x| x != "lock") {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Moves a store tree (a read-only directory) elsewhere, as any user can: its owner-write bit is
/// set for the move (the `..` entry changes) and its mode put back.
pub fn move_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::symlink_metadata(from).unwrap().permissions().mode() & 0o7777;
    std::fs::set_permissions(from, std::fs::Permissions::from_mode(mode | 0o200)).unwrap();
    std::fs::rename(from, to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Removes a home or a store, read-only store trees and all, as any user can.
pub fn remove_tree(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(path).into_iter().flatten() {
        if e.file_type().is_dir() {
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
    std::fs::remove_dir_all(path).unwrap();
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

pub fn wait(child: Child) -> Run {
    Run::from(child.wait_with_output().unwrap())
}
