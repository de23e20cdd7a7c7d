//! Source keys across versions: a store made before key version 2 recorded its paths under the
//! version-1 key, and must keep finding them without fetching again; a spec version 1 could not
//! say is recorded and found under version 2 alone.

use envctl_store::{
    Caches, InstallRequest, Installer, Name, NoReporter, Sha256, Store, StoreOptions, Unpack, Version,
};
use envctl_testkit::{Archive, Entry, sha256_hex};

fn request(url: String, bytes: &[u8], unpack: Unpack) -> InstallRequest {
    InstallRequest {
        url,
        sha256: Sha256::parse(&sha256_hex(bytes)).unwrap(),
        name: Name::parse("cuda-cudart").unwrap(),
        version: Version::parse("12.4.127").unwrap(),
        unpack,
        bytecode: false,
        references: Vec::new(),
        store_path: None,
    }
}

#[test]
fn a_path_recorded_under_the_version_1_key_is_found_without_a_fetch() {
    let home = envctl_testkit::tempdir();
    let bytes = Archive::new()
        .with(Entry::file("top/lib/libcudart.so", "elf"))
        .with(Entry::file("top/LICENSE", "l"))
        .tar_gz();
    let file = home.path().join("cudart.tar.gz");
    std::fs::write(&file, &bytes).unwrap();
    let unpack = Unpack {
        strip_components: 1,
        moves: [("LICENSE".to_owned(), "share/licenses/cudart/LICENSE".to_owned())].into(),
        ..Unpack::default()
    };
    let request = request(file.display().to_string(), &bytes, unpack);
    let store_dir = home.path().join("store");
    let first = {
        let store = Store::open(&store_dir, StoreOptions::default()).unwrap();
        Installer::new(&store, &Caches::none()).install(&request, &NoReporter).unwrap()
    };
    assert!(first.fetched);
    assert!(first.path.join("share/licenses/cudart/LICENSE").is_file());

    // Make the database what a store from before version 2 holds: the same path under the
    // version-1 key only.
    let keys = request.source_keys(request.format().unwrap());
    assert_eq!(keys.len(), 2);
    assert!(keys[0].starts_with("2 {"), "{}", keys[0]);
    let db = rusqlite::Connection::open(store_dir.join(".envctl/db.sqlite")).unwrap();
    let changed = db.execute("UPDATE sources SET key = ?1 WHERE key = ?2", [&keys[1], &keys[0]]).unwrap();
    assert_eq!(changed, 1, "the install recorded its version-2 key");
    drop(db);

    std::fs::remove_file(&file).unwrap();
    let store = Store::open(&store_dir, StoreOptions::default()).unwrap();
    assert_eq!(store.find(&request).unwrap().map(|i| i.path), Some(first.path.clone()));
    let again = Installer::new(&store, &Caches::none()).install(&request, &NoReporter).unwrap();
    assert!(!again.fetched, "the archive is gone: found by its version-1 key or it would have failed");
    assert_eq!(again.path, first.path);
}

#[test]
fn a_spec_version_1_could_not_say_is_found_again_by_version_2() {
    let home = envctl_testkit::tempdir();
    let bytes = Archive::new().with(Entry::file("bin/tool", "x")).tar();
    let file = home.path().join("tool.tar");
    std::fs::write(&file, &bytes).unwrap();
    let request = request(
        file.display().to_string(),
        &bytes,
        Unpack { subdir: Some("opt/my tools".into()), ..Unpack::default() },
    );
    assert_eq!(request.source_keys(request.format().unwrap()).len(), 1);
    let store = Store::open(&home.path().join("store"), StoreOptions::default()).unwrap();
    let caches = Caches::none();
    let installer = Installer::new(&store, &caches);
    let first = installer.install(&request, &NoReporter).unwrap();
    assert!(first.path.join("opt/my tools/bin/tool").is_file());
    std::fs::remove_file(&file).unwrap();
    let again = installer.install(&request, &NoReporter).unwrap();
    assert_eq!((again.fetched, again.path), (false, first.path));
}
