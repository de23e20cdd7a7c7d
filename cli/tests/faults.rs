//! The fault harness: crash injection at random moments and at the Nth call of the system calls
//! that change the disk, concurrent use, network faults and a full disk, each followed by the
//! checks that say nothing was lost.
//!
//! `cargo test` runs a bounded form. The full form (docs/concepts/guarantees.md):
//!
//! ```sh
//! ENVCTL_FAULTS=full cargo test --release -p envctl --test faults -- --nocapture --test-threads 1
//! ```
//!
//! `ENVCTL_FAULTS_SEED=N` replays a crash-injection run; every run prints its seed.

#![allow(clippy::print_stderr)] // the harness reports its seed and figures

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture::Fixture;
use common::{Run, list};
use envctl_testkit::faults::{Rng, build_shim, count_calls, kill_at};
use envctl_testkit::{Archive, Entry, Reply, sha256_hex};

fn full() -> bool {
    std::env::var("ENVCTL_FAULTS").is_ok_and(|v| v == "full")
}

/// The seed: given, else fixed for the bounded form (so CI replays the same runs), else new.
fn seed() -> u64 {
    std::env::var("ENVCTL_FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        if full() {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        } else {
            20261203
        }
    })
}

/// A fixture with two profiles over shared and identical files, so that every operation has work.
fn two_profiles() -> (Fixture, [String; 2]) {
    let f = Fixture::new();
    for name in ["a", "b"] {
        let mut archive = Archive::new();
        for i in 0..3 {
            archive = archive
                .with(Entry::file(&format!("share/{name}/data{i}"), format!("same bytes {i}").repeat(40)))
                .with(Entry::file_mode(
                    &format!("bin/{name}{i}"),
                    format!("#!/bin/sh\necho {name}{i}\n"),
                    0o755,
                ));
        }
        f.publish(name, "1.0", &archive.tar_gz(), "");
    }
    let variants = [
        "[packages]\nhello = \"1\"\na = \"1\"\nb = \"1\"\n".to_owned(),
        "[packages]\nhello = \"2\"\nworld = \"1\"\na = \"1\"\n".to_owned(),
    ];
    for (profile, v) in [("p1", 0), ("p1", 1), ("p2", 0)] {
        f.run(&["apply", &f.profile(profile, &variants[v])]).ok();
    }
    (f, variants)
}

/// Runs `args` in the fixture's sandbox, killed if it takes longer than `limit` (a deadlock).
fn run_bounded(f: &Fixture, args: &[&str], limit: Duration) -> Run {
    let mut child = f.sb.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`envctl {}` ran past {limit:?}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    common::wait(child)
}

/// What must hold after any crash, checked by the next commands a user would run.
fn check_consistent(f: &Fixture, what: &str) {
    let verify = f.run(&["store", "verify"]);
    assert_eq!(verify.code, 0, "{what}: verify after the kill:\n{}", verify.stderr);
    // Every profile points at a complete generation that runs.
    for profile in ["p1", "p2"] {
        let r = f.run(&["run", profile, "--", "hello"]);
        assert_eq!(r.code, 0, "{what}: `run {profile}` after the kill:\n{}", r.stderr);
        f.run(&["generations", profile]).ok();
    }
    // The database and the directories agree: every registered path is on disk (verify) and
    // every store directory is registered.
    let listed = f.run(&["store", "ls"]);
    listed.ok();
    for name in f.sb.store_paths_on_disk() {
        assert!(listed.stdout.contains(&name), "{what}: `{name}` is on disk but not registered");
    }
    // No temporary file survives the next command.
    f.run(&["gc"]).ok();
    assert!(f.sb.tmp_entries().is_empty(), "{what}: {:?} left in .tmp", f.sb.tmp_entries());
    assert!(list(&f.sb.store().join(".trash")).is_empty(), "{what}: trash left");
    let temporaries: Vec<String> =
        list(&f.profiles_dir()).into_iter().filter(|n| n.contains(".switch") || n.contains(".tmp")).collect();
    assert!(temporaries.is_empty(), "{what}: {temporaries:?} left in profiles/");
    assert!(!f.sb.store().join(".envctl/optimise.journal").exists(), "{what}: optimise journal left");
}

#[test]
fn crash_injection_at_random_system_calls_never_loses_a_generation_or_corrupts_the_store() {
    let runs = if full() { 400 } else { 20 };
    let seed = seed();
    eprintln!("crash injection: seed {seed}, {runs} runs (ENVCTL_FAULTS_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let (f, variants) = two_profiles();
    let shim = build_shim(f.sb.dir.path());
    let (mut kills, mut finished) = (0, 0);
    let mut per_call = std::collections::BTreeMap::<String, usize>::new();
    let mut counted = std::collections::HashMap::<usize, Vec<(String, u64)>>::new();
    // p1 is at variant 1 after `two_profiles`; each apply switches it to the other one, so that
    // every apply has a generation to build and switch to.
    let mut current = 1;
    for run in 0..runs {
        let variant = f.profile("p1", &variants[1 - current]);
        let ops: [&[&str]; 6] = [
            &["apply", &variant],
            &["gc"],
            &["store", "optimise"],
            &["rollback", "p1"],
            &["generations", "p1", "--keep", "2"],
            &["store", "verify", "--repair"],
        ];
        let which = rng.below(ops.len() as u64) as usize;
        let op = ops[which];
        if op[0] == "store" && op[1] == "verify" {
            // Give repair something to do: a store file that lost its mode.
            let victim =
                f.sb.store().join(f.sb.store_paths_on_disk().iter().find(|n| n.contains("-hello-")).unwrap());
            let file = victim.join("share/hello/version");
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        }
        // Aim at the calls this kind of command makes, counted the first time it runs.
        let counts = match counted.get(&which) {
            Some(c) => c.clone(),
            None => {
                let c: Vec<(String, u64)> = count_calls(f.sb.command(op), &shim, f.sb.dir.path())
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .collect();
                counted.insert(which, c.clone());
                if op[0] == "apply" {
                    current = 1 - current;
                }
                continue;
            }
        };
        // Mostly the calls that change what others see (renames, links, modes, flushes).
        let changing: Vec<&(String, u64)> = counts
            .iter()
            .filter(|(c, _)| !matches!(c.as_str(), "openat" | "write" | "mkdir" | "flock"))
            .collect();
        let (call, total) = if !changing.is_empty() && rng.below(4) != 0 {
            changing[rng.below(changing.len() as u64) as usize].clone()
        } else {
            counts[rng.below(counts.len() as u64) as usize].clone()
        };
        let call = call.as_str();
        let at = 1 + rng.below(total);
        let what = format!("run {run} (seed {seed}): `envctl {}` killed at {call} #{at}", op.join(" "));
        let mut c = f.sb.command(op);
        kill_at(&mut c, &shim, call, at);
        let out = c.output().unwrap();
        if op[0] == "apply" {
            current = 1 - current;
        }
        if out.status.code().is_some() {
            finished += 1;
            // Finished before the Nth call: only rollback may fail (no earlier generation).
            assert!(
                out.status.success() || op[0] == "rollback",
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        kills += 1;
        *per_call.entry(call.to_owned()).or_default() += 1;
        if op[0] == "store" {
            // A killed repair leaves the damage it was sent to mend: the next repair mends it.
            f.run(&["store", "verify", "--repair"]).ok();
        }
        check_consistent(&f, &what);
        // The same command, not killed, succeeds (rollback may have nothing left to roll back to).
        let again = f.run(op);
        assert!(again.code == 0 || op[0] == "rollback", "{what}: the next run failed:\n{}", again.stderr);
    }
    eprintln!(
        "crash injection: {runs} runs, {kills} killed, {finished} finished first, 0 failures; kills by call: {per_call:?}"
    );
    assert!(kills * 4 >= runs, "only {kills} of {runs} runs were killed: the harness is not reaching envctl");
}

#[test]
fn crash_injection_at_random_moments_never_loses_a_generation_or_corrupts_the_store() {
    let runs = if full() { 200 } else { 8 };
    let seed = seed() ^ 0x5eed;
    eprintln!("random kills: seed {seed}, {runs} runs");
    let mut rng = Rng(seed);
    let (f, variants) = two_profiles();
    let mut kills = 0;
    for run in 0..runs {
        let variant = f.profile("p1", &variants[rng.below(2) as usize]);
        let op: &[&str] = match rng.below(4) {
            0 => &["apply", &variant],
            1 => &["gc"],
            2 => &["store", "optimise"],
            _ => &["generations", "p1", "--keep", "1"],
        };
        let delay = Duration::from_micros(rng.below(40_000));
        let mut child = f.sb.command(op).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        kills += usize::from(status.code().is_none());
        check_consistent(
            &f,
            &format!("run {run} (seed {seed}): `envctl {}` killed after {delay:?}", op.join(" ")),
        );
        f.run(&["apply", &variant]).ok();
    }
    eprintln!("random kills: {runs} runs, {kills} killed mid-command, 0 failures");
    assert!(kills > 0, "no run was killed mid-command: the harness tested nothing");
}

/// A PEP 517 backend that packs `gast/` into a wheel, the same every time.
const BACKEND: &str = r#"
import base64, hashlib, os, zipfile
def _hash(d):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "gast-1.0.dist-info"
    files = {"gast/__init__.py": open("gast/__init__.py", "rb").read(),
             info + "/METADATA": b"Metadata-Version: 2.1\nName: gast\nVersion: 1.0\n",
             info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join("%s,%s,%d\n" % (p, _hash(d), len(d)) for p, d in sorted(files.items()))
    files[info + "/RECORD"] = (record + info + "/RECORD,,\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, "gast-1.0-py3-none-any.whl"), "w") as z:
        for p, d in sorted(files.items()):
            z.writestr(zipfile.ZipInfo(p, date_time=(1980, 1, 1, 0, 0, 0)), d)
    return "gast-1.0-py3-none-any.whl"
"#;

#[test]
fn crash_injection_during_python_installs_never_registers_a_partial_tree() {
    use envctl_testkit::python::Wheel;
    // Each run starts from an empty home, so every kill lands in an interpreter's unpack and
    // bytecode, a wheel's install, an sdist's build or the layers made from them.
    let runs = if full() { 60 } else { 3 };
    let seed = seed() ^ 0x9e3779b9;
    eprintln!("python crash injection: seed {seed}, {runs} runs");
    let mut rng = Rng(seed);
    let f = Fixture::new();
    f.publish_python("3.11");
    let lib = Wheel::new("greeter", "1.0", "py3-none-any").file("greeter/__init__.py", "HI = 'hi'\n");
    f.publish_wheel(&lib, &lib.build(), "python = \">=3\"");
    let backend = Wheel::new("tinybuild", "1.0", "py3-none-any").file("tinybuild.py", BACKEND);
    f.publish_wheel(&backend, &backend.build(), "python = \">=3\"");
    let sdist = Archive::new()
        .with(Entry::file("gast-1.0/PKG-INFO", "Metadata-Version: 2.1\nName: gast\nVersion: 1.0\n"))
        .with(Entry::file(
            "gast-1.0/pyproject.toml",
            "[build-system]\nrequires = [\"tinybuild\"]\nbuild-backend = \"tinybuild\"\n",
        ))
        .with(Entry::file("gast-1.0/gast/__init__.py", "G = 'gast'\n"))
        .tar_gz();
    let url = f.server.serve("/gast-1.0.tar.gz", sdist.clone());
    std::fs::write(
        f.repo.join("gast-1.0.toml"),
        format!(
            "name = \"gast\"\nversion = \"1.0\"\n[dependencies]\npython = \">=3\"\ntinybuild = \"*\"\n[[source]]\nurl = \"{url}\"\nsha256 = \"{}\"\nformat = \"sdist\"\n",
            sha256_hex(&sdist)
        ),
    )
    .unwrap();
    let p = f.profile("py", "[packages]\npython = \"3.11\"\ngreeter = \"1\"\ngast = \"1\"\n");
    f.run(&["lock", &p]).success();
    let shim = build_shim(f.sb.dir.path());
    let home = |run: usize| f.sb.path(&format!("home{run}")).display().to_string();
    let apply = |run: usize| {
        let mut c = f.sb.command(&["apply", &p]);
        c.env("ENVCTL_HOME", home(run));
        c
    };
    let counts: Vec<(String, u64)> =
        count_calls(apply(usize::MAX), &shim, f.sb.dir.path()).into_iter().filter(|(_, n)| *n > 0).collect();
    let mut kills = 0;
    for run in 0..runs {
        let (call, total) = counts[rng.below(counts.len() as u64) as usize].clone();
        let at = 1 + rng.below(total);
        let what = format!("run {run} (seed {seed}): `envctl apply` killed at {call} #{at}");
        let mut c = apply(run);
        kill_at(&mut c, &shim, &call, at);
        let out = c.output().unwrap();
        if out.status.success() {
            continue;
        }
        if out.status.code().is_some() {
            // The kill landed in a process envctl started (a build backend, a compiler, or a
            // child between fork and exec, which counts on from its parent's calls): envctl
            // must say so and fail cleanly, and the store must pass the same checks as after
            // envctl's own death.
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("signal: 9"),
                "{what}: envctl failed, and not because a child was killed:\n{err}"
            );
        }
        kills += 1;
        let env = [("ENVCTL_HOME", home(run))];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let verify = f.sb.run_env(&["store", "verify"], &env);
        assert_eq!(verify.code, 0, "{what}: verify after the kill:\n{}", verify.stderr);
        let listed = f.sb.run_env(&["store", "ls"], &env);
        let store = std::path::Path::new(&home(run)).join("store");
        for name in list(&store).into_iter().filter(|n| !n.starts_with('.')) {
            assert!(listed.stdout.contains(&name), "{what}: `{name}` is on disk but not registered");
        }
        let again = f.sb.run_env(&["apply", &p], &env);
        assert_eq!(again.code, 0, "{what}: the next apply failed:\n{}", again.stderr);
        let code = "import greeter, gast; print(greeter.HI, gast.G)";
        let out = f.sb.run_env(&["run", "py", "--", "python3", "-c", code], &env);
        assert_eq!(out.stdout.trim(), "hi gast", "{what}: {}", out.stderr);
        f.sb.run_env(&["gc"], &env).success();
        assert!(list(&store.join(".tmp")).is_empty(), "{what}: {:?} left in .tmp", list(&store.join(".tmp")));
    }
    eprintln!("python crash injection: {runs} runs, {kills} killed, 0 failures");
    assert!(kills > 0, "no run was killed: the harness tested nothing");
}

#[test]
fn concurrent_applies_sessions_deletions_gc_and_optimise_never_fail_or_deadlock() {
    let duration = if full() { Duration::from_secs(600) } else { Duration::from_secs(5) };
    let (f, variants) = two_profiles();
    let files = [f.profile("c1", &variants[0]), f.profile("c2", &variants[1])];
    f.run(&["apply", &files[0], "--profile", "p1"]).ok();
    let limit = Duration::from_secs(120);
    let until = Instant::now() + duration;
    let count = std::sync::atomic::AtomicUsize::new(0);
    let workers: Vec<Vec<Vec<&str>>> = vec![
        vec![vec!["apply", &files[0], "--profile", "p1"], vec!["apply", &files[1], "--profile", "p1"]],
        vec![vec!["apply", &files[1], "--profile", "p2"], vec!["apply", &files[0], "--profile", "p2"]],
        vec![vec!["run", "p1", "--", "hello"], vec!["run", "p2", "--", "a0"], vec!["env", "p1"]],
        vec![vec!["generations", "p1", "--keep", "1"], vec!["gc"], vec!["generations", "p2", "--keep", "1"]],
        vec![vec!["store", "optimise"], vec!["store", "verify"], vec!["profiles"]],
    ];
    std::thread::scope(|s| {
        for commands in &workers {
            let (f, count) = (&f, &count);
            s.spawn(move || {
                let mut i = 0;
                while Instant::now() < until {
                    let args = &commands[i % commands.len()];
                    let r = run_bounded(f, args, limit);
                    assert_eq!(
                        r.code,
                        0,
                        "`envctl {}` failed beside the others:\n{}",
                        args.join(" "),
                        r.stderr
                    );
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                }
            });
        }
    });
    f.run(&["store", "verify"]).ok();
    eprintln!("concurrency: {} commands in {duration:?}, 0 failures", count.into_inner());
}

#[test]
fn network_faults_fail_cleanly_naming_the_url_and_register_nothing() {
    let f = Fixture::new();
    std::fs::write(
        f.sb.path("config.toml"),
        "[fetch]\nretries = 1\nbackoff-ms = 10\nread-timeout-secs = 1\ndeadline-secs = 2\n[store]\nmax-unpack-bytes = 1048576\n",
    )
    .unwrap();
    let good = Archive::new().with(Entry::file("x/data", vec![5u8; 3000])).tar_gz();
    let sha = sha256_hex(&good);
    let header = |len: usize| {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let with = |len: usize, body: &[u8]| [header(len), body.to_vec()].concat();
    let mut bomb_tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    bomb_tar.append_data(&mut h, "zeros", std::io::repeat(0).take(64 << 20)).unwrap();
    let bomb = zstd::encode_all(&bomb_tar.into_inner().unwrap()[..], 19).unwrap();
    let cases: Vec<(&str, Reply, String, &str)> = vec![
        ("truncation", Reply::Raw(with(good.len(), &good[..good.len() / 2])), sha.clone(), "broke off"),
        ("wrong bytes", Reply::Body(vec![9u8; good.len()]), sha.clone(), "sha256"),
        (
            "stall",
            Reply::Stall { body: good.clone(), send: 10, hang: Duration::from_secs(4) },
            sha.clone(),
            "read-timeout-secs",
        ),
        (
            "trickle",
            Reply::Trickle { body: good.clone(), every: Duration::from_millis(300) },
            sha.clone(),
            "deadline",
        ),
        ("reset", Reply::Raw(Vec::new()), sha.clone(), ""),
        ("redirect loop", Reply::Redirect("/redirect-loop".into()), sha.clone(), "loop"),
        ("redirect to file", Reply::Redirect("file:///etc/passwd".into()), sha.clone(), "file:///etc/passwd"),
        ("short Content-Length", Reply::Raw(with(10, &good)), sha.clone(), "sha256"),
        ("long Content-Length", Reply::Raw(with(good.len() + 100, &good)), sha.clone(), "broke off"),
        ("404", Reply::Status(404), sha.clone(), "404"),
        ("zstd bomb", Reply::Body(bomb.clone()), sha256_hex(&bomb), "max-unpack-bytes"),
    ];
    for (case, reply, sha, named) in cases {
        let path = format!("/{}", case.replace(' ', "-"));
        f.server.set(&path, reply);
        let url = f.server.url(&path);
        let format = if case == "zstd bomb" { "tar.zst" } else { "tar.gz" };
        let r = f.sb.add(&url, &sha, "victim", "1", &["--format", format]);
        assert_eq!(r.code, 1, "{case}: {}", r.stderr);
        assert!(r.stderr.contains(&url), "{case}: no URL in\n{}", r.stderr);
        assert!(r.stderr.contains(named), "{case}: expected {named:?} in\n{}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{case}: {}", r.stderr);
        assert!(f.sb.store_paths_on_disk().is_empty(), "{case}: {:?}", f.sb.store_paths_on_disk());
        assert!(f.sb.tmp_entries().is_empty(), "{case}: {:?}", f.sb.tmp_entries());
    }
    // 5xx then 200: retried and installed.
    f.server.set("/flaky", Reply::FailThen { status: 503, times: 1, body: good.clone() });
    f.sb.add(&f.server.url("/flaky"), &sha256_hex(&good), "flaky", "1", &["--format", "tar.gz"]).ok();
    f.run(&["store", "verify"]).ok();
}

/// A `tar.gz` of one 4 MiB file that does not compress: more than a 3 MiB tmpfs holds.
fn big_archive() -> Vec<u8> {
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    Archive::new().with(Entry::file("share/big", big)).tar_gz()
}

/// A small tmpfs mounted in the fixture's sandbox (root only), unmounted when dropped, so that a
/// failed assertion does not leave it mounted.
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(f: &Fixture, size: &str) -> Tmpfs {
        let path = f.sb.path("small");
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs (run the tests as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { path }
    }

    /// Remounts it `size` large; whether that worked.
    fn grow(&self, size: &str) -> bool {
        let option = format!("remount,size={size}");
        Command::new("mount").args(["-o", &option]).arg(&self.path).status().unwrap().success()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status().is_ok_and(|s| s.success());
        if !unmounted && !std::thread::panicking() {
            panic!("could not unmount {}", self.path.display());
        }
    }
}

#[test]
fn a_full_disk_fails_cleanly_and_the_same_command_succeeds_with_room_as_root() {
    let f = Fixture::new();
    f.publish("big", "1.0", &big_archive(), "");
    let p = f.profile("p", "[packages]\nbig = \"1\"\nhello = \"1\"\n");
    let small = Tmpfs::mount(&f, "3m");
    let home = small.path.join("home");
    let home_arg = home.to_str().unwrap().to_owned();
    let r = f.run(&["--home", &home_arg, "apply", &p]);
    let verify_full = f.run(&["--home", &home_arg, "store", "verify"]);
    let leftovers = list(&home.join("store/.tmp"));
    let grown = small.grow("64m");
    let again = f.run(&["--home", &home_arg, "apply", &p]);
    let verify = f.run(&["--home", &home_arg, "store", "verify"]);
    let hello = f.run(&["--home", &home_arg, "run", "p", "--", "hello"]);
    drop(small);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("No space left"), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(verify_full.code, 0, "on the full disk: {}", verify_full.stderr);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(grown, "remounting the tmpfs larger failed");
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert_eq!(hello.stdout.trim(), "hello 1.0");
}

/// A cache that has the path, a home whose disk is too small for it: the full disk is the
/// error. Before, each cache was passed over with a warning and the source fetched onto the same
/// full disk, so the error named the source (here gone: a 404) and not the disk.
#[test]
fn a_full_disk_while_pulling_from_a_cache_is_the_error_and_the_source_is_not_tried_as_root() {
    let f = Fixture::new();
    f.publish("big", "1.0", &big_archive(), "");
    let p = f.profile("p", "[packages]\nbig = \"1\"\n");
    f.run(&["apply", &p]).ok();
    let keys = f.sb.path("keys");
    let public = f.run(&["cache", "keygen", "lab", "--out", keys.to_str().unwrap()]).ok();
    let cache = f.sb.path("cache");
    let secret = keys.join("lab.secret");
    f.run(&["cache", "push", cache.to_str().unwrap(), "p", "--key", secret.to_str().unwrap()]).ok();
    f.server.set("/big-1.0.tar.gz", Reply::Status(404));
    let source_hits = f.server.hits("/big-1.0.tar.gz");
    f.sb.config(&format!(
        "recipes = [\"{}\"]\ntrusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n",
        f.repo.display(),
        cache.display()
    ));
    let small = Tmpfs::mount(&f, "3m");
    let home = small.path.join("home");
    let r = f.run(&["--home", home.to_str().unwrap(), "apply", &p]);
    let leftovers = list(&home.join("store/.tmp"));
    drop(small);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let error = r.stderr.lines().skip_while(|l| !l.starts_with("error")).collect::<Vec<_>>().join("\n");
    assert!(error.contains("No space left"), "the error does not name the full disk:\n{}", r.stderr);
    assert!(!r.stderr.contains("passed over"), "{}", r.stderr);
    assert_eq!(f.server.hits("/big-1.0.tar.gz"), source_hits, "the source was fetched: {}", r.stderr);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A source with two mirrors and a disk too small for it: the full disk is the error, once, and
/// the second mirror is not asked to fill the same disk again.
#[test]
fn a_full_disk_is_not_a_reason_to_try_the_next_mirror_as_root() {
    let f = Fixture::new();
    let archive = big_archive();
    f.server.serve("/a/big-1.0.tar.gz", archive.clone());
    f.server.serve("/b/big-1.0.tar.gz", archive.clone());
    std::fs::write(
        f.repo.join("big-1.0.toml"),
        format!(
            "name = \"big\"\nversion = \"1.0\"\n[[source]]\nurl = \"mirror://site/big-1.0.tar.gz\"\nsha256 = \"{}\"\n",
            sha256_hex(&archive)
        ),
    )
    .unwrap();
    f.sb.config(&format!(
        "recipes = [\"{}\"]\n[mirrors]\nsite = [\"{}\", \"{}\"]\n",
        f.repo.display(),
        f.server.url("/a"),
        f.server.url("/b")
    ));
    let p = f.profile("p", "[packages]\nbig = \"1\"\n");
    let small = Tmpfs::mount(&f, "3m");
    let home = small.path.join("home");
    let r = f.run(&["--home", home.to_str().unwrap(), "apply", &p]);
    drop(small);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("No space left"), "{}", r.stderr);
    assert_eq!(r.stderr.matches("No space left").count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("free space on the disk of") && !r.stderr.contains("is a mirror"),
        "{}",
        r.stderr
    );
    assert_eq!(f.server.hits("/a/big-1.0.tar.gz"), 1, "{}", r.stderr);
    assert_eq!(f.server.hits("/b/big-1.0.tar.gz"), 0, "the second mirror was asked: {}", r.stderr);
}
