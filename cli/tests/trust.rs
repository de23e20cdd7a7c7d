//! Regression tests for the defects that could lose a team's environment or let someone in
//! (issue 8). Each test is named after what broke; each failed before its fix.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::fixture::{Fixture, walk};
use common::list;
use envctl_testkit::{Archive, Entry, sha256_hex};

#[test]
fn a_profile_named_like_a_generation_link_cannot_overwrite_another_profile() {
    let f = Fixture::new();
    let p1 = f.profile("p1", "[packages]\nhello = \"1\"\n");
    f.run(&["apply", &p1]).ok();
    let p1 = f.profile("p1", "[packages]\nhello = \"2\"\n");
    f.run(&["apply", &p1]).ok();
    let evil = f.profile("p1-2-link", "[packages]\nworld = \"1\"\n");
    let err = f.run(&["apply", &evil]).failed().to_owned();
    assert!(err.contains("p1-2-link") && err.contains("generation"), "{err}");
    // p1 is whole: its generation 2 still runs hello 2.0, and gc keeps everything it uses.
    assert_eq!(f.run(&["run", "p1", "--", "hello"]).ok(), "hello 2.0");
    f.run(&["gc"]).ok();
    assert_eq!(f.run(&["run", "p1", "--", "hello"]).ok(), "hello 2.0");
    f.run(&["rollback", "p1"]).ok();
    assert_eq!(f.run(&["run", "p1", "--", "hello"]).ok(), "hello 1.0");
    // Names that only look close are fine.
    let fine = f.profile("p1-link", "[packages]\nworld = \"1\"\n");
    f.run(&["apply", &fine]).ok();
}

#[test]
fn gc_keeps_live_generations_when_the_home_is_spelled_through_a_symlink_or_dots() {
    let f = Fixture::new();
    let alias = f.sb.path("alias-home");
    std::os::unix::fs::symlink(f.sb.path("envctl"), &alias).unwrap();
    std::fs::create_dir_all(f.sb.path("envctl")).unwrap();
    let p = f.profile("team", "[packages]\nhello = \"1\"\n");
    let dotted = format!("{}/../envctl", f.sb.path("user").display());
    // The generation is created through one spelling and collected through the others.
    f.run(&["--home", alias.to_str().unwrap(), "apply", &p]).ok();
    for home in [f.sb.path("envctl").display().to_string(), dotted.clone(), alias.display().to_string()] {
        let gc = f.run(&["--home", &home, "gc"]);
        gc.ok();
        assert!(!gc.stderr.contains("removed") || gc.stderr.contains("removed 0"), "{}", gc.stderr);
        assert_eq!(f.run(&["--home", &home, "run", "team", "--", "hello"]).ok(), "hello 1.0");
    }
    f.run(&["--home", &dotted, "apply", &f.profile("team", "[packages]\nworld = \"1\"\n")]).ok();
    f.run(&["gc"]).ok();
    assert_eq!(f.run(&["run", "team", "--", "world"]).ok(), "world 1.0");
    f.run(&["rollback", "team"]).ok();
    assert_eq!(f.run(&["run", "team", "--", "hello"]).ok(), "hello 1.0");
    f.run(&["store", "verify"]).ok();
}

#[test]
fn temporary_links_left_by_a_killed_switch_are_swept() {
    let f = Fixture::new();
    let p = f.profile("p1", "[packages]\nhello = \"1\"\n");
    f.run(&["apply", &p]).ok();
    let dir = f.profiles_dir();
    let target = std::fs::read_link(dir.join("p1-1-link")).unwrap();
    // What a kill at each rename leaves behind.
    std::os::unix::fs::symlink("p1-1-link", dir.join(".p1.switch4242")).unwrap();
    std::os::unix::fs::symlink(&target, dir.join(".p1-2-link.tmp4243")).unwrap();
    std::os::unix::fs::symlink("p2-1-link", dir.join(".p2.switch77")).unwrap();
    // The next command that takes the profile's lock sweeps its own.
    f.run(&["apply", &f.profile("p1", "[packages]\nhello = \"2\"\n")]).ok();
    let left = list(&dir);
    assert!(!left.iter().any(|n| n.starts_with(".p1.switch") || n.contains(".tmp")), "{left:?}");
    // GC sweeps every profile nobody is changing.
    f.run(&["gc"]).ok();
    let left = list(&dir);
    assert!(!left.iter().any(|n| n.contains(".switch")), "{left:?}");
}

#[test]
fn env_keys_that_are_not_variable_names_are_refused_with_file_and_line() {
    let f = Fixture::new();
    let p = f.profile(
        "p",
        "[packages]\nhello = \"1\"\n\n[env]\nOK_VAR = \"1\"\n\"X;touch /tmp/PWNED;Y\" = \"v\"\n",
    );
    let err = f.run(&["apply", &p]).failed().to_owned();
    assert!(err.contains("p.toml") && err.contains("line 6") && err.contains("not a variable name"), "{err}");
    for key in ["\"\"", "\"A=B\"", "\"1ABC\"", "\"A B\""] {
        let p = f.profile("p", &format!("[packages]\nhello = \"1\"\n[env]\n{key} = \"v\"\n"));
        f.run(&["apply", &p]).failed();
    }
    let p = f.profile("p", "[packages]\nhello = \"1\"\n[env]\nA = \"x\\u0000y\"\n");
    assert!(f.run(&["apply", &p]).failed().contains("NUL"));
    // A shared recipe is checked the same way.
    f.publish(
        "evil",
        "1.0",
        &Archive::new().with(Entry::file("x", "x")).tar_gz(),
        "[env]\n\"$(touch x)\" = \"1\"\n",
    );
    let p = f.profile("q", "[packages]\nevil = \"1\"\n");
    let err = f.run(&["apply", &p]).failed().to_owned();
    assert!(err.contains("evil-1.0.toml") && err.contains("not a variable name"), "{err}");
}

#[test]
fn env_output_quotes_every_value_so_evaluating_it_runs_nothing() {
    let f = Fixture::new();
    let marker = f.sb.path("PWNED");
    let m = marker.display();
    let p = f.profile(
        "p",
        &format!(
            "[packages]\nhello = \"1\"\n[env]\nA = \"$(touch {m})\"\nB = \"`touch {m}`\"\nC = \"it's; touch {m}\"\nD = \"\\\\'$(touch {m})'\"\n"
        ),
    );
    f.run(&["apply", &p]).ok();
    let sh = f.run(&["env", "p"]);
    sh.ok();
    let script = format!("{}\nprintf '%s\\n' \"$A\" \"$B\" \"$C\" \"$D\"", sh.stdout);
    let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!marker.exists(), "evaluating `envctl env` ran a command");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("$(touch {m})")) && printed.contains(&format!("it's; touch {m}")),
        "{printed}"
    );
}

#[test]
fn env_prints_only_variable_names_whatever_the_caller_and_envctl_restore_hold() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.run(&["apply", &p]).ok();
    let (one, two) = (f.sb.path("PWNED1"), f.sb.path("PWNED2"));
    let restore = serde_json::json!({
        format!("X;touch {};Y", one.display()): null,
        "SAVED": "kept",
        "NUL": "a\u{0}b",
    })
    .to_string();
    let bad_name = format!("Z;touch {}", two.display());
    for format in ["sh", "fish"] {
        let mut c = f.sb.command(&["env", "p", "--format", format]);
        c.env("ENVCTL_RESTORE", &restore).env(&bad_name, "1").env("SAVED", "session value");
        let r = common::Run::from(c.output().unwrap());
        r.ok();
        for line in r.stdout.lines() {
            let name = line
                .strip_prefix("unset ")
                .or_else(|| line.strip_prefix("export "))
                .or_else(|| line.strip_prefix("set -e "))
                .or_else(|| line.strip_prefix("set -gx "))
                .unwrap_or_else(|| panic!("unexpected line `{line}`"));
            let name = name.split(['=', ' ']).next().unwrap();
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{format}: `{line}`");
        }
        assert!(r.stderr.contains("ENVCTL_RESTORE names `X;touch"), "{}", r.stderr);
        assert!(r.stderr.contains("ENVCTL_RESTORE gives `NUL` a value with a NUL byte"), "{}", r.stderr);
        if format == "sh" {
            // What the session saved comes back; evaluating the output runs nothing.
            assert!(r.stdout.contains("export SAVED='kept'"), "{}", r.stdout);
            let out = std::process::Command::new("sh").arg("-c").arg(&r.stdout).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(!one.exists() && !two.exists(), "evaluating `envctl env` ran a command");
        }
    }
    // A NUL in ENVCTL_RESTORE is named, and the session still starts.
    let mut c = f.sb.command(&["run", "p", "--", "hello"]);
    c.env("ENVCTL_RESTORE", &restore);
    let r = common::Run::from(c.output().unwrap());
    assert_eq!(r.ok(), "hello 1.0");
    assert!(r.stderr.contains("ENVCTL_RESTORE gives `NUL`"), "{}", r.stderr);
}

/// A fixture whose packages `a` and `b` share identical files, applied, so optimise has work.
fn twins() -> (Fixture, String) {
    let f = Fixture::new();
    for name in ["a", "b"] {
        let mut archive = Archive::new().with(Entry::file(&format!("share/{name}/own"), name));
        for i in 0..4 {
            archive = archive
                .with(Entry::file(&format!("share/{name}/data{i}"), format!("same bytes {i}").repeat(50)))
                .with(Entry::file_mode(
                    &format!("bin/{name}-tool{i}"),
                    format!("#!/bin/sh\necho {i}\n"),
                    0o755,
                ));
        }
        f.publish(name, "1.0", &archive.tar_gz(), "");
    }
    let p = f.profile("twins", "[packages]\na = \"1\"\nb = \"1\"\n");
    f.run(&["apply", &p]).ok();
    (f, p)
}

/// Names inside valid store paths that no package shipped (what a torn optimise used to leave).
fn strays(store: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(store) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(".envctl-link") {
            out.push(entry.display().to_string());
        }
    }
    out
}

#[test]
fn optimise_killed_at_any_rename_link_or_chmod_leaves_a_store_that_verifies() {
    let (f, _) = twins();
    let shim = envctl_testkit::faults::build_shim(f.sb.dir.path());
    let pristine = f.sb.path("pristine");
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(f.sb.path("envctl"))
            .arg(&pristine)
            .status()
            .unwrap()
            .success()
    );
    let mut kills = 0;
    for call in ["rename", "linkat", "chmod", "utimensat", "unlink"] {
        for at in 1..=6 {
            // Start each attempt from the unoptimised store.
            let _ =
                std::process::Command::new("chmod").arg("-R").arg("u+w").arg(f.sb.path("envctl")).status();
            common::remove_tree(&f.sb.path("envctl"));
            assert!(
                std::process::Command::new("cp")
                    .arg("-a")
                    .arg(&pristine)
                    .arg(f.sb.path("envctl"))
                    .status()
                    .unwrap()
                    .success()
            );
            let mut c = f.sb.command(&["store", "optimise"]);
            envctl_testkit::faults::kill_at(&mut c, &shim, call, at);
            let out = c.output().unwrap();
            if out.status.code().is_some() {
                continue; // finished before the Nth call
            }
            kills += 1;
            let verify = f.run(&["store", "verify"]);
            assert_eq!(verify.code, 0, "after a kill at {call} #{at}: {}", verify.stderr);
            assert!(
                strays(&f.sb.store()).is_empty(),
                "after a kill at {call} #{at}: {:?}",
                strays(&f.sb.store())
            );
            assert!(f.sb.tmp_entries().is_empty(), "after a kill at {call} #{at}: {:?}", f.sb.tmp_entries());
            assert!(!f.sb.store().join(".envctl/optimise.journal").exists());
            f.run(&["store", "optimise"]).ok();
            f.run(&["store", "verify"]).ok();
            assert_eq!(f.run(&["run", "twins", "--", "a-tool1"]).ok(), "1");
        }
    }
    assert!(kills >= 15, "only {kills} kills landed inside optimise");
}

#[test]
fn verify_checks_modes_and_repair_restores_them_without_fetching() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.run(&["apply", &p]).ok();
    let path =
        f.sb.store().join(f.sb.store_paths_on_disk().into_iter().find(|n| n.contains("-hello-")).unwrap());
    let hits = f.server.hits("/hello-1.0.tar.gz");
    let set = |p: &std::path::Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    for (victim, mode) in [
        (path.join("share/hello/version"), 0o666),
        (path.join("bin/hello"), 0o4555),
        (path.join("share/hello"), 0o777),
    ] {
        set(&victim, mode);
        let err = f.run(&["store", "verify"]).failed().to_owned();
        assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
        let repaired = f.run(&["store", "verify", "--repair"]);
        repaired.ok();
        assert!(repaired.stderr.contains("repaired"), "{}", repaired.stderr);
        f.run(&["store", "verify"]).ok();
        let now = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
        assert!(now == 0o444 || now == 0o555, "{now:o}");
    }
    assert_eq!(f.server.hits("/hello-1.0.tar.gz"), hits, "repairing modes fetched the source");
}

#[test]
fn a_tampered_generation_is_rebuilt_by_verify_repair() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\nworld = \"1\"\n");
    f.run(&["apply", &p]).ok();
    let generation = std::fs::canonicalize(f.profiles_dir().join("p")).unwrap();
    // Someone with write access re-points a farm link at a script of their own.
    let bin = generation.join("bin");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let evil = f.sb.path("evil");
    std::fs::write(&evil, "#!/bin/sh\necho pwned\n").unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_file(bin.join("hello")).unwrap();
    std::os::unix::fs::symlink(&evil, bin.join("hello")).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o555)).unwrap();
    assert_eq!(f.run(&["run", "p", "--", "hello"]).ok(), "pwned");
    let err = f.run(&["store", "verify"]).failed().to_owned();
    assert!(err.contains("profile-p"), "{err}");
    f.run(&["store", "verify", "--repair"]).ok();
    f.run(&["store", "verify"]).ok();
    assert_eq!(f.run(&["run", "p", "--", "hello"]).ok(), "hello 1.0");
}

#[test]
fn a_hand_edited_lock_is_refused_naming_the_entry_before_anything_is_installed() {
    let f = Fixture::new();
    f.publish("dep", "1.0", &Archive::new().with(Entry::file("share/dep", "dep")).tar_gz(), "");
    f.publish(
        "app",
        "1.0",
        &Archive::new().with(Entry::file("share/app", "app")).tar_gz(),
        "[dependencies]\ndep = \"1\"\n",
    );
    let p = f.profile("team", "[packages]\nhello = \"1\"\napp = \"1\"\n");
    f.run(&["lock", &p]).ok();
    let lock_path = f.sb.path("team.lock");
    let good = std::fs::read_to_string(&lock_path).unwrap();
    let block = |name: &str| {
        let start = good.find(&format!("[[package]]\nname = \"{name}\"")).unwrap();
        let end = good[start + 1..].find("[[package]]").map_or(good.len(), |e| e + start + 1);
        good[start..end].to_owned()
    };
    let hello = block("hello");
    let world_url = f.server.url("/world-1.0.tar.gz");
    let hello_url = f.server.url("/hello-1.0.tar.gz");
    let world_sha = {
        let w = std::fs::read_to_string(f.repo.join("world-1.0.toml")).unwrap();
        w.lines().find(|l| l.starts_with("sha256")).unwrap().split('"').nth(1).unwrap().to_owned()
    };
    let hello_sha =
        hello.lines().find(|l| l.starts_with("sha256")).unwrap().split('"').nth(1).unwrap().to_owned();
    let cases: Vec<(&str, String, &str)> = vec![
        ("a dropped requested package", good.replace(&block("app"), ""), "`app`"),
        ("a dropped dependency", good.replace(&block("dep"), ""), "depends on `dep`"),
        (
            "a version beyond the requirement",
            good.replacen(&hello, &hello.replace("version = \"1.0\"", "version = \"2.0\""), 1),
            "hello",
        ),
        (
            "a swapped source",
            good.replacen(&hello, &hello.replace(&hello_url, &world_url).replace(&hello_sha, &world_sha), 1),
            "hello 1.0",
        ),
        (
            "a junk tree hash",
            good.replacen(
                &hello,
                &hello.replace("[package.source]", "tree-hash = \"zzz\"\n\n[package.source]"),
                1,
            ),
            "zzz",
        ),
        ("a duplicate entry", format!("{good}\n{hello}"), "twice"),
        (
            "another platform",
            good.replace("platform = \"linux-x86_64\"", "platform = \"linux-aarch64\""),
            "platform",
        ),
    ];
    for (i, (what, text, named)) in cases.into_iter().enumerate() {
        assert_ne!(text, good, "the case `{what}` changed nothing");
        std::fs::write(&lock_path, &text).unwrap();
        let home = f.sb.path(&format!("home{i}"));
        let r = f.run(&["--home", home.to_str().unwrap(), "apply", &p]);
        assert_eq!(r.code, 1, "{what} was accepted:\n{}", r.stderr);
        assert!(r.stderr.contains("refusing the lock") && r.stderr.contains(named), "{what}:\n{}", r.stderr);
        let installed = list(&home.join("store")).into_iter().filter(|n| !n.starts_with('.')).count();
        assert_eq!(installed, 0, "{what}: something was installed");
        assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), text, "{what}: the lock was rewritten");
    }
    // A well-formed tree hash that is not what the source unpacks to: refused before any generation.
    let wrong = good.replacen(
        &hello,
        &hello.replace(
            "[package.source]",
            &format!(
                "store-path = \"{}-hello-1.0\"\ntree-hash = \"{}\"\n\n[package.source]",
                "0".repeat(32),
                "ab".repeat(32)
            ),
        ),
        1,
    );
    std::fs::write(&lock_path, &wrong).unwrap();
    let home = f.sb.path("home-tree");
    let err = f.run(&["--home", home.to_str().unwrap(), "apply", &p]).failed().to_owned();
    assert!(err.contains("refusing the lock") && err.contains(&"ab".repeat(32)), "{err}");
    assert!(list(&home.join("profiles")).iter().all(|n| n.starts_with('.')), "a generation was made");
    // Re-locking on this machine records what its store verified, so the next apply works (a lock
    // written by an envctl that unpacked the source otherwise must not trap its user).
    f.run(&["--home", home.to_str().unwrap(), "lock", &p, "--update"]).ok();
    assert!(
        !std::fs::read_to_string(&lock_path).unwrap().contains(&"ab".repeat(32)),
        "the re-lock kept the stale promise"
    );
    f.run(&["--home", home.to_str().unwrap(), "apply", &p]).ok();
    // The honest lock still applies.
    std::fs::write(&lock_path, &good).unwrap();
    f.run(&["apply", &p]).ok();
}

#[test]
fn redirects_to_other_schemes_or_in_loops_fail_naming_both_urls_and_never_panic() {
    let f = Fixture::new();
    let body = Archive::new().with(Entry::file("ok", "ok")).tar_gz();
    let sha = sha256_hex(&body);
    f.server.serve("/real.tar.gz", body.clone());
    f.server.set("/relative.tar.gz", envctl_testkit::Reply::Redirect("/real.tar.gz".into()));
    f.server.set("/loop-a.tar.gz", envctl_testkit::Reply::Redirect(f.server.url("/loop-b.tar.gz")));
    f.server.set("/loop-b.tar.gz", envctl_testkit::Reply::Redirect(f.server.url("/loop-a.tar.gz")));
    for (path, target) in [
        ("/to-file.tar.gz", "file:///etc/passwd"),
        ("/to-data.tar.gz", "data:text/plain,hello"),
        ("/to-mailto.tar.gz", "mailto:root@localhost"),
    ] {
        f.server.set(path, envctl_testkit::Reply::Redirect(target.into()));
    }
    // A relative redirect over http is followed.
    f.sb.add(&f.server.url("/relative.tar.gz"), &sha, "ok", "1", &[]).ok();
    for (path, named) in [
        ("/to-file.tar.gz", "file:///etc/passwd"),
        ("/to-data.tar.gz", "data:"),
        ("/to-mailto.tar.gz", "mailto:"),
        ("/loop-a.tar.gz", "loop"),
    ] {
        let url = f.server.url(path);
        let r = f.sb.add(&url, &sha, "other", "1", &[]);
        assert_eq!(r.code, 1, "{path}: {}", r.stderr);
        assert!(r.stderr.contains(&url) && r.stderr.contains(named), "{path}: {}", r.stderr);
        // The same through apply, where installs run on worker threads.
        let name = path.trim_start_matches('/').trim_end_matches(".tar.gz");
        std::fs::write(
            f.repo.join(format!("{name}.toml")),
            format!("name = \"{name}\"\nversion = \"1\"\n[[source]]\nurl = \"{url}\"\nsha256 = \"{sha}\"\n"),
        )
        .unwrap();
        let p = f.profile(name, &format!("[packages]\n{name} = \"1\"\n"));
        let r = f.run(&["apply", &p]);
        assert_eq!(r.code, 1, "{path}: {}", r.stderr);
        assert!(r.stderr.contains(&url) && !r.stderr.contains("panicked"), "{path}: {}", r.stderr);
    }
    assert!(f.sb.tmp_entries().is_empty());
}

#[test]
fn a_percent_escape_before_a_multibyte_character_is_an_error_not_a_panic() {
    let f = Fixture::new();
    let r = f.sb.add("file:///tmp/%a\u{e9}.tar", &"0".repeat(64), "x", "1", &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("%a\u{e9}.tar"), "{}", r.stderr);
}

#[test]
fn output_into_a_closed_pipe_is_dropped_without_a_panic() {
    let f = Fixture::new();
    let script =
        r#"( sleep 0.3; "$0" doctor; echo "rc=$?" >&2; "$0" search hello; echo "rc=$?" >&2 ) | true"#;
    let mut c = f.sb.through(&["sh", "-c", script], &[]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.matches("rc=0").count(), 2, "{err}");
}

#[test]
fn a_trickling_download_is_cut_off_at_its_deadline() {
    let f = Fixture::new();
    std::fs::write(
        f.sb.path("config.toml"),
        format!("recipes = [\"{}\"]\n[fetch]\ndeadline-secs = 1\nretries = 0\nbackoff-ms = 20\nread-timeout-secs = 20\n", f.repo.display()),
    )
    .unwrap();
    let body = vec![7u8; 40];
    f.server.set(
        "/slow.bin",
        envctl_testkit::Reply::Trickle { body: body.clone(), every: std::time::Duration::from_millis(200) },
    );
    let started = std::time::Instant::now();
    let r = f.sb.add(&f.server.url("/slow.bin"), &sha256_hex(&body), "slow", "1", &["--format", "tar"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("took longer than the download deadline of 1 s"), "{}", r.stderr);
    assert!(r.stderr.contains(&f.server.url("/slow.bin")), "{}", r.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(7), "took {:?}", started.elapsed());
}

#[test]
fn archives_whose_headers_contradict_themselves_are_refused_naming_the_entry() {
    let f = Fixture::new();
    // A pax `size` beyond any byte count.
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("size", b"100000000000000000000".as_slice())]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append_data(&mut h, "innocent.txt", &b"hello"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let url = f.server.serve("/pax.tar", tar.clone());
    let err = f.sb.add(&url, &sha256_hex(&tar), "pax", "1", &[]).failed().to_owned();
    assert!(err.contains("innocent.txt") && err.contains("100000000000000000000"), "{err}");
    // A zip whose local header names another file than its central directory.
    let zip = Archive::new().with(Entry::file("innocent.txt", "hello")).zip();
    let at = zip.windows(12).position(|w| w == b"innocent.txt").unwrap();
    assert!(at < 64, "the first name should be the local header's");
    let mut evil = zip.clone();
    evil[at..at + 12].copy_from_slice(b"../evil.txt_");
    let url = f.server.serve("/evil.zip", evil.clone());
    let err = f.sb.add(&url, &sha256_hex(&evil), "zip", "1", &[]).failed().to_owned();
    assert!(err.contains("innocent.txt") && err.contains("../evil.txt_"), "{err}");
    assert!(f.sb.store_paths_on_disk().is_empty(), "{:?}", f.sb.store_paths_on_disk());
}

/// Every file and directory under `dir` (symlinks aside) that group or others may write.
fn writable_by_others(dir: &std::path::Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .filter(|p| {
            let m = std::fs::symlink_metadata(p).unwrap();
            !m.file_type().is_symlink() && m.permissions().mode() & 0o022 != 0
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn under_umask_000_nothing_envctl_creates_is_writable_by_others() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    let umask_000 = ["sh", "-c", "umask 000; exec \"$@\"", "sh"];
    for args in [vec!["apply", p.as_str()], vec!["store", "optimise"], vec!["store", "verify"], vec!["gc"]] {
        let out = f.sb.through(&umask_000, &args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let open = writable_by_others(&f.sb.path("envctl"));
    assert!(open.is_empty(), "writable by others: {open:?}");
    // The user's own umask comes back for the programs a session runs.
    let umask_007 = ["sh", "-c", "umask 007; exec \"$@\"", "sh"];
    let out = f.sb.through(&umask_007, &["run", "p", "--", "sh", "-c", "umask"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0007");
}

#[test]
fn a_user_who_may_only_read_the_home_can_run_list_and_verify_but_not_change_it_as_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc_geteuid() },
        0,
        "this test switches to `nobody` with setpriv: run the tests as root"
    );
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.run(&["apply", &p]).ok();
    // Let `nobody` reach the sandbox, read-only.
    std::fs::set_permissions(f.sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = list(&f.sb.store());
    let as_nobody = |args: &[&str]| {
        f.sb.through(&["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], args).output().unwrap()
    };
    for args in [
        &["run", "p", "--", "hello"][..],
        &["env", "p"],
        &["profiles"],
        &["generations", "p"],
        &["store", "ls"],
        &["store", "verify"],
    ] {
        let out = as_nobody(args);
        assert!(out.status.success(), "{args:?} as nobody: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(String::from_utf8_lossy(&as_nobody(&["run", "p", "--", "hello"]).stdout).trim(), "hello 1.0");
    let out = as_nobody(&["gc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(list(&f.sb.store()), before, "a read-only user changed the store");
}

#[test]
fn a_user_who_may_read_the_home_can_hold_none_of_its_locks_as_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc_geteuid() },
        0,
        "this test switches to `nobody` with setpriv: run the tests as root"
    );
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.run(&["apply", &p]).ok();
    f.run(&["store", "verify"]).ok();
    std::fs::set_permissions(f.sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locks: Vec<std::path::PathBuf> = common::fixture::walk(&f.sb.path("envctl"))
        .into_iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "lock"))
        .collect();
    let names: Vec<String> =
        locks.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for want in ["store.lock", "maintenance.lock", ".p.lock"] {
        assert!(names.iter().any(|n| n == want), "{want} not among {names:?}");
    }
    for lock in &locks {
        // `flock` on a read-only descriptor would be enough to freeze the owner: it must not open.
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "flock", "--shared", "--nonblock"])
            .arg(lock)
            .arg("true")
            .output()
            .unwrap();
        assert!(!out.status.success(), "`nobody` could lock `{}`", lock.display());
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(lock).unwrap().permissions());
        assert_eq!(mode & 0o077, 0, "`{}` has mode {mode:o}", lock.display());
    }
    // The reader still runs sessions and verifies, without locks.
    let as_nobody = |args: &[&str]| {
        f.sb.through(&["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], args).output().unwrap()
    };
    for args in [&["run", "p", "--", "hello"][..], &["store", "verify"]] {
        let out = as_nobody(args);
        assert!(out.status.success(), "{args:?} as nobody: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_command_waiting_for_a_lock_says_who_holds_it_and_timeout_ends_the_wait() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.run(&["apply", &p]).ok();
    let lock = f.sb.store().join(".envctl/store.lock");
    // Another program holds the store lock for a few seconds (as a GC would).
    let mut holder = std::process::Command::new("flock")
        .args(["--exclusive"])
        .arg(&lock)
        .args(["sleep", "3"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let timed = f.run(&["--timeout", "0.5", "store", "ls"]);
    let e = timed.failed();
    assert!(e.contains("gave up waiting for the lock") && e.contains("store.lock"), "{e}");
    assert!(e.contains(&format!("PID {}", holder.id())) && e.contains("flock"), "{e}");
    let waited = f.run(&["store", "ls"]);
    waited.ok();
    assert_eq!(waited.stderr.matches("waiting for the lock").count(), 1, "{}", waited.stderr);
    assert!(waited.stderr.contains(&format!("PID {}", holder.id())), "{}", waited.stderr);
    holder.wait().unwrap();
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[test]
fn a_relative_symlink_that_climbs_out_of_its_tree_is_refused() {
    // Found by the fuzz corpus replay: such a link was refused only once the whole archive was
    // unpacked; it is now refused before it is created.
    let f = Fixture::new();
    for (link, target) in [("link", "../outside"), ("lib/deep", "../../x"), ("a/b", "c/../../../y")] {
        let tar = Archive::new().with(Entry::symlink(link, target)).tar();
        let url = f.server.serve(&format!("/{}.tar", link.replace('/', "-")), tar.clone());
        let err = f.sb.add(&url, &sha256_hex(&tar), "escape", "1", &[]).failed().to_owned();
        assert!(err.contains(target) && err.contains("outside the package"), "{err}");
    }
    // Links that stay inside are fine.
    let tar = Archive::new()
        .with(Entry::file("lib64/libx.so.1", "x"))
        .with(Entry::symlink("lib64/libx.so", "libx.so.1"))
        .with(Entry::symlink("lib/libx.so", "../lib64/libx.so.1"))
        .tar();
    let url = f.server.serve("/inside.tar", tar.clone());
    f.sb.add(&url, &sha256_hex(&tar), "inside", "1", &[]).ok();
}
