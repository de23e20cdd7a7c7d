//! The symlink farm of a generation, through `Store::add_generation`: where packages meet, who
//! wins a path two of them ship, and that the same inputs give the same generation.

mod common;

use std::path::Path;

use common::TestStore;

/// Where the farm entry `rel` of `generation` leads, resolved.
fn resolved(generation: &Path, rel: &str) -> std::path::PathBuf {
    std::fs::canonicalize(generation.join(rel)).unwrap()
}

#[test]
fn packages_meet_in_real_directories_and_each_file_links_into_its_own_package() {
    let t = TestStore::new();
    let a = t.package("a", &[("bin/a", "a"), ("share/doc/a/README", "about a")]);
    let b = t.package("b", &[("bin/b", "b")]);
    let generation = t.apply("p", &[TestStore::input("a", &a, 0), TestStore::input("b", &b, 0)]);
    // `bin` holds entries of both packages, so it is the farm's own directory.
    let bin = std::fs::symlink_metadata(generation.join("bin")).unwrap();
    assert!(bin.is_dir() && !bin.file_type().is_symlink());
    assert!(resolved(&generation, "bin/a").starts_with(std::fs::canonicalize(&a).unwrap()));
    assert!(resolved(&generation, "bin/b").starts_with(std::fs::canonicalize(&b).unwrap()));
    assert_eq!(std::fs::read_to_string(generation.join("share/doc/a/README")).unwrap(), "about a");
    // The generation is read-only, as every store path is (root could still write: the mode says).
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(bin.permissions().mode() & 0o222, 0, "{:o}", bin.permissions().mode());
}

#[test]
fn a_path_two_packages_ship_is_refused_naming_both_unless_one_has_priority() {
    let t = TestStore::new();
    let a = t.package("a", &[("bin/tool", "from a")]);
    let b = t.package("b", &[("bin/tool", "from b")]);
    let err = t.store().add_generation(
        "p",
        &[TestStore::input("a", &a, 0), TestStore::input("b", &b, 0)],
        "",
        None,
    );
    let message = err.unwrap_err().to_string();
    assert_eq!(message, "`a` and `b` both ship `bin/tool` with different contents");

    let generation = t.apply("p", &[TestStore::input("a", &a, 0), TestStore::input("b", &b, 10)]);
    assert_eq!(std::fs::read_to_string(generation.join("bin/tool")).unwrap(), "from b");
}

#[test]
fn the_same_inputs_give_the_same_generation_and_a_package_outside_the_store_is_refused() {
    let t = TestStore::new();
    let a = t.package("a", &[("bin/a", "a")]);
    let first = t.store().add_generation("p", &[TestStore::input("a", &a, 0)], "", None).unwrap();
    let again = t.store().add_generation("p", &[TestStore::input("a", &a, 0)], "", None).unwrap();
    assert_eq!(first.path, again.path);
    assert!(!again.fetched, "an identical generation is reused, not built again");

    let outside = t.home().join("not-in-the-store");
    std::fs::create_dir(&outside).unwrap();
    let err = t.store().add_generation("p", &[TestStore::input("x", &outside, 0)], "", None).unwrap_err();
    assert!(err.to_string().contains("not-in-the-store"), "{err}");
}
