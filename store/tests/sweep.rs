//! The sweep of what crashed processes leave: a process marks the store before it may leave an
//! unregistered directory and unmarks it when everything it started is settled; an idle store
//! reads its whole directory only when a marker says someone died in between, and a collector
//! always does.

mod common;

use std::path::{Path, PathBuf};

use common::TestStore;
use envctl_store::{Store, StoreOptions};

/// A directory with a store path's name that the database does not know: what an install
/// killed between its rename and its registration leaves.
fn unregistered(store: &Path) -> PathBuf {
    let dir = store.join("0123456789abcdfghijklmnpqrsvwxyz-leftover-1.0");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/leftover"), "x").unwrap();
    dir
}

fn markers(store: &Path) -> Vec<String> {
    match std::fs::read_dir(store.join(".envctl/unsettled")) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn an_install_marks_the_store_until_it_is_closed_with_everything_registered() {
    let mut t = TestStore::new();
    let store = t.home().join("store");
    assert!(markers(&store).is_empty(), "opening marks nothing");
    t.package("one", &[("bin/one", "1")]);
    t.package("two", &[("bin/two", "2")]);
    assert_eq!(markers(&store).len(), 1, "one marker per process, whatever it installs");
    t.close();
    assert!(markers(&store).is_empty(), "a store closed with everything registered keeps a marker");
}

#[test]
fn an_idle_store_reads_the_whole_store_only_when_a_dead_process_left_a_marker() {
    let mut t = TestStore::new();
    let kept = t.package("kept", &[("bin/kept", "k")]);
    t.close();
    let store = t.home().join("store");
    let leftover = unregistered(&store);

    // Nobody died with a rename unsettled: the store's directory is not read.
    drop(Store::open(&store, StoreOptions::default()).unwrap());
    assert!(leftover.is_dir());

    // A process that died after its rename left its marker.
    std::fs::create_dir_all(store.join(".envctl/unsettled")).unwrap();
    std::fs::write(store.join(".envctl/unsettled/4242-1"), "").unwrap();
    let reopened = Store::open(&store, StoreOptions::default()).unwrap();
    assert!(!leftover.exists(), "the unregistered directory was not swept");
    assert!(markers(&store).is_empty(), "the dead process's marker stays");
    assert!(kept.is_dir(), "a registered path was swept");
    assert!(reopened.list().unwrap().iter().any(|r| kept.ends_with(&r.name)));
}

#[test]
fn a_collector_sweeps_unregistered_directories_without_a_marker_and_leaves_none() {
    let mut t = TestStore::new();
    let kept = t.package("kept", &[("bin/kept", "k")]);
    let dropped = t.package("dropped", &[("bin/dropped", "d")]);
    t.apply("p", &[TestStore::input("kept", &kept, 0)]);
    let store = t.home().join("store");
    // Left by a store made before the markers existed.
    let leftover = unregistered(&store);

    let report = t.gc(false).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(!leftover.exists() && !dropped.exists() && kept.is_dir());
    t.close();
    assert!(markers(&store).is_empty(), "a finished GC keeps its marker");
}
