//! Daily use: deleting history safely (a bare number is not an age, deletions can be rehearsed,
//! `gc --delete-older-than` as Nix's collector does), `[env]` changes that make generations,
//! sessions that replace each other, and listings and names a person reads.

mod common;

use common::fixture::Fixture;

/// Applies `p` at hello 1 then hello 2, and makes generation 1 forty days old.
fn two_generations() -> Fixture {
    let f = Fixture::new();
    f.run(&["apply", &f.profile("p", "[packages]\nhello = \"1\"\n")]).ok();
    f.run(&["apply", &f.profile("p", "[packages]\nhello = \"2\"\n")]).ok();
    let link = f.profiles_dir().join("p-1-link");
    let out =
        std::process::Command::new("touch").args(["-h", "-d", "40 days ago"]).arg(&link).output().unwrap();
    assert!(out.status.success());
    f
}

#[test]
fn a_bare_number_is_not_an_age_and_deletes_nothing() {
    let f = two_generations();
    let r = f.run(&["generations", "p", "--older-than", "30"]);
    let err = r.failed();
    assert!(err.contains("`30` has no unit") && err.contains("30d"), "{err}");
    assert!(f.profiles_dir().join("p-1-link").exists());
    let r = f.run(&["gc", "--delete-older-than", "30"]);
    assert!(r.failed().contains("has no unit"));
    assert!(f.profiles_dir().join("p-1-link").exists());
}

#[test]
fn a_deletion_can_be_rehearsed_with_dry_run() {
    let f = two_generations();
    let r = f.run(&["generations", "p", "--older-than", "30d", "--dry-run"]);
    r.ok();
    assert!(r.stderr.contains("would delete 1 generation of `p` (1)"), "{}", r.stderr);
    assert!(f.profiles_dir().join("p-1-link").exists());
    f.run(&["generations", "p", "--older-than", "30d"]).ok();
    assert!(!f.profiles_dir().join("p-1-link").exists());
}

#[test]
fn gc_delete_older_than_deletes_old_generations_then_collects_what_only_they_used() {
    let f = two_generations();
    let before = f.sb.store_paths_on_disk();
    assert!(before.iter().any(|n| n.ends_with("-hello-1.0")));
    let r = f.run(&["gc", "--delete-older-than", "30d", "--dry-run"]);
    r.ok();
    assert!(r.stderr.contains("would delete generations 1 of `p`"), "{}", r.stderr);
    assert_eq!(f.sb.store_paths_on_disk(), before);
    let r = f.run(&["gc", "--delete-older-than", "30d"]);
    r.ok();
    assert!(r.stderr.contains("deleted generations 1 of `p`"), "{}", r.stderr);
    let after = f.sb.store_paths_on_disk();
    assert!(!after.iter().any(|n| n.ends_with("-hello-1.0")), "{after:?}");
    assert_eq!(f.run(&["run", "p", "--", "hello"]).ok(), "hello 2.0");
    // The current generation is never deleted, however old.
    let out = std::process::Command::new("touch")
        .args(["-h", "-d", "400 days ago"])
        .arg(f.profiles_dir().join("p-2-link"))
        .output()
        .unwrap();
    assert!(out.status.success());
    f.run(&["gc", "--delete-older-than", "1d"]).ok();
    assert_eq!(f.run(&["run", "p", "--", "hello"]).ok(), "hello 2.0");
}

#[test]
fn removing_or_changing_a_variable_makes_a_generation_and_the_change_is_listed() {
    let f = Fixture::new();
    f.run(&["apply", &f.profile("p", "[packages]\nhello = \"1\"\n[env]\nKEEP = \"1\"\nGONE = \"2\"\n")]).ok();
    // Removing GONE used to be "up to date": the file's variables were still a subset.
    let r = f.run(&["apply", &f.profile("p", "[packages]\nhello = \"1\"\n[env]\nKEEP = \"3\"\n")]);
    r.ok();
    assert!(!r.stderr.contains("up to date"), "{}", r.stderr);
    let env = f.run(&["env", "p", "--format", "json"]);
    let vars: serde_json::Value = serde_json::from_str(&env.stdout).unwrap();
    assert!(vars.get("GONE").is_none() && vars["KEEP"] == "3", "{vars}");
    let gens = f.run(&["generations", "p"]);
    gens.ok();
    let last = gens.stdout.lines().last().unwrap().to_owned();
    assert!(
        last.contains("(current)") && last.contains("~ $KEEP \"1\" -> \"3\"") && last.contains("- $GONE"),
        "{}",
        gens.stdout
    );
    let diff = f.run(&["diff", "p", "--json"]);
    let changes: serde_json::Value = serde_json::from_str(&diff.stdout).unwrap();
    let kinds: Vec<&str> =
        changes["changes"].as_array().unwrap().iter().map(|c| c["change"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["reset", "unset"], "{changes}");
    // And applying the same file again is a no-op.
    let r = f.run(&["apply", &f.profile("p", "[packages]\nhello = \"1\"\n[env]\nKEEP = \"3\"\n")]);
    assert!(r.stderr.contains("up to date"), "{}", r.stderr);
}

#[test]
fn a_session_inside_another_replaces_it_instead_of_stacking() {
    let f = Fixture::new();
    f.run(&[
        "apply",
        &f.profile("nlp", "[packages]\nhello = \"2\"\n[env]\nNLP_ONLY = \"yes\"\nSHARED = \"nlp\"\n"),
    ])
    .ok();
    f.run(&["apply", &f.profile("vision", "[packages]\nworld = \"1\"\n[env]\nSHARED = \"vision\"\n")]).ok();
    let nlp = std::fs::canonicalize(f.profiles_dir().join("nlp")).unwrap();
    let show =
        "echo PATH=$PATH; echo NLP_ONLY=${NLP_ONLY-unset}; echo SHARED=$SHARED; echo PROFILE=$ENVCTL_PROFILE";
    let bin = env!("CARGO_BIN_EXE_envctl");
    let r = f.run(&["run", "nlp", "--", bin, "run", "vision", "--", "sh", "-c", show]);
    r.ok();
    assert!(r.stderr.contains("leaving the environment of `nlp` for `vision`"), "{}", r.stderr);
    assert!(!r.stdout.contains(&nlp.display().to_string()), "nlp's directories stayed:\n{}", r.stdout);
    assert!(
        r.stdout.contains("NLP_ONLY=unset")
            && r.stdout.contains("SHARED=vision")
            && r.stdout.contains("PROFILE=vision"),
        "{}",
        r.stdout
    );
    // The same with two `eval "$(envctl env …)"` in one shell.
    let script = format!("eval \"$(\"$0\" env nlp)\"; eval \"$(\"$0\" env vision)\"; {show}");
    let out = f.sb.through(&["sh", "-c", &script], &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(&nlp.display().to_string()), "nlp's directories stayed:\n{stdout}");
    assert!(stdout.contains("NLP_ONLY=unset") && stdout.contains("SHARED=vision"), "{stdout}");
}

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
fn a_priority_for_a_package_the_profile_does_not_have_is_an_error_with_the_nearest_name() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\nworld = \"1\"\n[priority]\nhelo = 3\n");
    let err = f.run(&["apply", &p]).failed().to_owned();
    assert!(err.contains("[priority] names `helo`") && err.contains("did you mean `hello`?"), "{err}");
    let p = f.profile("p", "[packages]\nhello = \"1\"\nworld = \"1\"\n[priority]\nhello = 3\n");
    f.run(&["apply", &p]).ok();
}

#[test]
fn lock_update_of_a_misspelt_name_suggests_the_nearest() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.run(&["lock", &p]).ok();
    let err = f.run(&["lock", &p, "--update", "helo"]).failed().to_owned();
    assert!(err.contains("did you mean `hello`?"), "{err}");
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
fn ad_hoc_packages_take_name_at_requirement_and_their_files_go_with_gc() {
    let f = Fixture::new();
    assert_eq!(f.run(&["shell", "-p", "hello@2", "--", "hello"]).ok(), "hello 2.0");
    assert_eq!(f.run(&["shell", "-p", "hello=1", "--", "hello"]).ok(), "hello 1.0");
    let err = f.run(&["shell", "-p", "Bad Name@1", "--", "true"]).failed().to_owned();
    assert!(err.contains("invalid `-p Bad Name@1`") && !err.contains("adhoc/"), "{err}");
    let adhoc = f.sb.path("envctl/adhoc");
    assert!(!common::list(&adhoc).is_empty());
    // Files untouched for more than ten minutes are collected with the store.
    for name in common::list(&adhoc) {
        let out = std::process::Command::new("touch")
            .args(["-d", "1 hour ago"])
            .arg(adhoc.join(&name))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    f.run(&["gc"]).ok();
    assert!(common::list(&adhoc).is_empty(), "{:?}", common::list(&adhoc));
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

/// Completions and the manual page come from the command line's own definition.
#[test]
fn completions_complete_and_the_manual_page_names_every_command() {
    let f = Fixture::new();
    let script = f.run(&["completions", "bash"]);
    script.ok();
    let path = f.sb.path("envctl.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    // Ask bash itself, as a user's Tab would.
    let ask = |words: &str, cword: usize| {
        let code = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _envctl envctl; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display()
        );
        let out = std::process::Command::new("bash").args(["-c", &code]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = ask("envctl imp", 1);
    assert!(top.lines().any(|l| l == "import"), "{top}");
    let sub = ask("envctl import p", 2);
    assert!(sub.lines().any(|l| l == "pip") && sub.lines().any(|l| l == "python-build-standalone"), "{sub}");
    for shell in ["zsh", "fish"] {
        let out = f.run(&["completions", shell]);
        out.ok();
        assert!(out.stdout.contains("envctl") && out.stdout.contains("import"), "{shell}");
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

/// `envctl init`, `add`, `remove`: the profile file edited from the command line, its comments
/// kept, then locked and applied; found in a parent directory.
#[test]
fn init_add_and_remove_edit_the_file_keeping_comments_and_apply_it() {
    let f = Fixture::new();
    let project = f.sb.path("team-vision");
    std::fs::create_dir_all(project.join("src/deep")).unwrap();
    let run_in = |dir: &std::path::Path, args: &[&str]| {
        let out = f.sb.command(args).current_dir(dir).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run_in(&project, &["init"]);
    assert_eq!(code, 0, "{err}");
    let file = project.join("envctl.toml");
    assert!(std::fs::read_to_string(&file).unwrap().contains("name = \"team-vision\""));
    let (code, err) = run_in(&project, &["init"]);
    assert_eq!(code, 1, "a second init must not replace the file: {err}");

    // A comment of the team's own, then `add` from a sub-directory.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[packages]\n", "[packages]\n# pinned for the paper\n");
    std::fs::write(&file, text).unwrap();
    let (code, err) = run_in(&project.join("src/deep"), &["add", "hello@1", "world"]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("# pinned for the paper")
            && text.contains("hello = \"1\"")
            && text.contains("world = \"*\""),
        "{text}"
    );
    let out = f.run(&["run", "team-vision", "--", "hello"]);
    assert_eq!(out.ok(), "hello 1.0");

    // Changing a requirement replaces it; removing a package applies again without it.
    let (code, err) = run_in(&project, &["add", "hello=2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(f.run(&["run", "team-vision", "--", "hello"]).ok(), "hello 2.0");
    let (code, err) = run_in(&project, &["remove", "world"]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("world") && text.contains("# pinned for the paper"), "{text}");
    let listed = f.run(&["list", "team-vision"]).stdout;
    assert!(!listed.contains("world") && listed.contains("hello"), "{listed}");
    let (code, err) = run_in(&project, &["remove", "helo"]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `hello`"), "{err}");

    // Nowhere to add to.
    let (code, err) = run_in(&f.sb.path("user"), &["add", "hello"]);
    assert_eq!(code, 1);
    assert!(err.contains("envctl init"), "{err}");
}

/// `envctl outdated`: what `lock --update` would move, and the newest version there is.
#[test]
fn outdated_lists_what_the_requirements_allow_and_what_is_newest() {
    let f = Fixture::new();
    let p = f.profile("team", "[packages]\nhello = \"1\"\nworld = \"*\"\n");
    f.run(&["lock", &p]).ok();
    let json: serde_json::Value = serde_json::from_str(&f.run(&["outdated", &p, "--json"]).stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"name": "hello", "locked": "1.0", "allowed": "1.0", "newest": "2.0"}]),
        "world is at its newest and is not listed"
    );
    // The requirement loosened, the lock not yet updated: 2.0 is allowed now.
    std::fs::write(&p, "[packages]\nhello = \"*\"\nworld = \"*\"\n").unwrap();
    let out = f.run(&["outdated", &p]);
    let header = out.ok();
    assert!(header.starts_with("PACKAGE") && header.contains("ALLOWED"), "{header}");
    let row = out.stdout.lines().find(|l| l.starts_with("hello")).unwrap();
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["hello", "1.0", "2.0", "2.0"]);
    assert!(out.stderr.contains("--update"), "{}", out.stderr);
    let lock = std::fs::read_to_string(f.sb.path("team.lock")).unwrap();
    assert!(lock.contains("version = \"1.0\""), "outdated must not write the lock");
}

#[test]
fn env_values_extend_path_variables_expand_home_and_refuse_unknown_names() {
    let f = Fixture::new();
    // A recipe's variable that the profile builds on rather than replaces.
    let a = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("lib/libtool.so", "x"));
    f.publish("tool", "1.0", &a.tar_gz(), "[env]\nTOOL_PLUGINS = \"${profile}/plugins\"");
    let file = f.profile(
        "p",
        "[packages]\nhello = \"1\"\ntool = \"1\"\n[env]\nPYTHONPATH = \"/my/src:${PYTHONPATH}\"\n\
         PATH = \"${PATH}:/opt/late\"\nDATA = \"$HOME/data\"\nTOOL_PLUGINS = \"/mine:${TOOL_PLUGINS}\"\n\
         PRICE = \"$$5\"\n",
    );
    f.run(&["apply", &file]).ok();
    let r = f.sb.run_env(&["env", "p", "--format", "json"], &[("PATH", "/usr/bin:/bin"), ("PYTHONPATH", "")]);
    let vars: serde_json::Value = serde_json::from_str(&r.success().stdout).unwrap();
    let generation = vars["ENVCTL_GENERATION"].as_str().unwrap();
    // Nothing on PYTHONPATH yet: no empty entry (the current directory) is left behind.
    assert_eq!(vars["PYTHONPATH"], "/my/src", "{vars}");
    assert_eq!(vars["PATH"], format!("{generation}/bin:/usr/bin:/bin:/opt/late"), "{vars}");
    assert_eq!(vars["DATA"], format!("{}/data", f.sb.path("user").display()), "{vars}");
    assert_eq!(vars["TOOL_PLUGINS"], format!("/mine:{generation}/plugins"), "{vars}");
    assert_eq!(vars["PRICE"], "$5", "{vars}");
    // With a PYTHONPATH outside, the profile's entry goes first and the outside one is kept.
    let r = f.sb.run_env(&["env", "p", "--format", "json"], &[("PYTHONPATH", "/outside")]);
    let vars: serde_json::Value = serde_json::from_str(&r.success().stdout).unwrap();
    assert_eq!(vars["PYTHONPATH"], "/my/src:/outside", "{vars}");

    // A typo is refused with the file, the line and the name it was probably meant to be.
    let bad = f.profile("q", "[packages]\nhello = \"1\"\n[env]\nX = \"${profil}/bin\"\n");
    let err = f.run(&["apply", &bad]).failed().to_owned();
    assert!(
        err.contains("q.toml") && err.contains("line 4") && err.contains("did you mean `${profile}`"),
        "{err}"
    );
}

/// `envctl shell p` in `shell`, with `rc` (relative to the sandbox's home) holding `rc_text`,
/// reading `commands` on its input; returns what it printed.
fn shell_session(f: &Fixture, shell: &std::path::Path, rc: &str, rc_text: &str, commands: &str) -> String {
    use std::io::Write;
    let rc = f.sb.path("user").join(rc);
    std::fs::create_dir_all(rc.parent().unwrap()).unwrap();
    std::fs::write(&rc, rc_text).unwrap();
    let mut c = f.sb.command(&["shell", "p"]);
    c.env("SHELL", shell).env("PATH", "/usr/local/bin:/usr/bin:/bin");
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(commands.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{shell:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn the_profile_comes_first_after_bash_zsh_and_fish_read_the_users_startup_files() {
    let f = Fixture::new();
    f.run(&["apply", &f.profile("p", "[packages]\nhello = \"1\"\n[env]\nMODE = \"profile\"\n")]).ok();
    let generation = std::fs::canonicalize(f.profiles_dir().join("p")).unwrap();
    let first = format!("PATH={}/bin:", generation.display());
    let check = |shell: &str, out: &str| {
        let line = |key: &str| out.lines().find(|l| l.starts_with(key)).unwrap_or_default().to_owned();
        // The profile first, what the startup file added kept after it, its variable overridden.
        assert!(line("PATH=").starts_with(&first), "{shell}: {out}");
        assert!(line("PATH=").contains("/opt/conda/bin"), "{shell}: {out}");
        assert_eq!(line("MODE="), "MODE=profile", "{shell}: {out}");
        assert!(line("PROMPT=").contains("(envctl:p)"), "{shell}: {out}");
        assert_eq!(line("HELLO="), "HELLO=hello 1.0", "{shell}: {out}");
    };
    let posix = "echo PATH=$PATH\necho MODE=$MODE\necho PROMPT=$PS1\necho HELLO=$(hello)\nexit\n";
    let rc = "export PATH=/opt/conda/bin:$PATH\nexport MODE=rc\nPS1='$ '\n";
    let out = shell_session(&f, std::path::Path::new("/bin/bash"), ".bashrc", rc, posix);
    check("bash", &out);
    let zsh = envctl_testkit::tools::tool("zsh", "zsh");
    let out = shell_session(&f, &zsh, ".zshrc", rc, posix);
    check("zsh", &out);
    let fish = envctl_testkit::tools::tool("fish", "fish");
    let fish_rc = "set -gx PATH /opt/conda/bin $PATH\nset -gx MODE rc\n";
    let commands = "echo PATH=(string join : $PATH)\necho MODE=$MODE\necho PROMPT=(fish_prompt)\necho HELLO=(hello)\nexit\n";
    let out = shell_session(&f, &fish, ".config/fish/config.fish", fish_rc, commands);
    check("fish", &out);
    // GC removes the startup files with their (now stale) roots.
    f.run(&["gc"]).ok();
    let left: Vec<_> = std::fs::read_dir(f.sb.path("envctl/gcroots/tmp")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
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
fn a_lock_keeps_relative_path_sources_relative_so_another_clone_applies_it_frozen() {
    let sb = common::Sandbox::new();
    let project = sb.path("clone-a");
    std::fs::create_dir_all(project.join("recipes")).unwrap();
    std::fs::create_dir_all(project.join("artifacts")).unwrap();
    let a = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file_mode(
        "bin/hello",
        "#!/bin/sh\necho hi\n",
        0o755,
    ));
    let bytes = a.tar_gz();
    std::fs::write(project.join("artifacts/hello-1.0.tar.gz"), &bytes).unwrap();
    std::fs::write(
        project.join("recipes/hello-1.0.toml"),
        format!(
            "name = \"hello\"\nversion = \"1.0\"\n[[source]]\nurl = \"../artifacts/hello-1.0.tar.gz\"\nsha256 = \"{}\"\n",
            envctl_testkit::sha256_hex(&bytes)
        ),
    )
    .unwrap();
    std::fs::write(project.join("p.toml"), "[packages]\nhello = \"1\"\n").unwrap();
    sb.config(&format!("recipes = [\"{}\"]", project.join("recipes").display()));
    sb.run(&["lock", &project.join("p.toml").display().to_string()]).ok();
    let lock = std::fs::read_to_string(project.join("p.lock")).unwrap();
    assert!(lock.contains("url = \"artifacts/hello-1.0.tar.gz\""), "{lock}");
    assert!(!lock.contains(&project.display().to_string()), "{lock}");

    // Another clone, elsewhere; the first one is gone.
    let other = sb.path("elsewhere/clone-b");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::rename(&project, &other).unwrap();
    sb.config(&format!("recipes = [\"{}\"]", other.join("recipes").display()));
    let file = other.join("p.toml").display().to_string();
    sb.run(&["apply", "--frozen", &file]).ok();
    assert_eq!(sb.run(&["run", "p", "--", "hello"]).ok(), "hi");
    // Applying recorded the store path in the lock, not this clone's absolute paths.
    let after = std::fs::read_to_string(other.join("p.lock")).unwrap();
    assert!(
        after.contains("url = \"artifacts/hello-1.0.tar.gz\"") && after.contains("store-path"),
        "{after}"
    );
    assert!(!after.contains(&other.display().to_string()), "{after}");
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

/// A profile `p` of `app` (needing hello and world) and `tool` (needing world), applied from
/// `envctl.toml` in `proj/`.
fn with_dependencies() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new();
    let a = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("share/app", "a"));
    f.publish("app", "1.0", &a.tar_gz(), "[dependencies]\nhello = \"1\"\nworld = \"1\"");
    let t = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("share/tool", "t"));
    f.publish("tool", "1.0", &t.tar_gz(), "[dependencies]\nworld = \"1\"");
    let proj = f.sb.path("proj/src/deep");
    std::fs::create_dir_all(&proj).unwrap();
    let file = f.sb.path("proj/envctl.toml");
    std::fs::write(&file, "name = \"p\"\n[packages]\napp = \"1\"\ntool = \"1\"\n").unwrap();
    f.run(&["apply", &file.display().to_string()]).ok();
    (f, proj)
}

#[test]
fn list_tree_why_and_graph_read_an_applied_profile() {
    let (f, _) = with_dependencies();
    let tree = f.run(&["list", "p", "--tree"]).success().stdout;
    assert_eq!(tree, "app 1.0\n├── hello 1.0\n└── world 1.0\ntool 1.0\n└── world 1.0\n", "{tree}");
    let why = f.run(&["why", "p", "world"]).success().stdout;
    assert_eq!(
        why, "app 1.0    (asked for by profile `p`, generation 1)\n└─ world 1.0    (needs world)\n",
        "{why}"
    );
    let graph = f.run(&["graph", "p"]).success().stdout;
    assert!(graph.contains("app 1.0 -> hello, world\n") && graph.contains("tool 1.0 -> world\n"), "{graph}");
    // The file gives the same graph, with each edge's requirement.
    let file = f.sb.path("proj/envctl.toml").display().to_string();
    assert_eq!(f.run(&["graph", &file]).success().stdout, graph);
    let why = f.run(&["why", &file, "world"]).success().stdout;
    assert!(why.contains("└─ world 1.0    (needs world 1)"), "{why}");
    let err = f.run(&["why", "q", "world"]).failed().to_owned();
    assert!(err.contains("there is no profile `q`"), "{err}");
}

#[test]
fn run_env_and_list_find_envctl_toml_in_a_parent_and_run_takes_the_command_without_dashes() {
    let (f, deep) = with_dependencies();
    let run = |args: &[&str]| {
        let mut c = f.sb.command(args);
        c.current_dir(&deep);
        common::Run::from(c.output().unwrap())
    };
    // A profile, then the command and its options, no `--`.
    assert_eq!(f.run(&["run", "p", "hello", "--version"]).ok(), "hello 1.0");
    assert_eq!(f.run(&["run", "p", "sh", "-c", "echo $ENVCTL_PROFILE"]).ok(), "p");
    // No profile: `--`, then the command, in the profile envctl.toml names.
    assert_eq!(run(&["run", "--", "sh", "-c", "echo $ENVCTL_PROFILE"]).ok(), "p");
    let env = run(&["env", "--format", "json"]).success().stdout;
    assert!(env.contains("\"ENVCTL_PROFILE\": \"p\""), "{env}");
    let list = run(&["list"]).success().stdout;
    assert!(list.starts_with("PACKAGE") && list.contains("tool"), "{list}");
    // Nowhere to find one: says where it looked.
    let err = f.run(&["list"]).failed().to_owned();
    assert!(err.contains("no `envctl.toml` here or in a parent directory"), "{err}");
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
