//! Deleting history: a bare number is not an age, deletions can be rehearsed, and `gc` can delete
//! old generations and collect in one step, as Nix's collector does.

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
