//! Garbage collection through the library: what a profile's generations reach stays, what
//! nothing reaches goes, a session's temporary root keeps its paths, and a dry run removes nothing.

mod common;

use common::TestStore;
use envctl_store::{Store, StoreOptions, TempRoot};

fn name_of(path: &std::path::Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn what_no_root_reaches_is_collected_and_a_dry_run_only_says_so() {
    let mut t = TestStore::new();
    let kept = t.package("kept", &[("bin/kept", "k")]);
    let dropped = t.package("dropped", &[("bin/dropped", "d")]);
    let generation = t.apply("p", &[TestStore::input("kept", &kept, 0)]);

    let dry = t.gc(true).unwrap();
    let named: Vec<&str> = dry.removed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(named, [name_of(&dropped).as_str()]);
    assert!(t.has(&dropped), "a dry run removed something");

    let report = t.gc(false).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(report.bytes > 0);
    assert!(!t.has(&dropped) && !dropped.exists());
    // The generation and the package it references stay.
    assert!(t.has(&generation) && t.has(&kept));
    assert_eq!(report.kept, 2);
    // Nothing left to collect.
    assert!(t.gc(false).unwrap().removed.is_empty());
}

#[test]
fn a_sessions_temporary_root_keeps_its_paths_until_it_is_dropped() {
    let mut t = TestStore::new();
    let used = t.package("used", &[("bin/used", "u")]);
    let root = TempRoot::create(t.home(), &[name_of(&used)]).unwrap();
    assert!(t.gc(false).unwrap().removed.is_empty());
    assert!(t.has(&used));
    drop(root);
    let report = t.gc(false).unwrap();
    assert_eq!(report.removed.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), [name_of(&used)]);
}

#[test]
fn deleting_a_generation_lets_its_packages_go_and_keeps_the_current_ones() {
    let mut t = TestStore::new();
    let one = t.package("one", &[("bin/one", "1")]);
    let two = t.package("two", &[("bin/two", "2")]);
    let first = t.apply("p", &[TestStore::input("one", &one, 0)]);
    let second = t.apply("p", &[TestStore::input("two", &two, 0)]);
    // Generation 1 is still a root: nothing goes.
    assert!(t.gc(false).unwrap().removed.is_empty());
    let profiles = envctl_store::Profiles::open(t.home()).unwrap();
    let lock = profiles.lock("p").unwrap();
    profiles.delete(&lock, "p", &[1]).unwrap();
    drop(lock);
    let report = t.gc(false).unwrap();
    let mut removed: Vec<String> = report.removed.into_iter().map(|(n, _)| n).collect();
    removed.sort();
    let mut expected = vec![name_of(&one), name_of(&first)];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(t.has(&second) && t.has(&two));
}

#[test]
fn only_a_store_opened_to_collect_collects() {
    let t = TestStore::new();
    let err = t.store().gc(t.home(), false).unwrap_err().to_string();
    assert!(err.contains("open_collector"), "{err}");
}

/// A collector takes the GC lock and then the store lock exclusively, never upgrading a shared
/// hold: it waits for a store a command has open (an install, a switch), and a second collector
/// waits for the first; neither waits for ever.
#[test]
fn a_collector_waits_for_open_stores_and_for_another_collector() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let mut t = TestStore::new();
    t.package("kept", &[("bin/kept", "k")]);
    let dir = t.home().join("store");
    let released = AtomicBool::new(false);
    let second_released = AtomicBool::new(false);
    std::thread::scope(|s| {
        // `t` holds the store open (shared) until it is released.
        let collector = s.spawn(|| {
            let c = Store::open_collector(&dir, StoreOptions::default()).unwrap();
            assert!(released.load(Ordering::SeqCst), "the collector ran beside an open store");
            c
        });
        std::thread::sleep(Duration::from_millis(300));
        released.store(true, Ordering::SeqCst);
        t.close();
        let first = collector.join().unwrap();
        let second = s.spawn(|| {
            let c = Store::open_collector(&dir, StoreOptions::default()).unwrap();
            assert!(second_released.load(Ordering::SeqCst), "two collectors ran at once");
            drop(c);
        });
        std::thread::sleep(Duration::from_millis(300));
        second_released.store(true, Ordering::SeqCst);
        drop(first);
        second.join().unwrap();
    });
}
