//! End-to-end tests of `envctl store …` against archives these tests build and serve on
//! 127.0.0.1.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Sandbox, list, wait};
use envctl_testkit::{Archive, Entry, Reply, Server, sha256_hex};

fn sample() -> Archive {
    Archive::new()
        .with(Entry::dir("cuda-10.0/"))
        .with(Entry::dir("cuda-10.0/bin/"))
        .with(Entry::file_mode("cuda-10.0/bin/nvcc", "#!/bin/sh\necho nvcc 10.0\n", 0o4755))
        .with(Entry::dir("cuda-10.0/lib64/"))
        .with(Entry::file("cuda-10.0/lib64/libcudart.so.10.0.130", vec![7u8; 5000]))
        .with(Entry::symlink("cuda-10.0/lib64/libcudart.so", "libcudart.so.10.0.130"))
        .with(Entry::dir("cuda-10.0/share/empty/"))
        .with(Entry::file("cuda-10.0/version.txt", "CUDA Version 10.0.130\n"))
}

#[test]
fn the_same_tree_in_every_format_gives_one_store_path() {
    let sb = Sandbox::new();
    let server = Server::start();
    let a = sample();
    let packed = [
        ("/c.tar", a.tar()),
        ("/c.tar.gz", a.tar_gz()),
        ("/c.tar.xz", a.tar_xz()),
        ("/c.tar.zst", a.tar_zst()),
        ("/c.tar.bz2", a.tar_bz2()),
        ("/c.zip", a.zip()),
    ];
    let mut paths = Vec::new();
    for (name, bytes) in &packed {
        let url = server.serve(name, bytes.clone());
        let out = sb.add(&url, &sha256_hex(bytes), "cuda-cudart", "10.0.130", &["--strip-components", "1"]);
        paths.push(out.ok());
        assert_eq!(server.hits(name), 1, "{name}");
    }
    assert!(paths.iter().all(|p| p == &paths[0]), "store paths differ: {paths:#?}");
    let root = std::path::PathBuf::from(&paths[0]);
    assert!(root.starts_with(sb.store()) && root.to_string_lossy().ends_with("-cuda-cudart-10.0.130"));

    // Normalized: read-only, setuid dropped, mtimes at 1, links kept as links.
    let mode = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("bin/nvcc"), 0o555);
    assert_eq!(mode("lib64/libcudart.so.10.0.130"), 0o444);
    assert_eq!(mode("bin"), 0o555);
    assert_eq!(mode(""), 0o555);
    for p in ["", "bin", "bin/nvcc", "share/empty", "version.txt"] {
        assert_eq!(std::fs::metadata(root.join(p)).unwrap().mtime(), 1, "{p}");
    }
    assert_eq!(
        std::fs::read_link(root.join("lib64/libcudart.so")).unwrap().to_string_lossy(),
        "libcudart.so.10.0.130"
    );
    assert!(root.join("share/empty").is_dir());
    assert_eq!(sb.run(&["store", "ls"]).stdout.lines().count(), 1);

    // Name and version are part of the identity.
    let (_, bytes) = &packed[0];
    let other = sb.add(
        &server.url("/c.tar"),
        &sha256_hex(bytes),
        "cuda-cudart",
        "10.0.131",
        &["--strip-components", "1"],
    );
    assert_ne!(other.ok(), paths[0]);
}

#[test]
fn a_second_add_of_a_source_makes_no_request() {
    let sb = Sandbox::new();
    let server = Server::start();
    let bytes = sample().tar_zst();
    let url = server.serve("/c.tar.zst", bytes.clone());
    let first = sb.add(&url, &sha256_hex(&bytes), "cuda", "10.0", &[]).ok();
    let again = sb.add(&url, &sha256_hex(&bytes), "cuda", "10.0", &[]);
    assert_eq!(again.ok(), first);
    assert!(again.stderr.contains("already in the store"), "{}", again.stderr);
    assert_eq!(server.hits("/c.tar.zst"), 1);
}

#[test]
fn a_wrong_sha256_names_url_expected_and_actual_and_leaves_nothing() {
    let sb = Sandbox::new();
    let server = Server::start();
    let bytes = sample().tar_gz();
    let url = server.serve("/c.tar.gz", bytes.clone());
    let wrong = "ab".repeat(32);
    let out = sb.add(&url, &wrong, "cuda", "10.0", &[]);
    let err = out.failed();
    assert!(err.contains(&url), "{err}");
    assert!(err.contains(&wrong), "{err}");
    assert!(err.contains(&sha256_hex(&bytes)), "{err}");
    // One request: a mismatch is not retried.
    assert_eq!(server.hits("/c.tar.gz"), 1);
    assert_eq!(sb.run(&["store", "ls"]).ok(), "");
    assert!(sb.store_paths_on_disk().is_empty(), "{:?}", sb.store_paths_on_disk());
    assert!(sb.tmp_entries().is_empty(), "{:?}", sb.tmp_entries());
}

#[test]
fn retries_happen_on_503_and_not_on_404() {
    let sb = Sandbox::new();
    let server = Server::start();
    let bytes = sample().tar_gz();
    let sha = sha256_hex(&bytes);

    server.set("/flaky.tar.gz", Reply::FailThen { status: 503, times: 2, body: bytes.clone() });
    sb.add(&server.url("/flaky.tar.gz"), &sha, "cuda", "10.0", &[]).ok();
    assert_eq!(server.hits("/flaky.tar.gz"), 3);

    let out = sb.add(&server.url("/missing.tar.gz"), &sha, "cuda", "10.1", &[]);
    assert!(out.failed().contains("404"), "{}", out.stderr);
    assert_eq!(server.hits("/missing.tar.gz"), 1);

    // Retries are bounded: the sandbox allows 2, so 3 requests in all.
    server.set("/down.tar.gz", Reply::FailThen { status: 503, times: 100, body: bytes.clone() });
    let out = sb.add(&server.url("/down.tar.gz"), &sha, "cuda", "10.2", &[]);
    assert!(out.failed().contains("503"), "{}", out.stderr);
    assert_eq!(server.hits("/down.tar.gz"), 3);
    assert!(sb.tmp_entries().is_empty());
}

#[test]
fn mirrors_are_tried_in_order() {
    let sb = Sandbox::new();
    let server = Server::start();
    let bytes = sample().tar_xz();
    server.serve("/good/redist/c.tar.xz", bytes.clone());
    sb.config(&format!("[mirrors]\nteam = [\"{0}/gone\", \"{0}/good/\"]", server.base()));
    sb.add("mirror://team/redist/c.tar.xz", &sha256_hex(&bytes), "cuda", "10.0", &[]).ok();
    assert_eq!(server.hits("/gone/redist/c.tar.xz"), 1);
    assert_eq!(server.hits("/good/redist/c.tar.xz"), 1);

    let out = sb.add("mirror://nobody/c.tar.xz", &sha256_hex(&bytes), "cuda", "10.1", &[]);
    let err = out.failed();
    assert!(err.contains("`nobody`") && err.contains("[mirrors]"), "{err}");
}

#[test]
fn file_urls_and_plain_paths_are_sources_too() {
    let sb = Sandbox::new();
    let bytes = sample().tar_bz2();
    let file = sb.path("c.tar.bz2");
    std::fs::write(&file, &bytes).unwrap();
    let sha = sha256_hex(&bytes);
    let a = sb.add(&format!("file://{}", file.display()), &sha, "cuda", "10.0", &[]).ok();
    let b = sb.add(&file.display().to_string(), &sha, "cuda", "10.0", &[]).ok();
    assert_eq!(a, b);
    let out = sb.add(&sb.path("nope.tar").display().to_string(), &sha, "cuda", "10.0", &["--format", "tar"]);
    assert!(out.failed().contains("nope.tar"), "{}", out.stderr);
}

#[test]
fn a_wheel_lands_in_its_subdir() {
    let sb = Sandbox::new();
    let server = Server::start();
    let whl = Archive::new()
        .with(Entry::file("tensorflow/__init__.py", "__version__ = '1.15.5'\n"))
        .with(Entry::file("tensorflow-1.15.5.dist-info/METADATA", "Name: tensorflow\n"))
        .zip();
    let url = server.serve("/tensorflow_gpu-1.15.5-cp37-cp37m-manylinux2010_x86_64.whl", whl.clone());
    let path = sb
        .add(&url, &sha256_hex(&whl), "tensorflow", "1.15.5", &["--subdir", "lib/python3.7/site-packages"])
        .ok();
    let init = std::path::Path::new(&path).join("lib/python3.7/site-packages/tensorflow/__init__.py");
    assert_eq!(std::fs::read_to_string(init).unwrap(), "__version__ = '1.15.5'\n");
    let out = sb.add(&url, &sha256_hex(&whl), "tensorflow", "1.15.5", &["--subdir", "../escape"]);
    assert!(out.failed().contains("subdir"), "{}", out.stderr);
}

/// The hostile cases. Each must fail naming the entry, leave the victim outside untouched, and
/// leave nothing registered and no temporary files.
#[test]
fn hostile_archives_are_refused_and_the_victim_stays_untouched() {
    let sb = Sandbox::new();
    let server = Server::start();
    let victim_dir = sb.path("victim");
    std::fs::create_dir(&victim_dir).unwrap();
    let victim = victim_dir.join("secret.txt");
    std::fs::write(&victim, "untouched").unwrap();
    let victim_abs = victim.display().to_string();
    let up = "../".repeat(12);
    let victim_rel = format!("{up}{}", victim_abs.trim_start_matches('/'));
    let victim_dir_rel = format!("{up}{}", victim_dir.display().to_string().trim_start_matches('/'));

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("absolute path", Archive::new().with(Entry::file(&victim_abs, "pwned")).tar(), "absolute path"),
        ("dot-dot", Archive::new().with(Entry::file(&victim_rel, "pwned")).tar_gz(), "`..`"),
        (
            "write through a symlinked directory",
            Archive::new()
                .with(Entry::symlink("evil", &victim_dir_rel))
                .with(Entry::file("evil/secret.txt", "pwned"))
                .tar(),
            // Refused at the link itself now, before anything could be written through it.
            "`evil` is a symlink to",
        ),
        (
            "replace a symlink to the victim",
            Archive::new().with(Entry::symlink("x", &victim_rel)).with(Entry::file("x", "pwned")).tar(),
            "`x` is a symlink to",
        ),
        (
            "symlink out of the tree",
            Archive::new().with(Entry::symlink("up", "../..")).tar(),
            "outside the package",
        ),
        (
            "symlink chain out of the tree",
            Archive::new().with(Entry::symlink("d/up", "..")).with(Entry::symlink("e", "d/up/..")).tar(),
            "outside the package",
        ),
        (
            "absolute symlink",
            Archive::new().with(Entry::symlink("passwd", "/etc/passwd")).tar(),
            "absolute path",
        ),
        ("hard link outside", Archive::new().with(Entry::hard_link("h", &victim_abs)).tar(), "hard link"),
        ("hard link with ..", Archive::new().with(Entry::hard_link("h", &victim_rel)).tar(), "hard link"),
        (
            "hard link to a symlink",
            Archive::new()
                .with(Entry::symlink("s", "a"))
                .with(Entry::file("a", "x"))
                .with(Entry::hard_link("h", "s"))
                .tar(),
            "hard link",
        ),
        ("zip with ..", Archive::new().with(Entry::file(&victim_rel, "pwned")).zip(), "`..`"),
        (
            "zip absolute symlink",
            Archive::new().with(Entry::symlink("l", &victim_abs)).zip(),
            "absolute path",
        ),
        (
            "size bomb",
            Archive::new().with(Entry::Zeros { path: "big".into(), size: 64 << 20 }).tar_zst(),
            "more than 1048576 bytes",
        ),
        (
            "entry-count bomb",
            (0..1500).fold(Archive::new(), |a, i| a.with(Entry::file(&format!("f{i}"), "x"))).tar_gz(),
            "more than 1000 entries",
        ),
    ];
    sb.config("[store]\nmax-unpack-bytes = 1048576\nmax-unpack-entries = 1000");
    for (i, (case, bytes, expect)) in cases.iter().enumerate() {
        let ext = if case.starts_with("zip") {
            "zip"
        } else if case.contains("bomb") {
            "tar.zst"
        } else {
            "tar"
        };
        let ext = if *case == "dot-dot" || *case == "entry-count bomb" { "tar.gz" } else { ext };
        let url = server.serve(&format!("/hostile{i}.{ext}"), bytes.clone());
        let out = sb.add(&url, &sha256_hex(bytes), "evil", "1.0", &[]);
        let err = out.failed();
        assert!(err.contains(expect), "{case}: expected {expect:?} in:\n{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched", "{case}");
        assert_eq!(list(&victim_dir), vec!["secret.txt"], "{case}");
        assert!(sb.store_paths_on_disk().is_empty(), "{case}: {:?}", sb.store_paths_on_disk());
        assert!(sb.tmp_entries().is_empty(), "{case}: {:?}", sb.tmp_entries());
    }
    assert_eq!(sb.run(&["store", "ls"]).ok(), "");
}

#[test]
fn device_nodes_and_fifos_are_skipped_and_said() {
    let sb = Sandbox::new();
    let server = Server::start();
    let bytes =
        Archive::new().with(Entry::Fifo { path: "pipe".into() }).with(Entry::file("ok", "fine")).tar();
    let url = server.serve("/fifo.tar", bytes.clone());
    let out = sb.add(&url, &sha256_hex(&bytes), "odd", "1.0", &[]);
    let path = std::path::PathBuf::from(out.ok());
    assert!(out.stderr.contains("skipped `pipe`"), "{}", out.stderr);
    assert_eq!(list(&path), vec!["ok"]);
}

/// Installs the sample, served at `/c.tar.gz`; returns its bytes and store path.
fn install_sample(sb: &Sandbox, server: &Server) -> (Vec<u8>, std::path::PathBuf) {
    let bytes = sample().tar_gz();
    let url = server.serve("/c.tar.gz", bytes.clone());
    let path = sb.add(&url, &sha256_hex(&bytes), "cuda", "10.0", &["--strip-components", "1"]).ok();
    (bytes, path.into())
}

/// Changes a store file behind the store's back.
fn tamper(file: &Path) {
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(file, "CUDA Version 99\n").unwrap();
}

#[test]
fn verify_finds_a_file_changed_behind_the_stores_back() {
    let sb = Sandbox::new();
    let server = Server::start();
    let (_, path) = install_sample(&sb, &server);
    // Reading the store must not dirty its inodes: an access time set back two days (which a
    // `relatime` mount would refresh on the next read) is still there after verify.
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    let version = path.join("version.txt");
    let file = std::fs::File::open(&version).unwrap();
    file.set_times(std::fs::FileTimes::new().set_accessed(two_days_ago)).unwrap();
    let clean = sb.run(&["store", "verify"]);
    clean.ok();
    assert!(clean.stderr.contains("checked 1 store path, 0 corrupted"), "{}", clean.stderr);
    assert_eq!(file.metadata().unwrap().accessed().unwrap(), two_days_ago, "verify changed an access time");

    tamper(&path.join("version.txt"));
    let out = sb.run(&["store", "verify"]);
    let err = out.failed();
    assert!(err.contains(&path.display().to_string()) && err.contains("tree hash"), "{err}");
    let json = sb.run(&["store", "verify", "--json"]);
    assert_eq!(json.code, 1);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["corrupted"].as_array().unwrap().len(), 1);
}

#[test]
fn verify_names_a_path_gone_from_disk_and_one_that_is_no_longer_a_directory() {
    let sb = Sandbox::new();
    let server = Server::start();
    let (_, path) = install_sample(&sb, &server);
    let aside = sb.path("aside");
    common::move_tree(&path, &aside);
    let out = sb.run(&["store", "verify", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["corrupted"][0]["damage"], "missing", "{}", out.stdout);

    std::fs::write(&path, "not a tree").unwrap();
    let out = sb.run(&["store", "verify"]);
    let err = out.failed();
    assert!(err.contains(&path.display().to_string()) && err.contains("is not a directory"), "{err}");

    std::fs::remove_file(&path).unwrap();
    common::move_tree(&aside, &path);
    sb.run(&["store", "verify"]).ok();
}

#[test]
fn verify_repair_fetches_the_source_again_and_refuses_what_does_not_match() {
    let sb = Sandbox::new();
    let server = Server::start();
    let (bytes, path) = install_sample(&sb, &server);
    let file = path.join("version.txt");
    let original = std::fs::read(&file).unwrap();
    tamper(&file);

    // The source is gone: nothing changes, and the path is still named as corrupted.
    server.set("/c.tar.gz", Reply::Status(404));
    let out = sb.run(&["store", "verify", "--repair"]);
    let err = out.failed();
    assert!(err.contains("cannot repair") && err.contains("404"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"CUDA Version 99\n");

    // Back again: one more request, the tree as registered, read-only, and a clean verify.
    server.set("/c.tar.gz", Reply::Body(bytes));
    let hits = server.hits("/c.tar.gz");
    let out = sb.run(&["store", "verify", "--repair"]);
    out.ok();
    assert!(out.stderr.contains("1 repaired, 0 corrupted"), "{}", out.stderr);
    assert_eq!(server.hits("/c.tar.gz"), hits + 1);
    assert_eq!(std::fs::read(&file).unwrap(), original);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o222, 0);
    sb.run(&["store", "verify"]).ok();
    assert!(sb.tmp_entries().is_empty(), "{:?}", sb.tmp_entries());
}

#[test]
fn a_download_killed_halfway_leaves_a_store_that_verifies_and_a_next_install_that_succeeds() {
    let sb = Sandbox::new();
    let server = Server::start();
    // Incompressible contents, so that half the download is half the archive.
    let noise: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let bytes = Archive::new().with(Entry::file("blob", noise)).with(Entry::file("z", "end")).tar_gz();
    let sha = sha256_hex(&bytes);
    server.set(
        "/c.tar.gz",
        Reply::Stall { body: bytes.clone(), send: bytes.len() / 2, hang: Duration::from_secs(60) },
    );

    let mut child = sb.spawn(&[
        "store",
        "add",
        &server.url("/c.tar.gz"),
        "--sha256",
        &sha,
        "--name",
        "c",
        "--version",
        "1",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Wait until the install is under way: the request arrived and an attempt directory exists.
    while server.hits("/c.tar.gz") == 0 || sb.tmp_entries().is_empty() {
        assert!(Instant::now() < deadline, "the install never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !sb.tmp_entries().is_empty(),
        "the killed install left no debris to sweep; the test proves nothing"
    );

    sb.run(&["store", "verify"]).ok();
    assert!(sb.tmp_entries().is_empty(), "leftovers not swept: {:?}", sb.tmp_entries());
    assert!(sb.store_paths_on_disk().is_empty());

    server.set("/c.tar.gz", Reply::Body(bytes.clone()));
    let path = sb.add(&server.url("/c.tar.gz"), &sha, "c", "1", &[]).ok();
    assert_eq!(std::fs::read_to_string(std::path::Path::new(&path).join("z")).unwrap(), "end");
    sb.run(&["store", "verify"]).ok();
}

#[test]
fn two_concurrent_installs_of_one_source_agree() {
    let sb = Sandbox::new();
    let server = Server::start();
    let bytes = sample().tar_zst();
    let sha = sha256_hex(&bytes);
    server.set("/c.tar.zst", Reply::Slow { body: bytes, delay: Duration::from_millis(500) });
    let url = server.url("/c.tar.zst");
    let args =
        ["store", "add", url.as_str(), "--sha256", sha.as_str(), "--name", "cuda", "--version", "10.0"];
    let a = sb.spawn(&args);
    let b = sb.spawn(&args);
    let (a, b) = (wait(a), wait(b));
    assert_eq!(a.ok(), b.ok());
    // The second waited for the first's source lock and found its registration.
    assert_eq!(server.hits("/c.tar.zst"), 1);
    assert_eq!(sb.run(&["store", "ls"]).stdout.lines().count(), 1);
    sb.run(&["store", "verify"]).ok();
}

#[test]
fn optimise_links_identical_files_and_the_store_still_verifies() {
    let sb = Sandbox::new();
    let server = Server::start();
    let shared = vec![42u8; 100_000];
    let a = Archive::new()
        .with(Entry::file("lib/libshared.so", shared.clone()))
        .with(Entry::file("a", "a"))
        .tar();
    let b = Archive::new().with(Entry::file("lib/libshared.so", shared)).with(Entry::file("b", "b")).tar();
    let pa = sb.add(&server.serve("/a.tar", a.clone()), &sha256_hex(&a), "a", "1", &[]).ok();
    let pb = sb.add(&server.serve("/b.tar", b.clone()), &sha256_hex(&b), "b", "1", &[]).ok();
    let ino = |p: &str| std::fs::metadata(std::path::Path::new(p).join("lib/libshared.so")).unwrap().ino();
    assert_ne!(ino(&pa), ino(&pb));
    let out = sb.run(&["store", "optimise", "--json"]);
    out.ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["linked"], 1);
    assert_eq!(report["bytes_saved"], 100_000);
    assert_eq!(ino(&pa), ino(&pb));
    // The directory it touched is read-only again, with its normalized mtime.
    let lib = std::fs::metadata(std::path::Path::new(&pb).join("lib")).unwrap();
    assert_eq!((lib.permissions().mode() & 0o777, lib.mtime()), (0o555, 1));
    sb.run(&["store", "verify"]).ok();
    // Nothing left to do the second time.
    let again: serde_json::Value =
        serde_json::from_str(&sb.run(&["store", "optimise", "--json"]).stdout).unwrap();
    assert_eq!(again["linked"], 0);
}

#[test]
fn optimise_scans_each_path_once_and_links_a_later_one_to_what_it_recorded() {
    let sb = Sandbox::new();
    let server = Server::start();
    let shared = vec![42u8; 100_000];
    let add = |name: &str, shared: &[u8]| {
        let bytes = Archive::new()
            .with(Entry::file("lib/libshared.so", shared.to_vec()))
            .with(Entry::file(name, name))
            .tar();
        let url = server.serve(&format!("/{name}.tar"), bytes.clone());
        sb.add(&url, &sha256_hex(&bytes), name, "1", &[]).ok()
    };
    let report = |sb: &Sandbox| -> serde_json::Value {
        let out = sb.run(&["store", "optimise", "--json"]);
        out.ok();
        serde_json::from_str(&out.stdout).unwrap()
    };
    let ino = |p: &str| std::fs::metadata(Path::new(p).join("lib/libshared.so")).unwrap().ino();
    let pa = add("a", &shared);
    let pb = add("b", &shared);
    let first = report(&sb);
    assert_eq!((first["files"].as_u64(), first["linked"].as_u64()), (Some(4), Some(1)));
    // Nothing new: nothing scanned.
    let second = report(&sb);
    assert_eq!((second["paths"].as_u64(), second["files"].as_u64()), (Some(0), Some(0)));

    // A later path with the same library is scanned alone and linked to the recorded copy.
    let pc = add("c", &shared);
    let third = report(&sb);
    assert_eq!((third["files"].as_u64(), third["linked"].as_u64()), (Some(2), Some(1)), "{third}");
    assert_eq!(ino(&pc), ino(&pa));
    assert_eq!(ino(&pb), ino(&pa));
    sb.run(&["store", "verify"]).ok();

    // A recorded copy damaged since is read again first, and nothing is linked to it.
    tamper(&Path::new(&pa).join("lib/libshared.so"));
    let pd = add("d", &shared);
    assert_eq!(report(&sb)["linked"], 0);
    assert_ne!(ino(&pd), ino(&pa));
    assert_eq!(std::fs::read(Path::new(&pd).join("lib/libshared.so")).unwrap(), shared);
    let out = sb.run(&["store", "verify"]);
    let err = out.failed();
    assert!(!err.contains(&pd), "the new path was damaged: {err}");

    // Collected paths take their records with them: a new copy after GC is scanned and kept.
    sb.run(&["gc"]).ok();
    assert!(!Path::new(&pa).exists());
    let pe = add("e", &shared);
    let last = report(&sb);
    assert_eq!((last["paths"].as_u64(), last["linked"].as_u64()), (Some(1), Some(0)), "{last}");
    assert_eq!(std::fs::read(Path::new(&pe).join("lib/libshared.so")).unwrap(), shared);
}

#[test]
fn info_and_ls_describe_paths_in_text_and_json() {
    let sb = Sandbox::new();
    let server = Server::start();
    let bytes = sample().tar_gz();
    let url = server.serve("/c.tar.gz", bytes.clone());
    let path =
        sb.add(&url, &sha256_hex(&bytes), "cuda-cudart", "10.0.130", &["--strip-components", "1"]).ok();
    let name = std::path::Path::new(&path).file_name().unwrap().to_string_lossy().into_owned();

    let info = sb.run(&["store", "info", &name]);
    let text = info.ok();
    assert!(text.contains(&path), "{}", info.stdout);
    assert!(info.stdout.contains(&url) && info.stdout.contains("cuda-cudart 10.0.130"), "{}", info.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&sb.run(&["store", "info", &path, "--json"]).stdout).unwrap();
    assert_eq!(json["package"], "cuda-cudart");
    assert_eq!(json["files"], 4); // nvcc, libcudart.so.10.0.130, its symlink, version.txt
    assert_eq!(json["sources"][0]["sha256"], sha256_hex(&bytes));
    let ls: serde_json::Value = serde_json::from_str(&sb.run(&["store", "ls", "--json"]).stdout).unwrap();
    assert_eq!(ls[0]["path"], path.as_str());

    let missing = sb.run(&["store", "info", "00000000000000000000000000000000-x-1"]);
    assert!(missing.failed().contains("not a valid path"), "{}", missing.stderr);
}

#[test]
fn bad_input_gets_a_clear_error_and_usage_errors_exit_2() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["store", "add", "x.tar"]).code, 2);
    let out = sb.add("x.tar", "xyz", "cuda", "1", &[]);
    assert!(out.failed().contains("invalid sha256 `xyz`"), "{}", out.stderr);
    let out = sb.add("x.tar", &"a".repeat(64), "CUDA", "1", &[]);
    assert!(out.failed().contains("invalid package name `CUDA`"), "{}", out.stderr);
    let out = sb.add("x.bin", &"a".repeat(64), "cuda", "1", &[]);
    assert!(out.failed().contains("--format"), "{}", out.stderr);

    sb.config("[store]\nmax-unpack-byte = 1");
    let out = sb.run(&["store", "ls"]);
    let err = out.failed();
    assert!(err.contains("config.toml") && err.contains("max-unpack-byte") && err.contains("line"), "{err}");
}

#[test]
fn paths_unregistered_by_a_gc_killed_after_its_commit_are_swept_and_verify_stays_clean() {
    let sb = Sandbox::new();
    let server = Server::start();
    let bytes = sample().tar_gz();
    let url = server.serve("/c.tar.gz", bytes.clone());
    let path = sb.add(&url, &sha256_hex(&bytes), "cuda", "10.0", &[]).ok();
    // What a GC killed between its transaction and its renames leaves: the row gone, the
    // directory still there, and the marker it left before its transaction.
    let db = rusqlite::Connection::open(sb.store().join(".envctl/db.sqlite")).unwrap();
    db.execute("DELETE FROM paths", []).unwrap();
    drop(db);
    std::fs::create_dir_all(sb.store().join(".envctl/unsettled")).unwrap();
    std::fs::write(sb.store().join(".envctl/unsettled/4242-1"), "").unwrap();
    assert!(std::path::Path::new(&path).is_dir());
    sb.run(&["store", "verify"]).ok();
    assert!(!std::path::Path::new(&path).exists(), "the unregistered directory was not swept");
    assert!(sb.store_paths_on_disk().is_empty());
    // And the source installs again.
    assert_eq!(sb.add(&url, &sha256_hex(&bytes), "cuda", "10.0", &[]).ok(), path);
}
