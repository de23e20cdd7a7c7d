//! Library-level tests of batch installs: the bound on parallel downloads, and what a reporter
//! is told.

use std::sync::Mutex;
use std::time::Duration;

use envctl_store::{InstallRequest, Name, Reporter, Sha256, Store, StoreOptions, Unpack, Version};
use envctl_testkit::{Archive, Entry, Reply, Server, sha256_hex};

#[derive(Default)]
struct Counting {
    state: Mutex<(usize, usize, u64, usize)>, // in flight, most in flight, bytes, finished
}

impl Reporter for Counting {
    fn download_started(&self, _id: usize, _url: &str, _size: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        s.0 += 1;
        s.1 = s.1.max(s.0);
    }
    fn download_progress(&self, _id: usize, bytes: u64) {
        self.state.lock().unwrap().2 += bytes;
    }
    fn finished(&self, _id: usize) {
        let mut s = self.state.lock().unwrap();
        s.0 -= 1;
        s.3 += 1;
    }
}

#[test]
fn install_all_runs_at_most_jobs_downloads_at_once_and_reports_every_byte() {
    let server = Server::start();
    let home = envctl_testkit::tempdir();
    let mut requests = Vec::new();
    let mut total = 0u64;
    for i in 0..6 {
        let bytes =
            Archive::new().with(Entry::file(&format!("lib/lib{i}.so"), vec![i as u8; 10_000])).tar_gz();
        total += bytes.len() as u64;
        let path = format!("/p{i}.tar.gz");
        server.set(&path, Reply::Slow { body: bytes.clone(), delay: Duration::from_millis(300) });
        requests.push(InstallRequest {
            url: server.url(&path),
            sha256: Sha256::parse(&sha256_hex(&bytes)).unwrap(),
            name: Name::parse(&format!("p{i}")).unwrap(),
            version: Version::parse("1.0").unwrap(),
            unpack: Unpack::default(),
            bytecode: false,
            references: Vec::new(),
            store_path: None,
        });
    }
    let store =
        Store::open(&home.path().join("store"), StoreOptions { jobs: 3, ..StoreOptions::default() }).unwrap();
    let reporter = Counting::default();
    let results =
        envctl_store::Installer::new(&store, &envctl_store::Caches::none()).install_all(&requests, &reporter);
    let paths: Vec<_> = results.into_iter().map(|r| r.unwrap().path).collect();
    for (i, p) in paths.iter().enumerate() {
        assert!(p.join(format!("lib/lib{i}.so")).is_file());
    }
    let (in_flight, most, bytes, finished) = *reporter.state.lock().unwrap();
    assert_eq!((in_flight, finished), (0, 6));
    assert!(most <= 3, "{most} downloads ran at once with jobs = 3");
    assert!(most >= 2, "downloads never overlapped");
    assert_eq!(bytes, total);
}

#[test]
fn a_reference_to_an_unknown_path_is_refused_and_nothing_is_registered() {
    let home = envctl_testkit::tempdir();
    let bytes = Archive::new().with(Entry::file("x", "x")).tar();
    let file = home.path().join("x.tar");
    std::fs::write(&file, &bytes).unwrap();
    let store = Store::open(&home.path().join("store"), StoreOptions::default()).unwrap();
    let request = InstallRequest {
        url: file.display().to_string(),
        sha256: Sha256::parse(&sha256_hex(&bytes)).unwrap(),
        name: Name::parse("x").unwrap(),
        version: Version::parse("1").unwrap(),
        unpack: Unpack::default(),
        bytecode: false,
        references: vec![
            envctl_store::StorePathName::parse("00000000000000000000000000000000-gone-1").unwrap(),
        ],
        store_path: None,
    };
    let err = envctl_store::Installer::new(&store, &envctl_store::Caches::none())
        .install(&request, &envctl_store::NoReporter)
        .unwrap_err()
        .to_string();
    assert!(err.contains("gone-1"), "{err}");
    assert!(store.list().unwrap().is_empty());
    let on_disk: Vec<_> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(on_disk.is_empty(), "{on_disk:?}");
}

/// Two processes (two stores open on one directory: their locks conflict as two processes' do)
/// installing overlapping sets in opposite orders: each worker hands its tree to a committer and
/// goes on holding that source's lock, so each side holds several while it waits for the other's.
/// Both finish, every package is fetched once, and both get the same paths.
#[test]
fn two_installs_of_overlapping_sets_in_opposite_orders_finish_and_fetch_each_source_once() {
    let server = Server::start();
    let home = envctl_testkit::tempdir();
    let mut requests = Vec::new();
    for i in 0..8 {
        let bytes =
            Archive::new().with(Entry::file(&format!("lib/lib{i}.so"), vec![i as u8; 50_000])).tar_gz();
        let path = format!("/q{i}.tar.gz");
        server.set(&path, Reply::Slow { body: bytes.clone(), delay: Duration::from_millis(100) });
        requests.push(InstallRequest {
            url: server.url(&path),
            sha256: Sha256::parse(&sha256_hex(&bytes)).unwrap(),
            name: Name::parse(&format!("q{i}")).unwrap(),
            version: Version::parse("1.0").unwrap(),
            unpack: Unpack::default(),
            bytecode: false,
            references: Vec::new(),
            store_path: None,
        });
    }
    let reversed: Vec<InstallRequest> = requests.iter().rev().cloned().collect();
    let dir = home.path().join("store");
    let options = || StoreOptions { jobs: 3, ..StoreOptions::default() };
    drop(Store::open(&dir, options()).unwrap());
    let install = |requests: &[InstallRequest]| {
        let store = Store::open(&dir, options()).unwrap();
        let caches = envctl_store::Caches::none();
        let installer = envctl_store::Installer::new(&store, &caches);
        let results = installer.install_all(requests, &envctl_store::NoReporter);
        results.into_iter().map(|r| r.unwrap().path).collect::<Vec<_>>()
    };
    let (forward, backward) = std::thread::scope(|s| {
        let a = s.spawn(|| install(&requests));
        let b = s.spawn(|| install(&reversed));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut backward = backward;
    backward.reverse();
    assert_eq!(forward, backward);
    for (i, path) in forward.iter().enumerate() {
        assert_eq!(server.hits(&format!("/q{i}.tar.gz")), 1, "q{i} fetched more than once");
        assert!(path.join(format!("lib/lib{i}.so")).is_file());
    }
}
