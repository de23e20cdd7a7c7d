//! What a person reads: listings and their empty states, names suggested for typos, `-v`,
//! retries and colours on a terminal, completions and the manual page, `doctor`, and JSON.

mod common;

use common::fixture::Fixture;

#[test]
fn profiles_lists_with_a_header_says_so_when_empty_and_a_typo_gets_the_nearest_name() {
    let f = Fixture::new();
    let r = f.run(&["profiles"]);
    r.ok();
    assert!(r.stdout.is_empty() && r.stderr.contains("no profiles in"), "{}{}", r.stdout, r.stderr);
    f.run(&["apply", &f.profile("vision", "[packages]\nhello = \"1\"\n")]).ok();
    let r = f.run(&["profiles"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("PROFILE") && lines[0].contains("PACKAGES"), "{}", r.stdout);
    assert!(lines[1].starts_with("vision"), "{}", r.stdout);
    // Right-aligned under their headers: each number ends where its header ends.
    for header in ["GENERATION", "PACKAGES"] {
        let end = lines[0].find(header).unwrap() + header.len();
        assert!(lines[1][..end].ends_with(|c: char| c.is_ascii_digit()), "{header}:\n{}", r.stdout);
        assert_eq!(lines[1].as_bytes().get(end), Some(&b' '), "{header}:\n{}", r.stdout);
    }
    for args in [&["run", "visoin", "--", "hello"][..], &["generations", "visoin"], &["env", "visoin"]] {
        let err = f.run(args).failed().to_owned();
        assert!(
            err.contains("there is no profile `visoin`") && err.contains("did you mean `vision`?"),
            "{err}"
        );
    }
}

#[test]
fn reading_commands_create_no_home_and_no_lock_for_a_profile_that_does_not_exist() {
    let f = Fixture::new();
    let home = f.sb.path("envctl");
    for args in [
        &["profiles"][..],
        &["generations", "nope"],
        &["rollback", "nope"],
        &["run", "nope", "--", "true"],
        &["env", "nope"],
        &["diff", "nope"],
        &["doctor"],
    ] {
        let _ = f.run(args);
        assert!(!home.exists(), "`envctl {}` created the home", args.join(" "));
    }
    f.run(&["apply", &f.profile("p", "[packages]\nhello = \"1\"\n")]).ok();
    for args in [&["generations", "nope"][..], &["rollback", "nope"], &["run", "nope", "--", "true"]] {
        assert_eq!(f.run(args).code, 1);
    }
    let left: Vec<String> =
        common::list(&f.profiles_dir()).into_iter().filter(|n| n.contains("nope")).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn store_info_takes_a_relative_link_to_a_profile() {
    let f = Fixture::new();
    f.run(&["apply", &f.profile("nlp", "[packages]\nhello = \"1\"\n")]).ok();
    let mut c = f.sb.command(&["store", "info", "envctl/profiles/nlp"]);
    c.current_dir(f.sb.dir.path());
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("-profile-nlp"));
}

/// Issue 11, 8: `-v` adds nothing to `apply`.
#[test]
fn apply_with_v_says_what_it_did_and_how_long_it_took() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    let quiet = f.run(&["apply", &p]);
    quiet.ok();
    assert!(!quiet.stderr.contains("resolved"), "{}", quiet.stderr);
    let p = f.profile("q", "[packages]\nhello = \"2\"\nworld = \"1\"\n");
    let loud = f.run(&["-v", "apply", &p]);
    loud.ok();
    for phase in ["resolved", "installed the closure", "built the generation", "elapsed"] {
        assert!(loud.stderr.contains(phase), "`{phase}` missing:\n{}", loud.stderr);
    }
}

/// Runs `inner` under `script(1)`, so that its stdout and stderr are a terminal; returns what
/// the terminal showed.
fn on_terminal(inner: std::process::Command) -> String {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
    let line = std::iter::once(quote(inner.get_program()))
        .chain(inner.get_args().map(quote))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = std::process::Command::new("script");
    // A terminal that says it can show colours, whatever the environment the tests run in.
    c.args(["-qec", &line, "/dev/null"]).stdin(std::process::Stdio::null()).env("TERM", "xterm");
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().expect("script(1) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 11, 8: each download retry was reported twice on a terminal (above the bars, and again
/// as a log line). Run under `script` for a terminal, and without one.
#[test]
fn each_retry_is_reported_once_on_a_terminal_and_off_it() {
    use envctl_testkit::{Reply, sha256_hex};
    let f = Fixture::new();
    let bytes = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("x", "x")).tar_gz();
    let sha = sha256_hex(&bytes);
    for (version, terminal) in [("1.0", true), ("2.0", false)] {
        let path = format!("/flaky-{version}.tar.gz");
        f.server.set(&path, Reply::FailThen { status: 503, times: 2, body: bytes.clone() });
        let url = f.server.url(&path);
        let args = ["store", "add", url.as_str(), "--sha256", &sha, "--name", "flaky", "--version", version];
        let output = if terminal { on_terminal(f.sb.command(&args)) } else { f.run(&args).stderr };
        // A terminal's output moves the cursor instead of ending lines: count the messages.
        let retries = output.matches("; retry ").count() + output.matches("retrying after").count();
        assert_eq!(retries, 2, "terminal: {terminal}\n{output}");
    }
}

/// Completions and the manual page come from the command line's own definition; completions
/// also offer this user's profiles and the repositories' packages (issue 27, 8).
#[test]
fn completions_complete_and_the_manual_page_names_every_command() {
    let f = Fixture::new();
    f.run(&["apply", &f.profile("team", "[packages]\nhello = \"1\"\n")]).ok();
    // Ask bash itself, as a user's Tab would, with the script `completions bash` prints: it calls
    // back the envctl on PATH.
    let ask = |words: &str, cword: usize| {
        let code = format!(
            "PATH=\"$(dirname \"$1\"):$PATH\"; source <(envctl completions bash); COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_TYPE=9; _clap_complete_envctl envctl \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let out = f.sb.through(&["bash", "-c", &code, "bash"], &[]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = ask("envctl imp", 1);
    assert!(top.lines().any(|l| l == "import"), "{top}");
    let sub = ask("envctl import p", 2);
    assert!(sub.lines().any(|l| l == "pip") && sub.lines().any(|l| l == "python-build-standalone"), "{sub}");
    let profiles = ask("envctl run ''", 2);
    assert!(profiles.lines().any(|l| l == "team"), "{profiles}");
    let profiles = ask("envctl rollback te", 2);
    assert_eq!(profiles.trim(), "team");
    let packages = ask("envctl add hel", 2);
    assert_eq!(packages.trim(), "hello");
    let packages = ask("envctl shell -p wor", 3);
    assert_eq!(packages.trim(), "world");
    for shell in ["zsh", "fish"] {
        let out = f.run(&["completions", shell]);
        out.ok();
        assert!(
            out.stdout.contains("envctl") && out.stdout.contains("ENVCTL_COMPLETE"),
            "{shell}: {}",
            out.stdout
        );
    }
    let man = f.run(&["man"]);
    man.ok();
    assert!(man.stdout.contains(".TH envctl 1"), "{}", &man.stdout[..200.min(man.stdout.len())]);
    for command in ["apply", "rollback", "import", "completions"] {
        assert!(man.stdout.contains(command), "the manual page does not name `{command}`");
    }
}

/// `envctl list PROFILE`: an applied profile's packages with versions and sizes.
#[test]
fn list_shows_an_applied_profiles_packages_versions_and_sizes() {
    let f = Fixture::new();
    let p = f.profile("team", "[packages]\nhello = \"2\"\nworld = \"1\"\n");
    f.run(&["apply", &p]).ok();
    let out = f.run(&["list", "team"]);
    let header = out.ok();
    assert!(
        header.starts_with("PACKAGE") && header.contains("VERSION") && header.contains("SIZE"),
        "{header}"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("hello") && l.contains("2.0")), "{}", out.stdout);
    assert!(lines.iter().any(|l| l.starts_with("world") && l.contains("1.0")), "{}", out.stdout);
    assert!(out.stderr.contains("2 packages"), "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&f.run(&["list", "team", "--json"]).stdout).unwrap();
    let packages = json["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 2);
    assert!(packages.iter().all(|p| p["bytes"].as_u64().is_some_and(|b| b > 0)), "{json}");
    let err = f.run(&["list", "tam"]).failed().to_owned();
    assert!(err.contains("did you mean `team`"), "{err}");
}

#[test]
fn doctor_with_and_without_the_file_agree_about_a_profile_whose_file_sets_system_facts() {
    let f = Fixture::new();
    let a = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("lib/libgpu.so", "x"));
    f.publish("gpu", "1.0", &a.tar_gz(), "[system]\ndriver = \">=450\"");
    // This machine has no NVIDIA driver; the profile says which one its nodes have.
    let file = f.profile("p", "[packages]\ngpu = \"1\"\n[system]\ndriver = \"535.104.05\"\n");
    f.run(&["apply", &file]).ok();
    let with_file = f.run(&["doctor", &file]).success();
    assert!(
        with_file.stdout.contains("driver:    535.104.05    (the profile's [system])"),
        "{}",
        with_file.stdout
    );
    let without = f.run(&["doctor"]).success();
    assert!(
        without
            .stderr
            .contains("profile `p` (generation 1): its profile file's [system] sets driver 535.104.05"),
        "{}",
        without.stderr
    );
    let json: serde_json::Value =
        serde_json::from_str(&f.run(&["doctor", "--json"]).success().stdout).unwrap();
    assert_eq!(json["assumed"]["p"], "driver 535.104.05", "{json}");
    // A variable set for this command outranks the file in both, and both then say no.
    let env = [("ENVCTL_SYSTEM_DRIVER", "418.40")];
    let a = f.sb.run_env(&["doctor", &file], &env);
    let b = f.sb.run_env(&["doctor"], &env);
    for (what, run) in [("doctor FILE", &a), ("doctor", &b)] {
        assert!(run.failed().contains("gpu 1.0") && run.stderr.contains(">=450"), "{what}: {}", run.stderr);
    }
    assert!(b.stderr.contains("overridden by ENVCTL_SYSTEM_DRIVER"), "{}", b.stderr);
}

#[test]
fn an_apply_with_nothing_to_do_detects_no_driver() {
    let f = Fixture::new();
    let bin = f.sb.path("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let smi = bin.join("nvidia-smi");
    std::fs::write(&smi, "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/calls\"\nexit 6\n").unwrap();
    std::fs::set_permissions(&smi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let file = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.sb.run_env(&["apply", &file], &[("PATH", &path)]).ok();
    let calls = bin.join("calls");
    // Building looked (this machine has no kernel module to read first)...
    let looked = std::path::Path::new("/sys/module/nvidia/version").exists()
        || std::path::Path::new("/proc/driver/nvidia/version").exists();
    assert!(looked || calls.exists(), "the first apply asked nothing");
    let _ = std::fs::remove_file(&calls);
    // ...the no-op did not.
    let r = f.sb.run_env(&["apply", &file], &[("PATH", &path)]);
    assert!(r.stderr.contains("up to date"), "{}", r.stderr);
    assert!(!calls.exists(), "{}", std::fs::read_to_string(&calls).unwrap_or_default());
    f.sb.run_env(&["run", "p", "--", "true"], &[("PATH", &path)]).ok();
    assert!(!calls.exists(), "{}", std::fs::read_to_string(&calls).unwrap_or_default());
}

#[test]
fn errors_and_changes_are_coloured_on_a_terminal_unless_no_color_is_set() {
    let f = Fixture::new();
    f.run(&["apply", &f.profile("p", "[packages]\nhello = \"1\"\n")]).ok();
    let file = f.profile("p", "[packages]\nhello = \"2\"\nworld = \"1\"\n");
    let mut coloured = f.sb.command(&["apply", "--dry-run", &file]);
    coloured.env_remove("NO_COLOR");
    let out = on_terminal(coloured);
    assert!(out.contains("\u{1b}[32mchange + world 1.0"), "{out:?}");
    assert!(out.contains("\u{1b}[33mchange ~ hello 1.0 -> 2.0"), "{out:?}");
    let mut failing = f.sb.command(&["run", "nope", "--", "true"]);
    failing.env_remove("NO_COLOR");
    let out = on_terminal(failing);
    assert!(out.contains("\u{1b}[31merror:\u{1b}[0m"), "{out:?}");
    // NO_COLOR, and anything that is not a terminal, get plain text.
    let out = on_terminal(f.sb.command(&["run", "nope", "--", "true"]));
    assert!(out.contains("error: ") && !out.contains('\u{1b}'), "{out:?}");
    let mut piped = f.sb.command(&["apply", "--dry-run", &file]);
    piped.env_remove("NO_COLOR");
    let out = piped.output().unwrap();
    assert!(!out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b));
}

#[test]
fn apply_and_lock_say_what_they_did_as_json() {
    let f = Fixture::new();
    let json = |r: common::Run| -> serde_json::Value { serde_json::from_str(&r.success().stdout).unwrap() };
    let file = f.profile("p", "[packages]\nhello = \"1\"\n");
    let plan = json(f.run(&["apply", "--dry-run", "--json", &file]));
    assert_eq!(plan["outcome"], "planned", "{plan}");
    assert_eq!(plan["fetch"][0]["name"], "hello", "{plan}");
    assert!(plan["fetch"][0]["bytes"].as_u64().is_some_and(|b| b > 0), "{plan}");
    assert_eq!(plan["changes"][0], serde_json::json!({"change": "added", "name": "hello", "version": "1.0"}));
    let done = json(f.run(&["apply", "--json", &file]));
    assert_eq!(
        (done["outcome"].as_str(), done["generation"].as_u64(), done["fetched"].as_u64()),
        (Some("switched"), Some(1), Some(1)),
        "{done}"
    );
    assert!(done["path"].as_str().is_some_and(|p| std::path::Path::new(p).is_dir()), "{done}");
    let again = json(f.run(&["apply", "--json", &file]));
    assert_eq!(again["outcome"], "up-to-date", "{again}");

    let file = f.profile("p", "[packages]\nhello = \"2\"\nworld = \"1\"\n");
    let lock = json(f.run(&["lock", "--json", &file]));
    assert_eq!(lock["outcome"], "written", "{lock}");
    assert_eq!(
        lock["changes"],
        serde_json::json!([
            {"change": "changed", "name": "hello", "old": "1.0", "new": "2.0"},
            {"change": "added", "name": "world", "version": "1.0"},
        ])
    );
    assert_eq!(json(f.run(&["lock", "--json", &file]))["outcome"], "up-to-date");
}

#[test]
fn help_puts_the_global_options_apart_from_the_commands_own() {
    let sb = common::Sandbox::new();
    let help = sb.run(&["list", "--help"]).success().stdout;
    let own = help.find("\nOptions:\n").expect(&help);
    let global = help.find("\nGlobal options:\n").expect(&help);
    assert!(own < global, "{help}");
    assert!(help[own..global].contains("--tree") && !help[own..global].contains("--home"), "{help}");
    assert!(help[global..].contains("--home <DIR>") && help[global..].contains("--timeout"), "{help}");
}
