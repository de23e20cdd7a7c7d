//! The apply plan as a value, through the ops layer's API (no command line): what a plan says
//! before anything happens, that a dry run's plan is the real run's, and what a second plan
//! finds after the first was carried out.

use std::path::Path;

use envctl_ops::Settings;
use envctl_ops::apply::{Action, ApplyOptions, Outcome, execute, plan, write_lock_file};
use envctl_store::NoReporter;

mod common;
use common::setup;

fn carry_out(file: &Path, settings: &Settings) -> Outcome {
    let planned = plan(file, &ApplyOptions::default(), settings).unwrap();
    let (file, lock_path) = (planned.file.clone(), planned.lock_path.clone());
    let write = |lock: &envctl_recipes::LockFile| write_lock_file(lock, &file, &lock_path, None);
    execute(planned, settings, &NoReporter, &write).unwrap().outcome
}

#[test]
fn a_plan_names_what_to_fetch_and_a_dry_run_plans_the_same() {
    let dir = envctl_testkit::tempdir();
    let settings = setup(dir.path(), &["hello", "world"]);
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "[packages]\nhello = \"1\"\nworld = \"1\"\n").unwrap();

    let real = plan(&file, &ApplyOptions::default(), &settings).unwrap();
    assert_eq!(real.action, Action::Build);
    assert_eq!(real.name, "p");
    let fetched: Vec<&str> = real.fetch.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(fetched, ["hello", "world"]);
    assert!(real.fetch.iter().all(|f| f.bytes.is_none()), "a real plan asks for no sizes");

    let dry = plan(&file, &ApplyOptions { dry_run: true, ..Default::default() }, &settings).unwrap();
    assert_eq!(dry.action, real.action);
    assert_eq!(dry.lock, real.lock, "a dry run and a real run plan the same lock");
    let sizes: Vec<u64> = dry.fetch.iter().map(|f| f.bytes.unwrap()).collect();
    let on_disk = ["hello", "world"]
        .map(|n| std::fs::metadata(dir.path().join(format!("{n}-1.0.tar.gz"))).unwrap().len());
    assert_eq!(sizes, on_disk);
    // Planning wrote nothing: no lock, no profile.
    assert!(!dir.path().join("p.lock").exists());
    assert!(!dir.path().join("home/profiles/p").exists());
}

#[test]
fn after_an_apply_the_plan_is_to_do_nothing_and_a_new_package_is_all_it_fetches() {
    let dir = envctl_testkit::tempdir();
    let settings = setup(dir.path(), &["hello", "world"]);
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "[packages]\nhello = \"1\"\n").unwrap();
    assert_eq!(carry_out(&file, &settings), Outcome::Switched);
    assert!(dir.path().join("p.lock").is_file());

    let again = plan(&file, &ApplyOptions::default(), &settings).unwrap();
    assert_eq!(again.action, Action::UpToDate);
    assert!(again.fetch.is_empty());

    std::fs::write(&file, "[packages]\nhello = \"1\"\nworld = \"1\"\n").unwrap();
    let grown = plan(&file, &ApplyOptions::default(), &settings).unwrap();
    assert_eq!(grown.action, Action::Build);
    assert_eq!(grown.fetch.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["world"]);
    assert_eq!(carry_out(&file, &settings), Outcome::Switched);
}
