//! Store paths between machines: signing keys, a directory binary cache that a second home
//! installs from without the upstream sources, closures exported to one file and imported on an
//! air-gapped home, and every tampering refused with nothing registered.

mod common;

use std::path::{Path, PathBuf};

use common::Sandbox;
use common::fixture::Fixture;

/// Home A with profile `p` (hello, and app which needs world) applied, its file and lock in
/// `proj/`, and a key pair `lab` in `keys/`.
fn first_machine() -> (Fixture, String) {
    let f = Fixture::new();
    let a = envctl_testkit::Archive::new()
        .with(envctl_testkit::Entry::file_mode("bin/app", "#!/bin/sh\necho app\n", 0o755))
        .with(envctl_testkit::Entry::symlink("bin/app-link", "app"));
    f.publish("app", "1.0", &a.tar_gz(), "[dependencies]\nworld = \"1\"");
    let proj = f.sb.path("proj");
    std::fs::create_dir_all(&proj).unwrap();
    let file = proj.join("p.toml");
    std::fs::write(&file, "[packages]\nhello = \"1\"\napp = \"1\"\n").unwrap();
    f.run(&["apply", &file.display().to_string()]).ok();
    let keys = f.sb.path("keys");
    let public = f.run(&["cache", "keygen", "lab", "--out", &keys.display().to_string()]).ok();
    (f, public)
}

/// A second home sharing nothing with the first but the recipes, the profile file and its lock.
fn second_machine(f: &Fixture, extra_config: &str) -> Sandbox {
    let b = Sandbox::new();
    b.config(&format!("recipes = [\"{}\"]\n{extra_config}", f.repo.display()));
    std::fs::create_dir_all(b.path("proj")).unwrap();
    for name in ["p.toml", "p.lock"] {
        std::fs::copy(f.sb.path("proj").join(name), b.path("proj").join(name)).unwrap();
    }
    b
}

/// The upstream answers 404 for every package from now on.
fn upstream_gone(f: &Fixture) {
    for path in ["/hello-1.0.tar.gz", "/hello-2.0.tar.gz", "/world-1.0.tar.gz", "/app-1.0.tar.gz"] {
        f.server.set(path, envctl_testkit::Reply::Status(404));
    }
}

/// GETs of package archives the upstream has answered.
fn upstream_hits(f: &Fixture) -> usize {
    ["/hello-1.0.tar.gz", "/world-1.0.tar.gz", "/app-1.0.tar.gz"].iter().map(|p| f.server.hits(p)).sum()
}

/// Serves the directory cache `cache` as it is, pointers included, under `/cache/` on the
/// fixture's server.
fn serve_cache(f: &Fixture, cache: &Path) {
    for file in common::fixture::walk(cache).into_iter().filter(|p| p.is_file()) {
        let rel = file.strip_prefix(cache).unwrap().display().to_string();
        f.server.serve(&format!("/cache/{rel}"), std::fs::read(&file).unwrap());
    }
}

fn package_paths(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.contains("-profile-"))
        .collect();
    names.sort();
    names
}

/// Every file under `dir` with its contents (or link target) and executable bit.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out: Vec<_> = common::fixture::walk(dir)
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::symlink_metadata(&p).ok()?;
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if meta.is_symlink() {
                Some((rel, std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes(), false))
            } else if meta.is_file() {
                Some((rel, std::fs::read(&p).unwrap(), meta.permissions().mode() & 0o111 != 0))
            } else {
                None
            }
        })
        .collect();
    out.sort();
    out
}

#[test]
fn keygen_writes_a_private_secret_and_the_line_to_trust() {
    use std::os::unix::fs::PermissionsExt;
    let (f, public) = first_machine();
    let secret = f.sb.path("keys/lab.secret");
    assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(f.sb.path("keys/lab.public")).unwrap().trim(), public);
    assert!(public.starts_with("lab:") && public.len() > 40, "{public}");
    // Never over an existing key.
    let again = f.run(&["cache", "keygen", "lab", "--out", &f.sb.path("keys").display().to_string()]);
    assert!(again.failed().contains("exists"), "{}", again.stderr);
}

#[test]
fn a_second_home_installs_the_profile_from_the_cache_without_the_upstream_sources() {
    let (f, public) = first_machine();
    let cache = f.sb.path("nfs/cache");
    let key = f.sb.path("keys/lab.secret").display().to_string();
    let push = f.run(&["cache", "push", &cache.display().to_string(), "p", "--key", &key, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&push.success().stdout).unwrap();
    // hello, app and world travel; the generation is built by each machine.
    assert_eq!(report["pushed"].as_array().unwrap().len(), 3, "{report}");
    let again = f.run(&["cache", "push", &cache.display().to_string(), "p", "--key", &key, "--json"]);
    let again: serde_json::Value = serde_json::from_str(&again.success().stdout).unwrap();
    assert_eq!(again["skipped"].as_array().unwrap().len(), 3, "{again}");

    let b = second_machine(
        &f,
        &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n", cache.display()),
    );
    upstream_gone(&f);
    let before = upstream_hits(&f);
    // The plan says where each package will come from.
    let plan = b.run(&["apply", "--dry-run", &b.path("proj/p.toml").display().to_string()]).success().stdout;
    assert_eq!(plan.matches(&format!("from cache {}", cache.display())).count(), 3, "{plan}");
    let apply = b.run(&["apply", "--frozen", &b.path("proj/p.toml").display().to_string()]);
    apply.ok();
    assert!(apply.stderr.contains("(3 packages, 3 fetched, all from caches)"), "{}", apply.stderr);
    assert_eq!(upstream_hits(&f), before, "the upstream was asked");
    let a = &f.sb;
    assert_eq!(package_paths(&a.store()), package_paths(&b.store()));
    for name in package_paths(&a.store()) {
        assert_eq!(contents(&a.store().join(&name)), contents(&b.store().join(&name)), "{name}");
    }
    assert_eq!(b.run(&["run", "p", "app"]).ok(), "app");
    b.run(&["store", "verify"]).ok();
}

#[test]
fn a_tampered_or_untrusted_cache_is_passed_over_and_nothing_of_it_is_registered() {
    let (f, public) = first_machine();
    let cache = f.sb.path("cache");
    let key = f.sb.path("keys/lab.secret").display().to_string();
    f.run(&["cache", "push", &cache.display().to_string(), "p", "--key", &key]).ok();
    let objects: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    let hello = objects.iter().find(|p| p.to_string_lossy().contains("-hello-")).unwrap().clone();
    let world = objects.iter().find(|p| p.to_string_lossy().contains("-world-")).unwrap().clone();
    let pristine = f.sb.path("pristine");
    common::copy_dir(&cache, &pristine);
    let restore = || {
        std::fs::remove_dir_all(&cache).unwrap();
        common::copy_dir(&pristine, &cache);
    };
    let config = format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"file://{}\"\n", cache.display());
    let file = |b: &Sandbox| b.path("proj/p.toml").display().to_string();

    // A changed byte in an archive: with the upstream reachable, the next source serves it.
    let archive = hello.with_extension("tar.zst");
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&archive, bytes).unwrap();
    let b = second_machine(&f, &config);
    let r = b.run(&["apply", "--frozen", &file(&b)]);
    r.ok();
    assert!(r.stderr.contains("passed over") && r.stderr.contains("hello"), "{}", r.stderr);
    restore();

    // Another path's archive in its place, the object's archive sha256 and size changed to
    // match (they are not what is signed): the tree it unpacks to is not the signed one.
    let other = world.with_extension("tar.zst");
    std::fs::copy(&other, &archive).unwrap();
    let mut object: serde_json::Value = serde_json::from_slice(&std::fs::read(&hello).unwrap()).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(&std::fs::read(&world).unwrap()).unwrap();
    object["archive"]["sha256"] = theirs["archive"]["sha256"].clone();
    object["archive"]["size"] = theirs["archive"]["size"].clone();
    std::fs::write(&hello, serde_json::to_vec(&object).unwrap()).unwrap();
    let b = second_machine(&f, &config);
    let r = b.run(&["apply", "--frozen", &file(&b)]);
    r.ok();
    assert!(
        r.stderr.contains("unpacks to tree") && r.stderr.contains("the signed object says"),
        "{}",
        r.stderr
    );
    restore();

    // Metadata swapped (hello's object says world's name), and a signature by a key nobody
    // trusts: refused, and with the upstream gone nothing at all is registered.
    std::fs::copy(&world, &hello).unwrap();
    let stranger = f.sb.path("stranger");
    f.run(&["cache", "keygen", "stranger", "--out", &stranger.display().to_string()]).ok();
    let other_cache = f.sb.path("other-cache");
    f.run(&[
        "cache",
        "push",
        &other_cache.display().to_string(),
        "p",
        "--key",
        &stranger.join("stranger.secret").display().to_string(),
    ])
    .ok();
    let two_caches = format!(
        "trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n[[caches]]\nurl = \"{}\"\npriority = 1\n",
        cache.display(),
        other_cache.display()
    );
    let b = second_machine(&f, &two_caches);
    upstream_gone(&f);
    let r = b.run(&["apply", "--frozen", &file(&b)]);
    let err = r.failed();
    assert!(err.contains("no trusted key verifies its signature (signed by stranger)"), "{err}");
    assert!(err.contains("the cache's object for it describes"), "{err}");
    let listed = b.run(&["store", "ls", "--json"]);
    let paths: serde_json::Value = serde_json::from_str(&listed.success().stdout).unwrap();
    let names: Vec<&str> = paths.as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(!names.iter().any(|n| n.contains("-hello-")), "{names:?}");
    b.run(&["store", "verify"]).ok();
}

#[test]
fn an_exported_closure_is_imported_checked_and_applied_offline() {
    let (f, public) = first_machine();
    let key = f.sb.path("keys/lab.secret").display().to_string();
    let export = f.sb.path("p.envctl");
    f.run(&["store", "export", "p", "--key", &key, "-o", &export.display().to_string()]).ok();
    let b = second_machine(&f, &format!("trusted-keys = [\"{public}\"]\n"));
    upstream_gone(&f);
    let a = &f.sb;

    // Tampered: one byte changed anywhere past the header; refused, nothing registered.
    let bytes = std::fs::read(&export).unwrap();
    let mut bad = bytes.clone();
    let at = bad.len() - 2048;
    bad[at] ^= 0x01;
    let tampered = b.path("tampered.envctl");
    std::fs::write(&tampered, &bad).unwrap();
    let r = b.run(&["store", "import", &tampered.display().to_string()]);
    assert!(r.failed().contains("cannot import"), "{}", r.stderr);
    assert!(b.run(&["store", "ls"]).stdout.trim().is_empty());
    // Untrusted: a home that trusts no key refuses it whole.
    let c = Sandbox::new();
    let err = c.run(&["store", "import", &export.display().to_string()]).failed().to_owned();
    assert!(err.contains("no key is trusted"), "{err}");
    assert!(c.run(&["store", "ls"]).stdout.trim().is_empty());

    b.run(&["store", "import", &export.display().to_string()]).ok();
    b.run(&["apply", "--offline", "--frozen", &b.path("proj/p.toml").display().to_string()]).ok();
    assert_eq!(package_paths(&a.store()), package_paths(&b.store()));
    assert_eq!(b.run(&["run", "p", "hello"]).ok(), "hello 1.0");
}

#[test]
fn a_cache_served_over_http_is_read_like_a_directory_and_a_fresh_lock_finds_paths_by_source() {
    let (f, public) = first_machine();
    let cache = f.sb.path("cache");
    let key = f.sb.path("keys/lab.secret").display().to_string();
    f.run(&["cache", "push", &cache.display().to_string(), "p", "--key", &key]).ok();
    serve_cache(&f, &cache);
    let b = second_machine(
        &f,
        &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n", f.server.url("/cache/")),
    );
    // A lock that does not name store paths yet: the cache is asked by source.
    let lock = std::fs::read_to_string(b.path("proj/p.lock")).unwrap();
    let bare: String = lock
        .lines()
        .filter(|l| !l.starts_with("store-path") && !l.starts_with("tree-hash"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(b.path("proj/p.lock"), bare).unwrap();
    upstream_gone(&f);
    let before = upstream_hits(&f);
    b.run(&["apply", "--frozen", &b.path("proj/p.toml").display().to_string()]).ok();
    assert_eq!(upstream_hits(&f), before, "the upstream was asked");
    assert_eq!(package_paths(&f.sb.store()), package_paths(&b.store()));
    let pointers: usize = std::fs::read_dir(cache.join("by-source"))
        .unwrap()
        .map(|e| f.server.hits(&format!("/cache/by-source/{}", e.unwrap().file_name().to_string_lossy())))
        .sum();
    assert_eq!(pointers, 3, "each package was looked up by its source");
}

#[test]
fn push_over_http_put_then_a_second_home_reads_the_same_base() {
    let (f, public) = first_machine();
    f.server.accept_puts("/upload/");
    let key = f.sb.path("keys/lab.secret").display().to_string();
    let base = f.server.url("/upload/cache");
    let r = f.run(&["cache", "push", &base, "p", "--key", &key, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&r.success().stdout).unwrap();
    assert_eq!(report["pushed"].as_array().unwrap().len(), 3, "{report}");
    // Pushing again finds each object (HEAD) and uploads nothing.
    let puts = |f: &Fixture| -> usize {
        package_paths(&f.sb.store())
            .iter()
            .map(|n| f.server.puts(&format!("/upload/cache/{n}.tar.zst")))
            .sum()
    };
    assert_eq!(puts(&f), 3);
    f.run(&["cache", "push", &base, "p", "--key", &key]).ok();
    assert_eq!(puts(&f), 3);
    let b = second_machine(&f, &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{base}\"\n"));
    upstream_gone(&f);
    b.run(&["apply", "--frozen", &b.path("proj/p.toml").display().to_string()]).ok();
    assert_eq!(package_paths(&f.sb.store()), package_paths(&b.store()));
}

#[test]
fn push_to_s3_compatible_storage_then_a_second_home_installs_from_it() {
    let s3 = envctl_testkit::s3::S3Server::start("lab-cache");
    let (f, public) = first_machine();
    let key = f.sb.path("keys/lab.secret").display().to_string();
    let url = format!("s3://lab-cache/envctl?endpoint={}&region=us-east-1", s3.endpoint());
    let creds = [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")];
    let r = f.sb.run_env(&["cache", "push", &url, "p", "--key", &key, "--json"], &creds);
    let report: serde_json::Value = serde_json::from_str(&r.success().stdout).unwrap();
    assert_eq!(report["pushed"].as_array().unwrap().len(), 3, "{report}");
    let keys = s3.keys("lab-cache");
    for name in package_paths(&f.sb.store()) {
        assert!(keys.contains(&format!("envctl/{name}.json")), "{keys:?}");
        assert!(keys.contains(&format!("envctl/{name}.tar.zst")), "{keys:?}");
    }
    let again = f.sb.run_env(&["cache", "push", &url, "p", "--key", &key, "--json"], &creds);
    let again: serde_json::Value = serde_json::from_str(&again.success().stdout).unwrap();
    assert_eq!(again["skipped"].as_array().unwrap().len(), 3, "{again}");

    let b = second_machine(&f, &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{url}\"\n"));
    upstream_gone(&f);
    let before = upstream_hits(&f);
    b.run_env(&["apply", "--frozen", &b.path("proj/p.toml").display().to_string()], &creds).ok();
    assert_eq!(upstream_hits(&f), before, "the upstream was asked");
    assert_eq!(package_paths(&f.sb.store()), package_paths(&b.store()));
    for name in package_paths(&f.sb.store()) {
        assert_eq!(contents(&f.sb.store().join(&name)), contents(&b.store().join(&name)), "{name}");
    }
}

#[test]
fn downloads_go_through_the_proxy_the_environment_names_except_for_no_proxy_hosts() {
    let f = Fixture::new();
    let bytes = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("x", "x")).tar_gz();
    let sha = envctl_testkit::sha256_hex(&bytes);
    // A proxy sees the absolute URL in the request line; the testkit server answers by it.
    let url = "http://envctl-test.invalid/x.tar.gz";
    f.server.serve(url, bytes);
    let args = ["store", "add", url, "--sha256", &sha, "--name", "x", "--version", "1"];
    let proxy = f.server.base();
    f.sb.run_env(&args, &[("http_proxy", &proxy)]).ok();
    assert_eq!(f.server.hits(url), 1);
    // Listed in NO_PROXY: asked directly, and that host does not exist.
    let again = ["store", "add", url, "--sha256", &sha, "--name", "y", "--version", "1"];
    let r = f.sb.run_env(&again, &[("http_proxy", &proxy), ("NO_PROXY", "localhost,.invalid")]);
    assert!(r.failed().contains("envctl-test.invalid"), "{}", r.stderr);
    assert_eq!(f.server.hits(url), 1);
}

/// A push or a pull killed at each of its renames (where objects and store paths appear) leaves
/// both sides consistent: no object without its archive, nothing half-registered, and the next
/// run completes.
#[test]
fn a_push_or_pull_killed_at_any_rename_leaves_both_sides_consistent() {
    use envctl_testkit::faults::{build_shim, count_calls, kill_at};
    let (f, public) = first_machine();
    let shim = build_shim(f.sb.path("").as_path());
    let key = f.sb.path("keys/lab.secret").display().to_string();
    let cache = f.sb.path("cache");
    let quiet = |mut c: std::process::Command| {
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        c
    };
    let push = |f: &Fixture| {
        quiet(f.sb.command(&["cache", "push", &cache.display().to_string(), "p", "--key", &key]))
    };
    let counts = count_calls(push(&f), &shim, &f.sb.path(""));
    std::fs::remove_dir_all(&cache).unwrap();
    let renames = counts.get("rename").copied().unwrap_or(0);
    assert!(renames >= 9, "{counts:?}");
    let consistent = |cache: &Path| {
        for entry in std::fs::read_dir(cache).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                assert!(path.with_extension("tar.zst").is_file(), "an object without its archive: {path:?}");
            }
        }
    };
    for at in 1..=renames {
        let _ = std::fs::remove_dir_all(&cache);
        let mut c = push(&f);
        kill_at(&mut c, &shim, "rename", at);
        let status = c.status().unwrap();
        assert!(!status.success(), "push was not killed at rename {at}");
        consistent(&cache);
        // The next push completes what the killed one left.
        f.run(&["cache", "push", &cache.display().to_string(), "p", "--key", &key]).ok();
        consistent(&cache);
        let objects = std::fs::read_dir(&cache)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json"))
            .count();
        assert_eq!(objects, 3, "after a push killed at rename {at}");
    }

    // Pulls: killed at each rename of an apply from the cache, then run to the end.
    let b = second_machine(
        &f,
        &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n", cache.display()),
    );
    upstream_gone(&f);
    let file = b.path("proj/p.toml").display().to_string();
    let pull = || quiet(b.command(&["apply", "--frozen", &file]));
    let counts = count_calls(pull(), &shim, &b.path(""));
    let renames = counts.get("rename").copied().unwrap_or(0);
    assert!(renames >= 3, "{counts:?}");
    for at in 1..=renames {
        common::remove_tree(&b.path("envctl"));
        let mut c = pull();
        kill_at(&mut c, &shim, "rename", at);
        assert!(!c.status().unwrap().success(), "apply was not killed at rename {at}");
        b.run(&["store", "verify"]).ok();
        b.run(&["apply", "--frozen", &file]).ok();
        b.run(&["store", "verify"]).ok();
        assert_eq!(
            package_paths(&f.sb.store()),
            package_paths(&b.store()),
            "after a pull killed at rename {at}"
        );
    }
}

#[test]
fn offline_installs_use_local_caches_only() {
    let (f, public) = first_machine();
    let key = f.sb.path("keys/lab.secret").display().to_string();
    let cache = f.sb.path("cache");
    f.run(&["cache", "push", &cache.display().to_string(), "p", "--key", &key]).ok();
    serve_cache(&f, &cache);
    // A cache over HTTP is the network: --offline does not ask it, and says what it would need.
    let http = second_machine(
        &f,
        &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n", f.server.url("/cache")),
    );
    let file = |b: &Sandbox| b.path("proj/p.toml").display().to_string();
    let r = http.run(&["apply", "--offline", "--frozen", &file(&http)]);
    assert!(r.failed().contains("offline"), "{}", r.stderr);
    let hits: usize =
        package_paths(&f.sb.store()).iter().map(|n| f.server.hits(&format!("/cache/{n}.json"))).sum();
    assert_eq!(hits, 0);
    // A directory cache is local: --offline installs from it.
    let dir = second_machine(
        &f,
        &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n", cache.display()),
    );
    dir.run(&["apply", "--offline", "--frozen", &file(&dir)]).ok();
    assert_eq!(package_paths(&f.sb.store()), package_paths(&dir.store()));
}

#[test]
fn a_lock_whose_store_path_was_edited_gets_no_other_build_from_a_cache() {
    let (f, public) = first_machine();
    let cache = f.sb.path("nfs/cache");
    let key = f.sb.path("keys/lab.secret").display().to_string();
    f.run(&["cache", "push", &cache.display().to_string(), "p", "--key", &key]).success();
    let lock_a = std::fs::read_to_string(f.sb.path("proj/p.lock")).unwrap();
    // The publisher replaces hello 1.0 with build B: same name and version, other bytes.
    let b_bytes = envctl_testkit::Archive::new()
        .with(envctl_testkit::Entry::file_mode("bin/hello", "#!/bin/sh\necho hello B\n", 0o755))
        .tar_gz();
    let hello = lock_a.split("name = \"hello\"").nth(1).unwrap();
    let field = |key: &str| hello.split(&format!("{key} = \"")).nth(1).unwrap().split('"').next().unwrap();
    let (sha_a, hello_a) = (field("sha256").to_owned(), field("store-path").to_owned());
    let sha_b = f.publish("hello", "1.0", &b_bytes, "");
    assert_ne!(sha_a, sha_b);
    // A lock whose source is build B, with build A's store path and tree hash written in.
    let b = second_machine(
        &f,
        &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n", cache.display()),
    );
    std::fs::write(b.path("proj/p.lock"), lock_a.replace(&sha_a, &sha_b)).unwrap();
    let apply = b.run(&["apply", "--frozen", &b.path("proj/p.toml").display().to_string()]).failure();
    let e = apply.failed();
    assert!(e.contains("refusing the lock") && e.contains("hello 1.0"), "{e}");
    assert!(!b.store().join(&hello_a).exists(), "build A came from the cache for a lock of build B");
}

#[test]
fn importing_twice_or_into_a_store_holding_part_of_the_closure_neither_hangs_nor_adds_twice() {
    let (f, public) = first_machine();
    let key = f.sb.path("keys/lab.secret").display().to_string();
    let export = f.sb.path("p.envctl").display().to_string();
    f.run(&["store", "export", "p", "--key", &key, "-o", &export]).ok();
    let b = second_machine(&f, &format!("trusted-keys = [\"{public}\"]\n"));
    // `world` is in the store already, fetched from its own source.
    let lock = std::fs::read_to_string(b.path("proj/p.lock")).unwrap();
    let world = lock.split("name = \"world\"").nth(1).unwrap();
    let field = |key: &str| world.split(&format!("{key} = \"")).nth(1).unwrap().split('"').next().unwrap();
    b.add(field("url"), field("sha256"), "world", "1.0", &[]).success();
    let first = b.run_within(&["store", "import", &export], 60).success();
    assert!(first.stderr.contains("3 store paths checked, 2 added"), "{}", first.stderr);
    let again = b.run_within(&["store", "import", &export], 60).success();
    assert!(again.stderr.contains("3 store paths checked, 0 added"), "{}", again.stderr);
    upstream_gone(&f);
    b.run(&["apply", "--offline", "--frozen", &b.path("proj/p.toml").display().to_string()]).success();
    b.run(&["store", "verify"]).success();
}

#[test]
fn a_pull_of_a_path_the_store_holds_under_another_source_records_the_source_without_hanging() {
    let (f, public) = first_machine();
    let cache = f.sb.path("nfs/cache");
    let key = f.sb.path("keys/lab.secret").display().to_string();
    f.run(&["cache", "push", &cache.display().to_string(), "p", "--key", &key]).success();
    let b = second_machine(
        &f,
        &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n", cache.display()),
    );
    // The same tree of hello from another archive (tar.xz): the store path is the same, its
    // source is not, so the pull below asks the cache and finds the path already here.
    let hello = envctl_testkit::Archive::new()
        .with(envctl_testkit::Entry::file_mode("bin/hello", "#!/bin/sh\necho hello 1.0\n", 0o755))
        .with(envctl_testkit::Entry::file("share/hello/version", "1.0"));
    let xz = hello.tar_xz();
    let url = f.server.serve("/hello-1.0.tar.xz", xz.clone());
    b.add(&url, &envctl_testkit::sha256_hex(&xz), "hello", "1.0", &[]).success();
    let before = package_paths(&b.store());
    for _ in 0..2 {
        b.run_within(&["apply", "--frozen", &b.path("proj/p.toml").display().to_string()], 60).success();
    }
    let hello_paths: Vec<String> =
        package_paths(&b.store()).into_iter().filter(|n| n.ends_with("-hello-1.0")).collect();
    assert_eq!(hello_paths.len(), 1, "{hello_paths:?}");
    assert!(before.contains(&hello_paths[0]), "{before:?} {hello_paths:?}");
    assert_eq!(b.run(&["run", "p", "hello"]).ok(), "hello 1.0");
}

#[test]
fn an_export_whose_index_names_a_path_outside_is_refused_before_anything_is_opened() {
    let b = Sandbox::new();
    b.run(&["store", "ls"]).success();
    // A FIFO where `../../../victim` leads from the import's staging directory: opening it
    // would hang the import.
    let fifo = b.path("envctl/victim.json");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let entries = [("envctl-export", b"1\n".to_vec()), ("index.json", b"[\"../../../victim\"]".to_vec())];
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, name, data.as_slice()).unwrap();
    }
    let file = b.path("crafted.envctl");
    std::fs::write(&file, tar.into_inner().unwrap()).unwrap();
    let r = b.run_within(&["store", "import", &file.display().to_string()], 30).failure();
    assert!(
        r.failed().contains("its index names `../../../victim`, which is not a store path"),
        "{}",
        r.stderr
    );
}

#[test]
fn bytecode_travels_with_its_wheel_and_a_second_home_compiles_nothing() {
    let f = Fixture::new();
    f.publish_python("3.11");
    let w = envctl_testkit::python::Wheel::new("greeter", "1.0", "py3-none-any")
        .file("greeter/__init__.py", "def greet():\n    return 'hello'\n");
    f.publish_wheel(&w, &w.build(), "python = \">=3.7\"");
    let proj = f.sb.path("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("p.toml"), "[packages]\ngreeter = \"*\"\npython = \"3.11\"\n").unwrap();
    f.run(&["apply", &proj.join("p.toml").display().to_string()]).success();
    let bytecode: Vec<String> =
        package_paths(&f.sb.store()).into_iter().filter(|n| n.contains("-greeter-bytecode-")).collect();
    assert_eq!(bytecode.len(), 1, "{:?}", package_paths(&f.sb.store()));

    let keys = f.sb.path("keys");
    let public = f.run(&["cache", "keygen", "lab", "--out", &keys.display().to_string()]).ok();
    let cache = f.sb.path("cache");
    let key = keys.join("lab.secret").display().to_string();
    let push = f.run(&["cache", "push", &cache.display().to_string(), "p", "--key", &key, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&push.success().stdout).unwrap();
    let pushed: Vec<&str> = report["pushed"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    // python, the wheel and its bytecode; not the pyvenv.cfg nor the generation.
    assert_eq!(pushed.len(), 3, "{report}");
    assert!(pushed.iter().any(|p| p.contains(&bytecode[0])), "{report}");
    assert!(!pushed.iter().any(|p| p.contains("python-venv")), "{report}");

    let b = second_machine(
        &f,
        &format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n", cache.display()),
    );
    let apply = b.run(&["-v", "apply", "--frozen", &b.path("proj/p.toml").display().to_string()]);
    apply.ok();
    assert!(
        apply.stderr.contains("derived:bytecode") && apply.stderr.contains("from a cache"),
        "the bytecode was not taken from the cache:\n{}",
        apply.stderr
    );
    // The same path, byte for byte, and it runs.
    assert!(b.store().join(&bytecode[0]).is_dir(), "{:?}", package_paths(&b.store()));
    assert_eq!(contents(&f.sb.store().join(&bytecode[0])), contents(&b.store().join(&bytecode[0])));
    assert_eq!(
        b.run(&["run", "p", "--", "python3", "-c", "import greeter; print(greeter.greet())"]).ok(),
        "hello"
    );
    b.run(&["store", "verify"]).ok();
}
