//! History: deleting generations safely (a bare number is not an age, deletions can be
//! rehearsed, `gc --delete-older-than` as Nix's collector does) and `[env]` changes that make
//! generations.

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

/// Issue 27, 2: a rollback stands. A session started from the project's file leaves the profile
/// where the user put it while the file is what built the generation left; a changed file, or
/// `apply`, builds again.
#[test]
fn a_rollback_stands_until_the_file_changes_or_the_user_applies() {
    let f = Fixture::new();
    let project = f.sb.path("proj");
    std::fs::create_dir_all(&project).unwrap();
    let file = project.join("envctl.toml");
    let in_project = |args: &[&str]| {
        let out = f.sb.command(args).current_dir(&project).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{args:?}: {stderr}");
        (stdout.trim().to_owned(), stderr)
    };
    let current = || std::fs::read_link(f.profiles_dir().join("p")).unwrap().display().to_string();
    std::fs::write(&file, "name = \"p\"\n[packages]\nhello = \"1\"\n").unwrap();
    in_project(&["apply", "envctl.toml"]);
    std::fs::write(&file, "name = \"p\"\n[packages]\nhello = \"2\"\n").unwrap();
    in_project(&["apply", "envctl.toml"]);
    assert_eq!(current(), "p-2-link");

    f.run(&["rollback", "p"]).ok();
    for args in [&["run", "--", "hello"][..], &["env"][..]] {
        let (out, err) = in_project(args);
        assert_eq!(current(), "p-1-link", "`{args:?}` undid the rollback: {err}");
        assert!(err.contains("rolled back"), "{err}");
        if args[0] == "run" {
            assert_eq!(out, "hello 1.0");
        }
    }
    assert!(!f.profiles_dir().join("p-3-link").exists());

    // The file changes: the session builds it.
    std::fs::write(&file, "name = \"p\"\n[packages]\nhello = \"2\"\n[env]\nX = \"1\"\n").unwrap();
    let (out, _) = in_project(&["run", "--", "hello"]);
    assert_eq!((out.as_str(), current().as_str()), ("hello 2.0", "p-3-link"));

    // Rolled back again, then applied on purpose: the file wins.
    f.run(&["rollback", "p"]).ok();
    assert_eq!(current(), "p-2-link");
    in_project(&["apply", "envctl.toml"]);
    assert_eq!(current(), "p-4-link");
    let (out, err) = in_project(&["run", "--", "hello"]);
    assert_eq!(out, "hello 2.0");
    assert!(!err.contains("rolled back"), "{err}");
}

/// Issue 27, 5: `envctl delete PROFILE` removes a profile and its generations' roots; GC then
/// frees what only they used, and the name's numbers are never given twice.
#[test]
fn delete_removes_a_profile_and_its_roots_and_gc_frees_its_paths() {
    let f = two_generations();
    let listed = |f: &Fixture| f.run(&["profiles"]).stdout;
    let r = f.run(&["delete", "p", "--dry-run"]);
    r.ok();
    assert!(r.stderr.contains("would delete profile `p` and its 2 generations (1, 2)"), "{}", r.stderr);
    assert!(f.profiles_dir().join("p").exists());

    let r = f.run(&["delete", "q"]);
    assert!(r.failed().contains("there is no profile `q`"), "{}", r.stderr);

    let r = f.run(&["delete", "p"]);
    r.ok();
    assert!(r.stderr.contains("deleted profile `p` and its 2 generations (1, 2)"), "{}", r.stderr);
    let left: Vec<String> = std::fs::read_dir(f.profiles_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n == "p" || n.starts_with("p-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!listed(&f).contains('p'), "{}", listed(&f));
    assert!(f.run(&["run", "p", "--", "hello"]).failed().contains("no profile `p`"));

    let r = f.run(&["gc"]);
    r.ok();
    // hello 1 and 2, and the two generations.
    assert!(r.stderr.contains("removed 4 store paths") && r.stderr.contains("0 kept alive"), "{}", r.stderr);

    // The same name again: a new profile, numbered on from the deleted one.
    f.run(&["apply", &f.profile("p", "[packages]\nhello = \"1\"\n")]).ok();
    assert_eq!(std::fs::read_link(f.profiles_dir().join("p")).unwrap().display().to_string(), "p-3-link");
}
