//! A store several users share through `envctl daemon`: per-user and team profiles, who may
//! change what, sessions' roots held through the daemon, users applying at once, and a daemon
//! or a client killed halfway. The tests create the users and groups they need (`useradd`,
//! `groupadd`), so they run as root (CI's first pass).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture::Fixture;
use common::{Run, list};

/// Users and groups the tests share (created once, kept).
const ALICE: &str = "envctl-alice";
const BOB: &str = "envctl-bob";
const CAROL: &str = "envctl-carol";
const VISION: &str = "envctl-vision";
const NLP: &str = "envctl-nlp";

fn ensure_accounts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "these tests create users: run them as root");
        for group in [VISION, NLP] {
            let _ = Command::new("groupadd").arg(group).output();
        }
        for (user, group) in [(ALICE, VISION), (BOB, VISION), (CAROL, NLP)] {
            let _ = Command::new("useradd")
                .args(["--no-create-home", "--shell", "/bin/sh", "--groups", group, user])
                .output();
            let id = Command::new("id").args(["-Gn", user]).output().unwrap();
            assert!(String::from_utf8_lossy(&id.stdout).contains(group), "{user} is not in {group}");
        }
    });
}

/// A running daemon over a fixture's recipes, and each user's own directory.
struct Shared {
    f: Fixture,
    home: PathBuf,
    socket: PathBuf,
    daemon: Option<Child>,
}

impl Shared {
    fn start() -> Shared {
        ensure_accounts();
        let f = Fixture::new();
        // Users reach the fixture's files (recipes) and their own directories under it.
        std::fs::set_permissions(f.sb.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let home = f.sb.path("system");
        let socket = f.sb.path("run/daemon.sock");
        std::fs::write(
            f.sb.path("daemon.toml"),
            format!(
                "[fetch]\nretries = 1\nbackoff-ms = 20\nread-timeout-secs = 20\n[daemon]\ntrusted-users = [\"root\"]\nsocket = \"{}\"\n",
                socket.display()
            ),
        )
        .unwrap();
        for user in [ALICE, BOB, CAROL] {
            let dir = f.sb.path(user);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("config.toml"), format!("recipes = [\"{}\"]\n", f.repo.display()))
                .unwrap();
            let chown =
                Command::new("chown").args(["-R", &format!("{user}:"), &dir.display().to_string()]).status();
            assert!(chown.unwrap().success());
        }
        let mut s = Shared { f, home, socket, daemon: None };
        s.restart();
        s
    }

    /// Starts the daemon (again), and waits until it answers.
    fn restart(&mut self) {
        self.restart_with(&[]);
    }

    /// [`Shared::restart`] with more variables in the daemon's environment.
    fn restart_with(&mut self, env: &[(&str, &Path)]) {
        let mut c = Command::new(env!("CARGO_BIN_EXE_envctl"));
        c.envs(env.iter().copied());
        // Its log, for the tests that read what it said.
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.f.sb.path("daemon.log")).unwrap();
        c.args(["daemon"])
            .env("ENVCTL_HOME", &self.home)
            .env("ENVCTL_CONFIG", self.f.sb.path("daemon.toml"))
            .env("HOME", self.f.sb.path("user"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.daemon = Some(c.spawn().unwrap());
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "the daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// `envctl ARGS` as `user`, in their own directory, against the shared home.
    fn command(&self, user: &str, args: &[&str]) -> Command {
        let dir = self.f.sb.path(user);
        let mut c = Command::new("setpriv");
        c.args(["--reuid", user, "--regid", user, "--init-groups", env!("CARGO_BIN_EXE_envctl")])
            .args(args)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &dir)
            .env("ENVCTL_HOME", &self.home)
            .env("ENVCTL_CONFIG", dir.join("config.toml"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, user: &str, args: &[&str]) -> Run {
        Run::from(self.command(user, args).output().unwrap())
    }

    /// Writes a profile file into `user`'s directory and returns its path.
    fn profile(&self, user: &str, file: &str, body: &str) -> String {
        let path = self.f.sb.path(user).join(file);
        std::fs::write(&path, body).unwrap();
        let _ = Command::new("chown").arg(format!("{user}:")).arg(&path).status();
        path.display().to_string()
    }

    fn store(&self) -> PathBuf {
        self.home.join("store")
    }

    /// `envctl ARGS` as root with the daemon's own settings (its owner's view).
    fn owner(&self, args: &[&str]) -> Run {
        let mut c = self.f.sb.command(args);
        c.env("ENVCTL_HOME", &self.home).env("ENVCTL_CONFIG", self.f.sb.path("daemon.toml"));
        Run::from(c.output().unwrap())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.kill();
    }
}

fn team(profile: &str) -> String {
    format!("{VISION}/{profile}")
}

#[test]
fn team_members_change_a_team_profile_others_only_run_it_as_root() {
    let s = Shared::start();
    let v1 = s.profile(ALICE, "vision.toml", "[packages]\nhello = \"1\"\n");
    let apply = s.run(ALICE, &["apply", &v1, "--team", VISION]).success();
    assert!(apply.stderr.contains(&format!("`{}` is now generation 1", team("vision"))), "{}", apply.stderr);
    // The lock is alice's, beside her file; the store and the profile are the daemon's.
    assert!(Path::new(&v1.replace(".toml", ".lock")).is_file());
    assert_eq!(s.run(CAROL, &["run", &team("vision"), "--", "hello"]).ok(), "hello 1.0");

    // A session through the daemon leaves nothing in the user's runtime directory: `run` writes
    // no startup file, and the first file a shell reads removes the private directory it is in.
    let runtime = s.f.sb.path(CAROL).join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    Command::new("chown").arg(format!("{CAROL}:")).arg(&runtime).status().unwrap();
    let ran =
        s.command(CAROL, &["run", &team("vision"), "--", "hello"]).env("XDG_RUNTIME_DIR", &runtime).output();
    assert_eq!(Run::from(ran.unwrap()).ok(), "hello 1.0");
    let mut shell = s
        .command(CAROL, &["shell", &team("vision")])
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("SHELL", "/bin/bash")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    shell.stdin.take().unwrap().write_all(b"hello\nexit\n").unwrap();
    let shell = Run::from(shell.wait_with_output().unwrap());
    assert!(shell.stdout.contains("hello 1.0"), "{}\n{}", shell.stdout, shell.stderr);
    let left: Vec<_> = std::fs::read_dir(&runtime).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // bob, also in the team, upgrades it and rolls it back.
    let v2 = s.profile(BOB, "vision.toml", "[packages]\nhello = \"2\"\nworld = \"1\"\n");
    s.run(BOB, &["apply", &v2, "--team", VISION]).success();
    assert_eq!(s.run(ALICE, &["run", &team("vision"), "--", "hello"]).ok(), "hello 2.0");
    s.run(BOB, &["rollback", &team("vision")]).success();
    assert_eq!(s.run(CAROL, &["run", &team("vision"), "--", "hello"]).ok(), "hello 1.0");

    // carol (nlp) may run it and nothing more; each refusal names the group that would allow it.
    let hers = s.profile(CAROL, "vision.toml", "[packages]\nhello = \"2\"\n");
    for args in [
        vec!["rollback", &team("vision") as &str],
        vec!["generations", &team("vision"), "--delete", "2"],
        vec!["delete", &team("vision")],
        vec!["apply", &hers, "--team", VISION],
    ] {
        let r = s.run(CAROL, &args).failure();
        let e = r.failed();
        assert!(e.contains("refused") && e.contains(&format!("group `{VISION}`")), "{args:?}: {e}");
    }
    // Nor repair the store, nor write into it.
    let r = s.run(CAROL, &["store", "verify", "--repair"]).failure();
    assert!(r.failed().contains("trusted-users"), "{}", r.stderr);
    let wrote = Command::new("setpriv")
        .args(["--reuid", CAROL, "--regid", CAROL, "--init-groups", "touch"])
        .arg(s.store().join("carol-was-here"))
        .output()
        .unwrap();
    assert!(!wrote.status.success(), "carol wrote into the store");

    // Her own profile is hers: nobody else's changes, and nobody runs it unless they ask.
    let mine = s.profile(CAROL, "nlp.toml", "[packages]\nworld = \"1\"\n");
    s.run(CAROL, &["apply", &mine]).success();
    assert_eq!(s.run(CAROL, &["run", "nlp", "--", "world"]).ok(), "world 1.0");
    let r = s.run(ALICE, &["run", "nlp", "--", "world"]).failure();
    assert!(r.failed().contains("no profile `nlp`"), "{}", r.stderr);
    let listed = s.run(CAROL, &["profiles"]).success().stdout;
    assert!(listed.contains("nlp") && listed.contains(&team("vision")), "{listed}");
    s.owner(&["store", "verify"]).success();

    // A team member deletes the team's profile through the daemon.
    s.run(ALICE, &["delete", &team("vision")]).success();
    let r = s.run(CAROL, &["run", &team("vision"), "--", "hello"]).failure();
    assert!(r.failed().contains("no profile"), "{}", r.stderr);
}

#[test]
fn a_session_keeps_its_generation_through_the_daemon_while_users_apply_at_once_as_root() {
    let s = Shared::start();
    let v1 = s.profile(ALICE, "vision.toml", "[packages]\nhello = \"1\"\n");
    s.run(ALICE, &["apply", &v1, "--team", VISION]).success();
    // carol's session runs generation 1 for a while.
    let mut session = s.command(CAROL, &["run", &team("vision"), "--", "sh", "-c", "sleep 3; hello"]);
    let session = session.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // Meanwhile the team moves on and drops generation 1, and three users apply at once.
    let v2 = s.profile(BOB, "vision.toml", "[packages]\nhello = \"2\"\n");
    let own = [
        (ALICE, s.profile(ALICE, "a.toml", "[packages]\nworld = \"1\"\n")),
        (BOB, v2.clone()),
        (CAROL, s.profile(CAROL, "c.toml", "[packages]\nhello = \"2\"\nworld = \"1\"\n")),
    ];
    std::thread::scope(|scope| {
        for (user, file) in &own {
            let s = &s;
            scope.spawn(move || {
                let args: Vec<&str> =
                    if *user == BOB { vec!["apply", file, "--team", VISION] } else { vec!["apply", file] };
                s.run(user, &args).success();
            });
        }
    });
    s.run(BOB, &["generations", &team("vision"), "--delete", "1"]).success();
    let gc = s.run(CAROL, &["gc"]).success();
    let out = common::wait(session);
    assert_eq!(out.stdout.trim(), "hello 1.0", "the session lost its generation: {}", out.stderr);
    // Everything is in use: the session's generation too.
    assert!(gc.stderr.contains("removed 0 store paths"), "{}", gc.stderr);
    // Once it ended, its generation is garbage like any other.
    let hello1: Vec<String> = list(&s.store()).into_iter().filter(|n| n.ends_with("-hello-1.0")).collect();
    assert_eq!(hello1.len(), 1);
    s.run(ALICE, &["gc"]).success();
    assert!(!s.store().join(&hello1[0]).exists(), "an ended session's generation stayed");
    s.owner(&["store", "verify"]).success();
}

#[test]
fn a_daemon_killed_during_an_install_leaves_nothing_half_written_and_a_client_killed_leaves_nothing_as_root()
{
    let mut s = Shared::start();
    // A package that arrives slowly, so the kill lands while it downloads.
    let big: Vec<u8> = (0..2u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    let archive =
        envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("share/slow/data", big)).tar_gz();
    s.f.publish("slow", "1.0", &archive, "");
    s.f.server.set(
        "/slow-1.0.tar.gz",
        envctl_testkit::Reply::Slow { body: archive.clone(), delay: Duration::from_secs(2) },
    );
    let file = s.profile(ALICE, "slow.toml", "[packages]\nslow = \"1\"\nhello = \"1\"\n");
    let client =
        s.command(ALICE, &["apply", &file]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    s.kill();
    let r = common::wait(client);
    assert_eq!(r.code, 1, "{}", r.stderr);
    // Restarted, it sweeps what the killed one left; nothing half-written is registered.
    s.restart();
    s.f.server.serve("/slow-1.0.tar.gz", archive.clone());
    s.owner(&["store", "verify"]).success();
    s.run(ALICE, &["apply", &file]).success();
    assert_eq!(s.run(ALICE, &["run", "slow", "--", "hello"]).ok(), "hello 1.0");
    assert!(s.f.sb.path(ALICE).join("slow.lock").is_file());

    // A client killed mid-request: the daemon finishes or undoes; nothing is left half-done.
    let slow = envctl_testkit::Reply::Slow { body: hello_archive("2.0"), delay: Duration::from_secs(2) };
    s.f.server.set("/hello-2.0.tar.gz", slow);
    let file2 = s.profile(ALICE, "slow.toml", "[packages]\nslow = \"1\"\nhello = \"2\"\n");
    let mut client =
        s.command(ALICE, &["apply", &file2]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    client.kill().unwrap();
    client.wait().unwrap();
    // Whatever the daemon was doing ends; then the store is whole and the next apply completes.
    std::thread::sleep(Duration::from_secs(3));
    s.owner(&["store", "verify"]).success();
    s.run(ALICE, &["apply", &file2]).success();
    assert_eq!(s.run(ALICE, &["run", "slow", "--", "hello"]).ok(), "hello 2.0");
    s.run(ALICE, &["gc"]).success();
    assert!(list(&s.store().join(".tmp")).is_empty(), "{:?}", list(&s.store().join(".tmp")));
}

/// The archive the fixture serves for `hello VERSION` (the same bytes: see `Fixture::new`).
fn hello_archive(version: &str) -> Vec<u8> {
    envctl_testkit::Archive::new()
        .with(envctl_testkit::Entry::file_mode(
            "bin/hello",
            format!("#!/bin/sh\necho hello {version}\n"),
            0o755,
        ))
        .with(envctl_testkit::Entry::file("share/hello/version", version))
        .tar_gz()
}

#[test]
fn gpus_are_leased_between_users_through_the_daemon_and_a_killed_session_frees_its_own_as_root() {
    const A100: &str = "GPU-a100-0000-0000-0000-000000000000";
    const T4: &str = "GPU-t4-1111-1111-1111-111111111111";
    let mut s = Shared::start();
    let libs = envctl_testkit::nvml::build(s.f.sb.dir.path());
    let state = s.f.sb.path("nvml.txt");
    std::fs::write(
        &state,
        format!("driver 550.54.14\ncuda 12040\ngpu {A100} 8.0 40960 0 NVIDIA A100-SXM4-40GB\ngpu {T4} 7.5 15360 0 Tesla T4\n"),
    )
    .unwrap();
    s.kill();
    s.restart_with(&[("LD_LIBRARY_PATH", &libs), ("ENVCTL_TEST_NVML", &state)]);
    let with_gpus = |user: &str, args: &[&str]| {
        let mut c = s.command(user, args);
        c.env("LD_LIBRARY_PATH", &libs).env("ENVCTL_TEST_NVML", &state);
        c
    };
    let a = s.profile(ALICE, "a.toml", "[packages]\nhello = \"1\"\n");
    s.run(ALICE, &["apply", &a]).success();
    let b = s.profile(BOB, "b.toml", "[packages]\nhello = \"1\"\n");
    s.run(BOB, &["apply", &b]).success();

    // alice's session holds one GPU, through the daemon.
    let script = "echo \"$CUDA_VISIBLE_DEVICES\"; exec sleep 60";
    let mut alice = s.command(ALICE, &["run", "--gpus", "1", "a", "--", "sh", "-c", script]);
    let mut alice = alice.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(alice.stdout.as_mut().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), A100);
    // bob cannot have both, and is told who holds one; carol sees who.
    let err = s.run(BOB, &["run", "--gpus", "2", "b", "--", "true"]).failed().to_owned();
    assert!(
        err.contains(&format!("GPU 0 ({A100}): leased by {ALICE} (pid {}, profile `a`)", alice.id())),
        "{err}"
    );
    let seen = Run::from(with_gpus(CAROL, &["gpus"]).output().unwrap()).success().stdout;
    assert!(seen.contains(&format!("leased by {ALICE} (pid {}, profile `a`)", alice.id())), "{seen}");
    // bob waits in the daemon's line; alice's session is killed, and bob gets both.
    let mut waiting =
        s.command(BOB, &["run", "--gpus", "2", "--wait", "b", "--", "printenv", "CUDA_VISIBLE_DEVICES"]);
    let waiting = waiting.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    alice.kill().unwrap();
    alice.wait().unwrap();
    let out = common::wait(waiting);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), format!("{A100},{T4}"));
    assert!(out.stderr.contains("waiting in the daemon's line for 2 GPU(s)"), "{}", out.stderr);
    // bob's session ended: nothing is leased any more.
    let started = Instant::now();
    loop {
        let seen = Run::from(with_gpus(CAROL, &["gpus"]).output().unwrap()).success().stdout;
        if !seen.contains("leased by") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "a lease outlived its session: {seen}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_daemons_idle_policy_warns_then_ends_a_process_holding_gpu_memory_without_computing_as_root() {
    let mut s = Shared::start();
    let libs = envctl_testkit::nvml::build(s.f.sb.dir.path());
    let state = s.f.sb.path("nvml.txt");
    let mut idle = Command::new("sleep").arg("300").spawn().unwrap();
    let mut busy = Command::new("sleep").arg("300").spawn().unwrap();
    std::fs::write(
        &state,
        format!(
            "driver 550.54.14\ncuda 12040\ngpu GPU-a 8.0 40960 0 NVIDIA A100-SXM4-40GB\nproc 0 {} 20000 0\nproc 0 {} 4096 80\n",
            idle.id(),
            busy.id()
        ),
    )
    .unwrap();
    // [daemon] is the configuration's last table: the policy's keys join it.
    let config = s.f.sb.path("daemon.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("gpu-idle-limit = \"2s\"\ngpu-idle-warning = \"1s\"\ngpu-sample-secs = 1\n");
    std::fs::write(&config, text).unwrap();
    s.kill();
    s.restart_with(&[("LD_LIBRARY_PATH", &libs), ("ENVCTL_TEST_NVML", &state)]);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = idle.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the idle process was not ended");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGTERM));
    assert!(busy.try_wait().unwrap().is_none(), "the computing process runs on");
    let log = std::fs::read_to_string(s.f.sb.path("daemon.log")).unwrap();
    let warned = log.find("warned: an idle process will be ended").expect(&log);
    let ended = log.find("ending an idle process").expect(&log);
    assert!(warned < ended, "warned first:\n{log}");
    let _ = busy.kill();
    let _ = busy.wait();
}
