//! A store in a temporary home, and packages made from a few files, for tests of one layer of
//! the store (farm, generations, GC) through its library API, without the command line.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use envctl_store::{
    Caches, FarmInput, InstallRequest, Installer, Name, NoReporter, Profiles, Sha256, Store, StoreOptions,
    Unpack, Version,
};
use envctl_testkit::{Archive, Entry, TempDir, sha256_hex};

pub struct TestStore {
    pub home: TempDir,
    /// The store, open as every command but `gc` opens it (`None` only inside [`TestStore::gc`]).
    store: Option<Store>,
}

impl TestStore {
    /// An empty store at `<home>/store`.
    pub fn new() -> TestStore {
        let home = envctl_testkit::tempdir();
        let store = Store::open(&home.path().join("store"), StoreOptions::default()).unwrap();
        TestStore { home, store: Some(store) }
    }

    /// The open store.
    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("open outside gc")
    }

    /// Closes the store (a test then opens it its own way).
    pub fn close(&mut self) {
        self.store = None;
    }

    /// Collects garbage as `envctl gc` does: the store closed, opened as a collector, then
    /// opened again.
    pub fn gc(&mut self, dry_run: bool) -> envctl_store::Result<envctl_store::GcReport> {
        let dir = self.home().join("store");
        drop(self.store.take());
        let report =
            Store::open_collector(&dir, StoreOptions::default()).and_then(|c| c.gc(self.home(), dry_run));
        self.store = Some(Store::open(&dir, StoreOptions::default()).unwrap());
        report
    }

    /// The home (profiles and GC roots live here).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Installs the package `name` 1.0 made of `files` (path, contents) from a local archive and
    /// returns its store path.
    pub fn package(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let archive = files.iter().fold(Archive::new(), |a, (path, text)| a.with(Entry::file(path, *text)));
        let bytes = archive.tar_gz();
        let file = self.home().join(format!("{name}-{}.tar.gz", sha256_hex(&bytes)));
        std::fs::write(&file, &bytes).unwrap();
        let request = InstallRequest {
            url: file.display().to_string(),
            sha256: Sha256::parse(&sha256_hex(&bytes)).unwrap(),
            name: Name::parse(name).unwrap(),
            version: Version::parse("1.0").unwrap(),
            unpack: Unpack::default(),
            bytecode: false,
            references: Vec::new(),
            store_path: None,
        };
        Installer::new(self.store(), &Caches::none()).install(&request, &NoReporter).unwrap().path
    }

    /// A farm input for a package, at `priority`.
    pub fn input(name: &str, path: &Path, priority: i64) -> FarmInput {
        FarmInput {
            name: name.to_owned(),
            path: path.to_path_buf(),
            priority,
            remap: Default::default(),
            real_dirs: Vec::new(),
        }
    }

    /// Builds a generation of `inputs` for `profile` and makes it the profile's current one;
    /// returns its store path.
    pub fn apply(&self, profile: &str, inputs: &[FarmInput]) -> PathBuf {
        let built = self.store().add_generation(profile, inputs, "", None).unwrap();
        let profiles = Profiles::open(self.home()).unwrap();
        let lock = profiles.lock(profile).unwrap();
        profiles.add_generation(&lock, profile, &built.path).unwrap();
        built.path
    }

    /// Whether the store still has a valid path of this full path.
    pub fn has(&self, path: &Path) -> bool {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        self.store().list().unwrap().iter().any(|r| r.name == name) && path.is_dir()
    }
}
