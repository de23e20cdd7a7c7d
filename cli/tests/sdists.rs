//! Python source distributions published without a wheel (TensorFlow 1.15 pins `gast==0.2.2`,
//! which has none): a pure-Python sdist is built into a wheel by its PEP 517 backend, itself a
//! wheel from a recipe, run by the profile's interpreter, the same on every machine; one that
//! needs a compiler is refused at lock time, naming it and why; a backend that fails leaves the
//! profile as it was.

mod common;

use common::fixture::{Fixture, walk};
use envctl_testkit::python::Wheel;
use envctl_testkit::{Archive, Entry, sha256_hex};

/// A PEP 517 backend in the style of flit_core: packs the tree's package and `PKG-INFO` into a
/// wheel, and writes down which interpreter ran it and what environment it saw.
const BACKEND: &str = r#"
import base64, hashlib, os, sys, zipfile

def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    if os.path.exists("FAIL"):
        raise RuntimeError("the fixture backend was told to fail")
    meta = dict(l.split(": ", 1) for l in open("PKG-INFO").read().splitlines() if ": " in l)
    name, version = meta["Name"], meta["Version"]
    dist = name.replace("-", "_")
    files = {}
    for root, dirs, names in os.walk(dist):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(root, n)
            files[p] = open(p, "rb").read()
    seen = (tuple(sys.version_info[:2]), os.environ.get("SOURCE_DATE_EPOCH"), "SECRET_TOKEN" in os.environ)
    files[dist + "/_built_by.py"] = ("BUILT_BY = %r\n" % (seen,)).encode()
    info = "%s-%s.dist-info" % (dist, version)
    files[info + "/METADATA"] = ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)).encode()
    files[info + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tinybuild\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join("%s,%s,%d\n" % (p, _hash(d), len(d)) for p, d in sorted(files.items()))
    files[info + "/RECORD"] = (record + info + "/RECORD,,\n").encode()
    wheel = "%s-%s-py3-none-any.whl" % (dist, version)
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w") as z:
        for p, d in sorted(files.items()):
            z.writestr(zipfile.ZipInfo(p, date_time=(1980, 1, 1, 0, 0, 0)), d)
    return wheel
"#;

/// Publishes the backend as the wheel `tinybuild` 1.0.
fn publish_backend(f: &Fixture) {
    let w = Wheel::new("tinybuild", "1.0", "py3-none-any").file("tinybuild.py", BACKEND);
    f.publish_wheel(&w, &w.build(), "python = \">=3\"");
}

/// Publishes the sdist `NAME-1.0.tar.gz` (one top folder, as sdists are) with `files` besides its
/// `PKG-INFO`, and a recipe naming it `format = "sdist"` that depends on the backend.
fn publish_sdist(f: &Fixture, name: &str, files: &[(&str, &str)]) -> String {
    publish_sdist_bytes(f, name, files).0
}

/// [`publish_sdist`], also giving the archive's bytes.
fn publish_sdist_bytes(f: &Fixture, name: &str, files: &[(&str, &str)]) -> (String, Vec<u8>) {
    let top = format!("{}-1.0", name.replace('-', "_"));
    let mut a = Archive::new().with(Entry::file(
        &format!("{top}/PKG-INFO"),
        format!("Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"),
    ));
    for (path, text) in files {
        a = a.with(Entry::file(&format!("{top}/{path}"), *text));
    }
    let bytes = a.tar_gz();
    let url = f.server.serve(&format!("/sdists/{top}.tar.gz"), bytes.clone());
    let sha = sha256_hex(&bytes);
    std::fs::write(
        f.repo.join(format!("{name}-1.0.toml")),
        format!(
            "name = \"{name}\"\nversion = \"1.0\"\n[dependencies]\npython = \">=3\"\ntinybuild = \"*\"\n[[source]]\nurl = \"{url}\"\nsha256 = \"{sha}\"\nformat = \"sdist\"\n"
        ),
    )
    .unwrap();
    (sha, bytes)
}

const PYPROJECT: &str = "[build-system]\nrequires = [\"tinybuild\"]\nbuild-backend = \"tinybuild\"\n";

fn built_paths(f: &Fixture) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(f.sb.store())
        .unwrap()
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with("-gast-wheel-1.0"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_pure_source_distribution_is_built_by_its_backend_with_the_profile_python_the_same_everywhere() {
    let mut seen = Vec::new();
    for _ in 0..2 {
        let f = Fixture::new();
        f.publish_python("3.7");
        publish_backend(&f);
        let sha = publish_sdist(
            &f,
            "gast",
            &[("pyproject.toml", PYPROJECT), ("gast/__init__.py", "GAST = 'from source'\n")],
        );
        let p = f.profile("vision", "[packages]\ngast = \"1.0\"\npython = \"3.7\"\n");
        f.run(&["lock", &p]).success();
        let lock = std::fs::read_to_string(p.replace(".toml", ".lock")).unwrap();
        assert!(lock.contains(&sha) && lock.contains("format = \"sdist\""), "{lock}");
        let apply = f.sb.run_env(&["apply", &p], &[("SECRET_TOKEN", "x")]);
        apply.ok();
        let code = "import gast, gast._built_by as b; print(gast.GAST, b.BUILT_BY)";
        let out = f.run(&["run", "vision", "--", "python3", "-c", code]).success();
        // Built by the profile's 3.7, with the fixed epoch, without the caller's environment.
        assert_eq!(out.stdout.trim(), "from source ((3, 7), '315532800', False)", "{}", out.stderr);
        // The sdist's own tree is not in the profile; the built wheel's bytecode is.
        let profile = f.profiles_dir().join("vision");
        let files: Vec<String> = walk(&profile).iter().map(|p| p.display().to_string()).collect();
        assert!(!files.iter().any(|p| p.ends_with("PKG-INFO") || p.ends_with("pyproject.toml")), "{files:?}");
        f.run(&["store", "verify"]).success();
        seen.push(built_paths(&f));
    }
    assert_eq!(seen[0].len(), 1, "{seen:?}");
    assert_eq!(seen[0], seen[1], "two machines built different wheels from one sdist");
}

#[test]
fn a_source_distribution_that_needs_a_compiler_is_refused_at_lock_naming_it_and_why() {
    let f = Fixture::new();
    f.publish_python("3.7");
    publish_backend(&f);
    publish_sdist(
        &f,
        "speedy",
        &[
            ("setup.py", "from setuptools import setup\nsetup(name='speedy')\n"),
            ("speedy/__init__.py", ""),
            ("speedy/_fast.c", "int fast(void) { return 1; }\n"),
        ],
    );
    let p = f.profile("fast", "[packages]\nspeedy = \"1.0\"\npython = \"3.7\"\n");
    let run = f.run(&["lock", &p]).failure();
    let e = run.failed();
    assert!(e.contains("speedy 1.0") && e.contains("speedy/_fast.c") && e.contains("compiler"), "{e}");
    assert!(!std::path::Path::new(&p.replace(".toml", ".lock")).exists(), "a lock was written");
}

#[test]
fn a_failing_backend_names_the_package_and_its_output_and_the_profile_stays_as_it_was() {
    let f = Fixture::new();
    f.publish_python("3.7");
    publish_backend(&f);
    publish_sdist(&f, "gast", &[("pyproject.toml", PYPROJECT), ("FAIL", ""), ("gast/__init__.py", "")]);
    let p = f.profile("vision", "[packages]\ngast = \"1.0\"\npython = \"3.7\"\n");
    let run = f.run(&["apply", &p]).failure();
    let e = run.failed();
    assert!(e.contains("gast 1.0") && e.contains("the fixture backend was told to fail"), "{e}");
    assert!(!f.profiles_dir().join("vision").exists(), "a generation was switched to");
    assert!(built_paths(&f).is_empty());
    assert!(f.sb.tmp_entries().is_empty(), "{:?}", f.sb.tmp_entries());
}

#[test]
fn an_sdist_that_cannot_be_fetched_at_lock_is_reported_and_looked_into_when_applied() {
    let f = Fixture::new();
    f.publish_python("3.7");
    publish_backend(&f);
    let files = [("setup.py", "setup(ext_modules=[])\n"), ("speedy/_fast.c", "")];
    let (sha, bytes) = publish_sdist_bytes(&f, "speedy", &files);
    // The recipe names a place the server does not serve yet: the lock cannot look into it, says
    // so, and still locks.
    let recipe = f.repo.join("speedy-1.0.toml");
    let text = std::fs::read_to_string(&recipe).unwrap().replace("/sdists/", "/later/");
    std::fs::write(&recipe, text).unwrap();
    let p = f.profile("fast", "[packages]\nspeedy = \"1.0\"\npython = \"3.7\"\n");
    let run = f.run(&["lock", &p]).success();
    assert!(
        run.stderr.contains("warning: speedy 1.0 is published only as source and cannot be fetched now"),
        "{}",
        run.stderr
    );
    assert!(std::fs::read_to_string(p.replace(".toml", ".lock")).unwrap().contains(&sha));
    // Once it is there, apply looks into it before anything builds, and refuses it.
    f.server.serve("/later/speedy-1.0.tar.gz", bytes);
    let run = f.run(&["apply", &p]).failure();
    let e = run.failed();
    assert!(e.contains("speedy 1.0") && e.contains("speedy/_fast.c") && e.contains("compiler"), "{e}");
    assert!(!f.profiles_dir().join("fast").exists());
}

#[test]
fn a_dry_run_fetches_no_source_distribution() {
    let f = Fixture::new();
    f.publish_python("3.7");
    publish_backend(&f);
    publish_sdist(&f, "gast", &[("pyproject.toml", PYPROJECT), ("gast/__init__.py", "")]);
    let p = f.profile("vision", "[packages]\ngast = \"1.0\"\npython = \"3.7\"\n");
    let run = f.run(&["apply", &p, "--dry-run"]).success();
    assert!(run.stdout.contains("gast") || run.stderr.contains("gast"), "{}{}", run.stdout, run.stderr);
    let store = f.sb.store();
    let fetched: Vec<String> = std::fs::read_dir(&store)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    // (The plan asks the server for the size; the store gets nothing.)
    assert!(!fetched.iter().any(|n| n.contains("gast")), "{fetched:?}");
}

/// Processes whose command line mentions every one of `needles`, with their pids.
fn processes_mentioning(needles: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // A zombie has ended; it only waits to be reaped.
        let zombie = state.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z'));
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !zombie && needles.iter().all(|n| cmdline.contains(n)) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn killing_apply_during_a_build_ends_the_backend_and_the_next_command_sweeps_its_work() {
    let f = Fixture::new();
    f.publish_python("3.11");
    let w = Wheel::new("slowbuild", "1.0", "py3-none-any")
        .file("slowbuild.py", "import time\ndef build_wheel(d, c=None, m=None):\n    time.sleep(120)\n");
    f.publish_wheel(&w, &w.build(), "python = \">=3\"");
    let pyproject = "[build-system]\nrequires = [\"slowbuild\"]\nbuild-backend = \"slowbuild\"\n";
    publish_sdist(&f, "gast", &[("pyproject.toml", pyproject), ("gast/__init__.py", "")]);
    let recipe = f.repo.join("gast-1.0.toml");
    let text = std::fs::read_to_string(&recipe).unwrap().replace("tinybuild", "slowbuild");
    std::fs::write(&recipe, text).unwrap();
    let p = f.profile("vision", "[packages]\ngast = \"1.0\"\npython = \"3.11\"\n");
    let mut apply = f.sb.spawn(&["apply", &p]);
    let tmp = f.sb.store().join(".tmp").display().to_string();
    // The backend's command line names its work directory and the backend.
    let needle = [tmp.as_str(), "slowbuild"];
    let started = std::time::Instant::now();
    while processes_mentioning(&needle).is_empty() {
        assert!(started.elapsed().as_secs() < 60, "the backend never started");
        assert!(apply.try_wait().unwrap().is_none(), "apply ended before the build started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let backend = processes_mentioning(&needle);
    apply.kill().unwrap();
    apply.wait().unwrap();
    let started = std::time::Instant::now();
    while !processes_mentioning(&needle).is_empty() {
        assert!(started.elapsed().as_secs() < 10, "the backend {backend:?} outlived the killed apply");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f.run(&["gc"]).success();
    assert!(f.sb.tmp_entries().is_empty(), "{:?}", f.sb.tmp_entries());
}

/// A backend that stamps the moment of the build into the wheel: no two builds are the same.
const STAMPING: &str = r#"
import base64, hashlib, os, time, zipfile
def _hash(d):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "gast-1.0.dist-info"
    files = {
        "gast/__init__.py": ("BUILT_AT = %d\n" % time.time_ns()).encode(),
        info + "/METADATA": b"Metadata-Version: 2.1\nName: gast\nVersion: 1.0\n",
        info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: stamp\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join("%s,%s,%d\n" % (p, _hash(d), len(d)) for p, d in sorted(files.items()))
    files[info + "/RECORD"] = (record + info + "/RECORD,,\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, "gast-1.0-py3-none-any.whl"), "w") as z:
        for p, d in sorted(files.items()):
            z.writestr(p, d)
    return "gast-1.0-py3-none-any.whl"
"#;

#[test]
fn a_build_that_differs_from_the_locked_one_is_refused_and_a_cache_carries_the_first() {
    let f = Fixture::new();
    f.publish_python("3.11");
    let w = Wheel::new("tinybuild", "1.0", "py3-none-any").file("tinybuild.py", STAMPING);
    f.publish_wheel(&w, &w.build(), "python = \">=3\"");
    publish_sdist(&f, "gast", &[("pyproject.toml", PYPROJECT), ("gast/__init__.py", "")]);
    let p = f.profile("vision", "[packages]\ngast = \"1.0\"\npython = \"3.11\"\n");
    f.run(&["apply", &p]).success();
    let lock = std::fs::read_to_string(f.sb.path("vision.lock")).unwrap();
    let built = lock.split("[package.built]").nth(1).expect("the lock records the built wheel");
    let first = built.split("store-path = \"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    assert_eq!(built_paths(&f), std::slice::from_ref(&first));

    // Another machine, the same lock: its own build stamps another moment.
    let b = common::Sandbox::new();
    let keys = f.sb.path("keys");
    let public = f.run(&["cache", "keygen", "lab", "--out", &keys.display().to_string()]).ok();
    let cache = f.sb.path("cache");
    for config in
        [String::new(), format!("trusted-keys = [\"{public}\"]\n[[caches]]\nurl = \"{}\"\n", cache.display())]
    {
        b.config(&format!("recipes = [\"{}\"]\n{config}", f.repo.display()));
        std::fs::copy(&p, b.path("vision.toml")).unwrap();
        std::fs::write(b.path("vision.lock"), &lock).unwrap();
        let run = b.run(&["apply", "--frozen", &b.path("vision.toml").display().to_string()]);
        if config.is_empty() {
            let e = run.failed();
            assert!(e.contains("refusing the lock") && e.contains("gast 1.0") && e.contains(&first), "{e}");
            assert!(e.contains("the build it first recorded") && e.contains("envctl cache push"), "{e}");
            assert!(!b.path("envctl/profiles/vision").exists());
            // The first machine pushes its closure, built wheel included.
            let key = keys.join("lab.secret").display().to_string();
            let push =
                f.run(&["cache", "push", &cache.display().to_string(), "vision", "--key", &key, "--json"]);
            assert!(push.success().stdout.contains(&first), "the built wheel did not travel");
        } else {
            run.success();
            let paths: Vec<String> =
                common::list(&b.store()).into_iter().filter(|n| n.ends_with("-gast-wheel-1.0")).collect();
            // Its own failed build is still there; the profile uses the cache's, the locked one.
            assert!(paths.contains(&first), "{paths:?}");
            let code = "import gast, os; print(os.path.realpath(gast.__file__))";
            let out = b.run(&["run", "vision", "--", "python3", "-c", code]).success().stdout;
            assert!(out.contains(&first), "{out}");
            assert_eq!(std::fs::read_to_string(b.path("vision.lock")).unwrap(), lock, "the lock changed");
        }
    }
}

/// A backend that does what a hostile sdist did: reach the network, list the real home, write
/// outside its directory, rewrite a `.pth` file inside another package's store path, and leave
/// a process running after the build. What each attempt gave is built into the wheel.
const HOSTILE: &str = r#"
import base64, hashlib, os, socket, subprocess, zipfile
def _hash(d):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
def attempt(f):
    try:
        return "ok: %r" % (f(),)
    except Exception as e:
        return "refused: %s" % type(e).__name__
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    cfg = dict(l.split("=", 1) for l in open("hostile.cfg").read().split())
    def net():
        s = socket.create_connection(("127.0.0.1", int(cfg["port"])), timeout=3)
        s.sendall(b"GET /stolen HTTP/1.0\r\n\r\n")
        return s.recv(10)
    def write_outside():
        open(cfg["outside"], "w").write("pwned")
    def pth():
        open(cfg["pth"], "a").write("\nimport os; os.system('touch %s')\n" % cfg["outside"])
    seen = {
        "net": attempt(net),
        "home": attempt(lambda: sorted(os.listdir(cfg["home"]))),
        "outside": attempt(write_outside),
        "pth": attempt(pth),
        "daemon": attempt(lambda: subprocess.Popen(["sleep", cfg["marker"]], start_new_session=True).pid),
    }
    info = "gast-1.0.dist-info"
    files = {
        "gast/__init__.py": ("SEEN = %r\n" % (seen,)).encode(),
        info + "/METADATA": b"Metadata-Version: 2.1\nName: gast\nVersion: 1.0\n",
        info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: h\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join("%s,%s,%d\n" % (p, _hash(d), len(d)) for p, d in sorted(files.items()))
    files[info + "/RECORD"] = (record + info + "/RECORD,,\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, "gast-1.0-py3-none-any.whl"), "w") as z:
        for p, d in sorted(files.items()):
            z.writestr(p, d)
    return "gast-1.0-py3-none-any.whl"
"#;

#[test]
fn a_hostile_build_reaches_no_network_writes_nothing_outside_and_leaves_nothing_running() {
    let f = Fixture::new();
    f.publish_python("3.11");
    // Another package of the store with a `.pth` file the build will try to rewrite.
    let victim = Wheel::new("victim", "1.0", "py3-none-any").file("victim.pth", "import sys\n");
    f.publish_wheel(&victim, &victim.build(), "python = \">=3\"");
    let p = f.profile("first", "[packages]\nvictim = \"1.0\"\npython = \"3.11\"\n");
    f.run(&["apply", &p]).success();
    let pth = common::list(&f.sb.store())
        .into_iter()
        .find(|n| n.ends_with("-victim-1.0"))
        .map(|n| f.sb.store().join(n).join("site-packages/victim.pth"))
        .unwrap();
    assert!(pth.is_file());

    let w = Wheel::new("tinybuild", "1.0", "py3-none-any").file("tinybuild.py", HOSTILE);
    f.publish_wheel(&w, &w.build(), "python = \">=3\"");
    let outside = f.sb.path("outside-the-build");
    let marker = format!("{}", 6000 + std::process::id() % 1000);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let port = f.server.url("/").split(':').nth(2).unwrap().trim_end_matches('/').to_owned();
    let cfg = format!(
        "port={port}\nhome={home}\noutside={}\npth={}\nmarker={marker}\n",
        outside.display(),
        pth.display()
    );
    publish_sdist(
        &f,
        "gast",
        &[("pyproject.toml", PYPROJECT), ("hostile.cfg", &cfg), ("gast/__init__.py", "")],
    );
    let p = f.profile("vision", "[packages]\ngast = \"1.0\"\npython = \"3.11\"\n");
    f.run(&["apply", &p]).success();
    let code = "import gast; print('\\n'.join('%s %s' % kv for kv in sorted(gast.SEEN.items())))";
    let out = f.run(&["run", "vision", "--", "python3", "-c", code]).success().stdout;
    let seen: std::collections::BTreeMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once(' ')).collect();
    assert!(seen["net"].starts_with("refused"), "it reached the network: {out}");
    assert_eq!(f.server.hits("/stolen"), 0);
    assert!(seen["home"] == "ok: []" || seen["home"].starts_with("refused"), "it listed the home: {out}");
    assert!(seen["outside"].starts_with("refused") && !outside.exists(), "it wrote outside: {out}");
    assert!(seen["pth"].starts_with("refused"), "it rewrote another package's .pth: {out}");
    assert_eq!(std::fs::read_to_string(&pth).unwrap(), "import sys\n");
    f.run(&["store", "verify"]).success();
    // The process it started did not outlive the build.
    assert!(seen["daemon"].starts_with("ok"), "{out}");
    assert!(processes_mentioning(&["sleep", &marker]).is_empty(), "`sleep {marker}` outlived the build");
}
