//! End-to-end: two teams on one machine. Fixture artifacts (CUDA, cuDNN, Python stand-ins,
//! TensorFlow packages whose `__init__.py` checks `CUDA_HOME`) are built here and served on
//! 127.0.0.1; recipes point at them.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Run, Sandbox, list, wait};
use envctl_testkit::{Archive, Entry, Reply, Server, sha256_hex};

fn host_python() -> String {
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap()) {
        let p = dir.join("python3");
        if p.is_file() {
            return p.display().to_string();
        }
    }
    panic!("the tests need a python3 on PATH to stand in for the interpreter packages");
}

struct Team {
    sb: Sandbox,
    server: Server,
    repo: PathBuf,
}

impl Team {
    fn new() -> Team {
        let sb = Sandbox::new();
        let repo = sb.path("recipes");
        std::fs::create_dir_all(&repo).unwrap();
        let t = Team { sb, server: Server::start(), repo };
        t.publish_all();
        t
    }

    /// Packs `archive`, serves it and writes its recipe.
    fn publish(&self, name: &str, version: &str, archive: Archive, deps: &[(&str, &str)], extra: &str) {
        let bytes = archive.tar_gz();
        let file = format!("/{name}-{version}.tar.gz");
        let url = self.server.serve(&file, bytes.clone());
        let mut text = format!("name = \"{name}\"\nversion = \"{version}\"\n{extra}\n[dependencies]\n");
        for (d, r) in deps {
            text.push_str(&format!("{d} = \"{r}\"\n"));
        }
        text.push_str(&format!("\n[[source]]\nurl = \"{url}\"\nsha256 = \"{}\"\n", sha256_hex(&bytes)));
        std::fs::write(self.repo.join(format!("{name}-{version}.toml")), text).unwrap();
    }

    fn publish_all(&self) {
        let py = host_python();
        for (v, short) in [("3.7.17", "3.7"), ("3.11.4", "3.11")] {
            let a = Archive::new()
                .with(Entry::file_mode("bin/python3", format!("#!/bin/sh\nexec {py} \"$@\"\n"), 0o755))
                .with(Entry::file(&format!("lib/python{short}/os-stand-in.txt"), "stand-in"));
            self.publish("python", v, a, &[], "");
        }
        for v in ["10.0.130", "12.4.127"] {
            let a = Archive::new()
                .with(Entry::file_mode("bin/nvcc", format!("#!/bin/sh\necho nvcc {v}\n"), 0o755))
                .with(Entry::file(&format!("lib64/libcudart.so.{v}"), vec![1u8; 2000]))
                .with(Entry::file("version.txt", format!("CUDA Version {v}\n")));
            self.publish("cuda", v, a, &[], "");
        }
        let cudnn = |v: &str, lib: &str| {
            Archive::new()
                .with(Entry::file(&format!("lib64/{lib}"), v.to_owned()))
                .with(Entry::file("include/cudnn.h", format!("/* {v} */")))
        };
        self.publish("cudnn", "7.6.5.32+cuda10.0", cudnn("7.6.5", "libcudnn.so.7"), &[("cuda", "10.0")], "");
        self.publish(
            "cudnn",
            "9.1.0.70+cuda12",
            cudnn("9.1.0", "libcudnn.so.9"),
            &[("cuda", ">=12,<13")],
            "",
        );
        for (v, py, cuda) in
            [("1.15.5", "3.7", "10.0"), ("2.15.0", "3.11", "12.4"), ("2.16.1", "3.11", "12.4")]
        {
            let init = format!(
                "import os\n__version__ = {v:?}\nwith open(os.path.join(os.environ['CUDA_HOME'], 'version.txt')) as f:\n    if 'CUDA Version {cuda}' not in f.read():\n        raise ImportError('tensorflow {v} needs CUDA {cuda}')\n"
            );
            let a = Archive::new()
                .with(Entry::file(&format!("lib/python{py}/site-packages/tensorflow/__init__.py"), init))
                .with(Entry::file(&format!("share/tensorflow-{v}/NOTICE"), "fixture"));
            let cudnn_req = if cuda == "10.0" { ">=7.4,<8" } else { ">=9" };
            self.publish(
                "tensorflow",
                v,
                a,
                &[("python", py), ("cuda", cuda), ("cudnn", cudnn_req)],
                "[env]\nTF_CPP_MIN_LOG_LEVEL = \"1\"\n",
            );
        }
    }

    fn envctl(&self, args: &[&str]) -> Run {
        let mut all = vec!["--recipes", self.repo.to_str().unwrap()];
        all.extend_from_slice(args);
        self.sb.run_env(&all, &[("ENVCTL_SYSTEM_DRIVER", "535.104.05")])
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut all = vec!["--recipes", self.repo.to_str().unwrap()];
        all.extend_from_slice(args);
        let mut c = self.sb.command(&all);
        c.env("ENVCTL_SYSTEM_DRIVER", "535.104.05")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    }

    fn profile(&self, file: &str, text: &str) -> String {
        let p = self.sb.path(file);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn tf_version(&self, profile: &str) -> Run {
        self.envctl(&[
            "run",
            profile,
            "--",
            "python3",
            "-c",
            "import tensorflow; print(tensorflow.__version__)",
        ])
    }

    fn generations(&self, profile: &str) -> serde_json::Value {
        serde_json::from_str(&self.envctl(&["generations", profile, "--json"]).stdout).unwrap()
    }

    fn store_names(&self) -> Vec<String> {
        self.sb.store_paths_on_disk()
    }
}

const IMPORT: &str = "import tensorflow; print(tensorflow.__version__)";

#[test]
fn two_teams_share_a_machine_upgrade_roll_back_and_collect_garbage() {
    let t = Team::new();
    let vision = t.profile("vision.toml", "[packages]\ntensorflow = \"1.15\"\n");
    let nlp = t.profile("nlp.toml", "[packages]\ntensorflow = \"2.15\"\n[env]\nTEAM = \"nlp\"\n");
    t.envctl(&["apply", &vision]).ok();
    t.envctl(&["apply", &nlp]).ok();

    // Both teams at once.
    let a = t.spawn(&["run", "vision", "--", "python3", "-c", IMPORT]);
    let b = t.spawn(&["run", "nlp", "--", "python3", "-c", IMPORT]);
    assert_eq!(wait(a).ok(), "1.15.5");
    assert_eq!(wait(b).ok(), "2.15.0");

    // The environment: CUDA_HOME, PYTHONPATH, recipe and profile variables, the profile's name.
    let env: serde_json::Value =
        serde_json::from_str(&t.envctl(&["env", "nlp", "--format", "json"]).stdout).unwrap();
    let generation = env["ENVCTL_GENERATION"].as_str().unwrap().to_owned();
    assert!(
        generation.starts_with(t.sb.store().to_str().unwrap()) && generation.ends_with("-profile-nlp"),
        "{generation}"
    );
    assert_eq!(env["CUDA_HOME"], generation.as_str());
    assert!(
        env["PYTHONPATH"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{generation}/lib/python3.11/site-packages"))
    );
    assert_eq!(env["TF_CPP_MIN_LOG_LEVEL"], "1");
    assert_eq!(env["TEAM"], "nlp");
    assert_eq!(env["ENVCTL_PROFILE"], "nlp");
    // A directory only one package has is one link; shared ones are merged.
    let g = Path::new(&generation);
    assert!(std::fs::symlink_metadata(g.join("share")).unwrap().file_type().is_symlink());
    assert!(std::fs::symlink_metadata(g.join("lib64")).unwrap().is_dir());
    assert_eq!(list(&g.join("lib64")), vec!["libcudart.so.12.4.127", "libcudnn.so.9"]);

    // Exit codes pass through.
    assert_eq!(t.envctl(&["run", "vision", "--", "sh", "-c", "exit 7"]).code, 7);

    // Applying an unchanged file creates no generation.
    let again = t.envctl(&["apply", &nlp]);
    again.ok();
    assert!(again.stderr.contains("up to date"), "{}", again.stderr);
    assert_eq!(t.generations("nlp").as_array().unwrap().len(), 1);

    // Loosening the requirement keeps the locked version that still fits: no new generation.
    t.profile("nlp.toml", "[packages]\ntensorflow = \"2\"\n[env]\nTEAM = \"nlp\"\n");
    let same = t.envctl(&["apply", &nlp]);
    same.ok();
    assert!(same.stderr.contains("no package changes"), "{}", same.stderr);
    assert_eq!(t.generations("nlp").as_array().unwrap().len(), 1);

    // Upgrade the TF2 team.
    t.profile("nlp.toml", "[packages]\ntensorflow = \"2.16\"\n[env]\nTEAM = \"nlp\"\n");
    let up = t.envctl(&["apply", &nlp]);
    up.ok();
    assert!(up.stderr.contains("generation 2"), "{}", up.stderr);
    let gens = t.generations("nlp");
    assert_eq!(gens.as_array().unwrap().len(), 2);
    assert_eq!(gens[1]["current"], true);
    assert_eq!(gens[1]["changes"][0]["change"], "changed", "{gens}");
    let diff = t.envctl(&["diff", "nlp"]);
    assert!(diff.stdout.contains("~ tensorflow 2.15.0 -> 2.16.1"), "{}", diff.stdout);
    assert_eq!(t.tf_version("nlp").ok(), "2.16.1");

    // A session in generation 2, started before GC, running through it.
    let session = t.spawn(&["run", "nlp", "--", "sh", "-c", &format!("sleep 2; python3 -c '{IMPORT}'")]);
    std::thread::sleep(Duration::from_millis(500));

    // Roll back; the other team is untouched.
    t.envctl(&["rollback", "nlp"]).ok();
    assert_eq!(t.tf_version("nlp").ok(), "2.15.0");
    assert_eq!(t.tf_version("vision").ok(), "1.15.5");

    // Delete generation 2 and collect: the session's root keeps it for now.
    t.envctl(&["generations", "nlp", "--delete", "2"]).ok();
    let before = t.store_names();
    let gc = t.envctl(&["gc", "--json"]);
    gc.ok();
    let report: serde_json::Value = serde_json::from_str(&gc.stdout).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(t.store_names(), before);
    assert_eq!(wait(session).ok(), "2.16.1");

    // The session is over: exactly what only generation 2 used goes.
    let dry: serde_json::Value =
        serde_json::from_str(&t.envctl(&["gc", "--dry-run", "--json"]).stdout).unwrap();
    let mut doomed: Vec<String> = dry["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Path::new(r["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    doomed.sort();
    assert_eq!(doomed.len(), 2, "{doomed:?}");
    assert!(doomed.iter().any(|n| n.ends_with("-profile-nlp")), "{doomed:?}");
    assert!(doomed.iter().any(|n| n.ends_with("-tensorflow-2.16.1")), "{doomed:?}");
    assert_eq!(t.store_names(), before, "a dry run removes nothing");
    t.envctl(&["gc"]).ok();
    let after = t.store_names();
    assert_eq!(before.len() - after.len(), 2);
    assert!(doomed.iter().all(|d| !after.contains(d)));
    t.sb.run(&["store", "verify"]).ok();
    assert_eq!(t.tf_version("nlp").ok(), "2.15.0");
    assert_eq!(t.tf_version("vision").ok(), "1.15.5");
    // Those sessions ended; their roots are stale, and the next GC removes them.
    assert!(t.sb.path("envctl/gcroots/tmp").read_dir().unwrap().next().is_some());
    let last: serde_json::Value = serde_json::from_str(&t.envctl(&["gc", "--json"]).stdout).unwrap();
    assert!(last["stale_roots"].as_u64().unwrap() >= 2, "{last}");
    assert!(
        t.sb.path("envctl/gcroots/tmp").read_dir().unwrap().next().is_none(),
        "stale session roots are removed"
    );
}

#[test]
fn a_collision_names_both_packages_and_priority_settles_it() {
    let t = Team::new();
    t.publish(
        "tool-a",
        "1.0",
        Archive::new()
            .with(Entry::file_mode("bin/tool", "#!/bin/sh\necho a\n", 0o755))
            .with(Entry::file("share/same", "same")),
        &[],
        "",
    );
    t.publish(
        "tool-b",
        "1.0",
        Archive::new()
            .with(Entry::file_mode("bin/tool", "#!/bin/sh\necho b\n", 0o755))
            .with(Entry::file("share/same", "same")),
        &[],
        "",
    );
    let file = t.profile("tools.toml", "[packages]\ntool-a = \"1\"\ntool-b = \"1\"\n");
    let out = t.envctl(&["apply", &file]);
    let err = out.failed();
    assert!(err.contains("`tool-a` and `tool-b` both ship `bin/tool`"), "{err}");
    assert!(err.contains("[priority]"), "{err}");
    assert!(t.envctl(&["generations", "tools"]).failed().contains("there is no profile `tools`"));

    t.profile("tools.toml", "[packages]\ntool-a = \"1\"\ntool-b = \"1\"\n[priority]\ntool-b = 10\n");
    t.envctl(&["apply", &file]).ok();
    assert_eq!(t.envctl(&["run", "tools", "--", "tool"]).ok(), "b");
}

#[test]
fn dry_run_touches_nothing_locked_refuses_a_stale_lock_and_frozen_uses_it() {
    let t = Team::new();
    let file = t.profile("vision.toml", "[packages]\ntensorflow = \"1.15\"\n");
    let plan = t.envctl(&["apply", &file, "--dry-run"]);
    plan.ok();
    assert!(
        plan.stdout.contains("fetch tensorflow 1.15.5") && plan.stdout.contains("change + cuda 10.0.130"),
        "{}",
        plan.stdout
    );
    // Sizes come from HEAD requests; nothing is downloaded.
    let archive = "/tensorflow-1.15.5.tar.gz";
    let len = t.server.body_len(archive).unwrap();
    let line = format!("fetch tensorflow 1.15.5 {} ({len} B)", t.server.url(archive));
    assert!(plan.stdout.contains(&line), "no `{line}` in:\n{}", plan.stdout);
    assert!(plan.stderr.contains("4 packages to fetch"), "{}", plan.stderr);
    assert!(t.server.heads(archive) >= 1);
    assert_eq!(t.server.hits(archive), t.server.heads(archive), "a dry run made a GET");
    assert!(!t.sb.path("vision.lock").exists());
    assert!(t.store_names().is_empty());
    assert!(!t.sb.path("envctl/profiles/vision").exists());

    for flag in ["--locked", "--frozen"] {
        let out = t.envctl(&["apply", &file, flag]);
        assert!(out.failed().contains("missing"), "{}", out.stderr);
    }
    t.envctl(&["lock", &file]).ok();
    t.envctl(&["apply", &file, "--locked"]).ok();
    // The file changes: --locked refuses the lock; --frozen (and `sync`) apply it as it is.
    let lock = std::fs::read_to_string(t.sb.path("vision.lock")).unwrap();
    t.profile("vision.toml", "[packages]\ntensorflow = \"1.15\"\npython = \"3.7.16\"\n");
    let out = t.envctl(&["apply", &file, "--locked"]);
    assert!(out.failed().contains("stale"), "{}", out.stderr);
    let out = t.envctl(&["apply", &file, "--frozen"]);
    assert!(out.ok().is_empty() && out.stderr.contains("up to date"), "{}", out.stderr);
    let out = t.envctl(&["sync", &file]);
    assert!(out.stderr.contains("up to date"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(t.sb.path("vision.lock")).unwrap(), lock, "a frozen apply re-locked");
}

#[test]
fn killing_apply_at_any_point_leaves_a_current_generation_and_a_clean_store() {
    let t = Team::new();
    let nlp = t.profile("nlp.toml", "[packages]\ntensorflow = \"2.15\"\n");
    t.envctl(&["apply", &nlp]).ok();
    let first = t.generations("nlp")[0]["path"].as_str().unwrap().to_owned();
    t.profile("nlp.toml", "[packages]\ntensorflow = \"2.16\"\n");
    // Make the new artifact's download stall halfway, then kill apply during it.
    let tf = std::fs::read_to_string(t.repo.join("tensorflow-2.16.1.toml")).unwrap();
    let path = "/tensorflow-2.16.1.tar.gz";
    let url_bytes = {
        let url = tf.lines().find(|l| l.starts_with("url")).unwrap().split('"').nth(1).unwrap().to_owned();
        assert!(url.ends_with(path));
        let body = http_get(&url);
        t.server.set(
            path,
            Reply::Stall { body: body.clone(), send: body.len() / 2, hang: Duration::from_secs(30) },
        );
        body
    };
    for delay in [0u64, 30, 80, 150, 300] {
        let mut child = t.spawn(&["apply", &nlp]);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        let gens = t.generations("nlp");
        let current: Vec<&serde_json::Value> =
            gens.as_array().unwrap().iter().filter(|g| g["current"] == true).collect();
        assert_eq!(current.len(), 1, "after a kill at {delay} ms: {gens}");
        assert_eq!(current[0]["path"], first.as_str(), "after a kill at {delay} ms");
        assert!(Path::new(&first).join(".envctl/manifest.toml").is_file());
        assert_eq!(t.tf_version("nlp").ok(), "2.15.0");
        t.sb.run(&["store", "verify"]).ok();
    }
    // Once the server behaves, the same apply completes.
    t.server.set(path, Reply::Body(url_bytes));
    t.envctl(&["apply", &nlp]).ok();
    assert_eq!(t.tf_version("nlp").ok(), "2.16.1");
    t.sb.run(&["store", "verify"]).ok();
}

fn http_get(url: &str) -> Vec<u8> {
    // The fixture server speaks plain HTTP/1.1; a raw request keeps the test free of clients.
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    buf[split..].to_vec()
}

#[test]
fn pure_sessions_and_env_formats() {
    let t = Team::new();
    let vision = t.profile("vision.toml", "[packages]\ntensorflow = \"1.15\"\n");
    t.envctl(&["apply", &vision]).ok();
    let mut c = t.sb.command(&[
        "--recipes",
        t.repo.to_str().unwrap(),
        "run",
        "--pure",
        "vision",
        "--",
        "sh",
        "-c",
        "echo ${SECRET:-unset} $PATH",
    ]);
    c.env("SECRET", "leak").env("ENVCTL_SYSTEM_DRIVER", "535.104.05");
    let out = c.output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(line.starts_with("unset ") && line.contains("-profile-vision/bin"), "{line}");
    let sh = t.envctl(&["env", "vision", "--format", "sh"]);
    assert!(
        sh.stdout.contains("export CUDA_HOME='") && sh.stdout.contains("export ENVCTL_PROFILE='vision'"),
        "{}",
        sh.stdout
    );
    let fish = t.envctl(&["env", "vision", "--format", "fish"]);
    assert!(fish.stdout.contains("set -gx PATH (string split :"), "{}", fish.stdout);
    let out = t.envctl(&["run", "nosuch", "--", "true"]);
    assert!(out.failed().contains("there is no profile `nosuch`"), "{}", out.stderr);
    let profiles: serde_json::Value =
        serde_json::from_str(&t.envctl(&["profiles", "--json"]).stdout).unwrap();
    assert_eq!(profiles[0]["name"], "vision");
    assert_eq!(profiles[0]["packages"], 4);
    assert!(profiles[0]["closure_bytes"].as_u64().unwrap() > 0);
    // Ad-hoc environments need no profile file.
    let adhoc = t.envctl(&["shell", "-p", "tensorflow=2.15", "--", "python3", "-c", IMPORT]);
    assert_eq!(adhoc.ok(), "2.15.0");
}

#[test]
fn an_apply_running_beside_gc_is_never_harmed() {
    let t = Team::new();
    let vision = t.profile("vision.toml", "[packages]\ntensorflow = \"1.15\"\n");
    // TensorFlow downloads slowly; the others arrive at once. GC starts while cuda, cudnn and
    // python are installed and registered but no generation roots them yet: without the store
    // lock it would delete them under apply's feet.
    let url = format!("{}/tensorflow-1.15.5.tar.gz", t.server.base());
    let body = http_get(&url);
    t.server.set("/tensorflow-1.15.5.tar.gz", Reply::Slow { body, delay: Duration::from_millis(1500) });
    let apply = t.spawn(&["apply", &vision]);
    std::thread::sleep(Duration::from_millis(700));
    let gc = t.spawn(&["gc", "--json"]);
    let (apply, gc) = (wait(apply), wait(gc));
    apply.ok();
    gc.ok();
    let report: serde_json::Value = serde_json::from_str(&gc.stdout).unwrap();
    assert_eq!(report["removed"].as_array().unwrap().len(), 0, "GC removed something apply needed: {report}");
    assert_eq!(t.tf_version("vision").ok(), "1.15.5");
    t.sb.run(&["store", "verify"]).ok();
}

#[test]
fn shell_starts_the_users_shell_in_the_profile_and_returns_its_status() {
    use std::io::Write;
    let t = Team::new();
    let vision = t.profile("vision.toml", "[packages]\ntensorflow = \"1.15\"\n");
    t.envctl(&["apply", &vision]).ok();
    let mut c = t.sb.command(&["--recipes", t.repo.to_str().unwrap(), "shell", "vision"]);
    c.env("SHELL", "/bin/sh")
        .env("ENVCTL_SYSTEM_DRIVER", "535.104.05")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("echo profile=$ENVCTL_PROFILE\npython3 -c '{IMPORT}'\nexit 3\n").as_bytes())
        .unwrap();
    let out = wait(child);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, "profile=vision\n1.15.5\n");
    assert!(out.stderr.contains("entering `vision`"), "{}", out.stderr);
}

/// Every entry of a farm below `root` but its manifest: relative path and link target (or `/`
/// for a directory).
fn farm_entries(root: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == ".envctl" {
                continue;
            }
            match std::fs::read_link(&path) {
                Ok(target) => out.push((rel, target.display().to_string())),
                Err(_) => {
                    out.push((rel, "/".into()));
                    walk(root, &path, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn switching_one_package_shares_the_previous_generations_links_and_never_its_damage() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = Team::new();
    for v in ["1.0", "2.0"] {
        let a = Archive::new()
            .with(Entry::file("lib/libfoo.so", format!("foo {v}")))
            .with(Entry::file("share/foo/readme", v.to_owned()));
        t.publish("libfoo", v, a, &[], "");
    }
    let bar =
        Archive::new().with(Entry::file("lib/libbar.so", "bar")).with(Entry::file("lib/libbar.so.1", "bar1"));
    t.publish("libbar", "1.0", bar, &[], "");
    let file = t.profile("team.toml", "[packages]\nlibfoo = \"1\"\nlibbar = \"1\"\n");
    t.envctl(&["apply", &file]).ok();
    let current = || std::fs::canonicalize(t.sb.path("envctl/profiles/team")).unwrap();
    let inode = |g: &Path, rel: &str| std::fs::symlink_metadata(g.join(rel)).unwrap().ino();
    let first = current();

    t.profile("team.toml", "[packages]\nlibfoo = \"2\"\nlibbar = \"1\"\n");
    t.envctl(&["apply", &file]).ok();
    let second = current();
    assert_ne!(first, second);
    // libbar's links are the first generation's own (one inode, one block); libfoo's are new.
    for rel in ["lib/libbar.so", "lib/libbar.so.1"] {
        assert_eq!(inode(&first, rel), inode(&second, rel), "{rel} was made again");
    }
    assert_ne!(inode(&first, "lib/libfoo.so"), inode(&second, "lib/libfoo.so"));
    assert_eq!(std::fs::read_to_string(second.join("lib/libfoo.so")).unwrap(), "foo 2.0");
    assert_eq!(std::fs::read_to_string(second.join("share/foo/readme")).unwrap(), "2.0");
    // Built from nothing (another profile), the same packages give the same farm.
    let fresh = t.profile("fresh.toml", "[packages]\nlibfoo = \"2\"\nlibbar = \"1\"\n");
    t.envctl(&["apply", &fresh]).ok();
    let scratch = std::fs::canonicalize(t.sb.path("envctl/profiles/fresh")).unwrap();
    assert_ne!(inode(&scratch, "lib/libbar.so"), inode(&second, "lib/libbar.so"));
    assert_eq!(farm_entries(&scratch), farm_entries(&second));
    t.sb.run(&["store", "verify"]).ok();

    // Someone with write access points one of the current generation's links elsewhere: the
    // next generation does not inherit it, and verify names only the damaged one.
    let lib = second.join("lib");
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_file(lib.join("libbar.so")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", lib.join("libbar.so")).unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o555)).unwrap();
    t.profile("team.toml", "[packages]\nlibfoo = \"2\"\nlibbar = \"1\"\n[env]\nTEAM = \"vision\"\n");
    t.envctl(&["apply", &file]).ok();
    let third = current();
    assert_ne!(third, second);
    assert_eq!(std::fs::read_to_string(third.join("lib/libbar.so")).unwrap(), "bar");
    assert_ne!(inode(&third, "lib/libbar.so"), inode(&second, "lib/libbar.so"));
    assert_eq!(inode(&third, "lib/libbar.so.1"), inode(&first, "lib/libbar.so.1"));
    assert_eq!(farm_entries(&third), farm_entries(&scratch));
    let verify = t.sb.run(&["store", "verify"]);
    let report = verify.failed();
    let name = |g: &Path| g.file_name().unwrap().to_string_lossy().into_owned();
    assert!(report.contains(&name(&second)), "{report}");
    assert!(!report.contains(&name(&third)), "{report}");

    // Deleting the generations it shares links with leaves the current one whole.
    t.envctl(&["generations", "team", "--delete", "1", "2"]).ok();
    t.envctl(&["gc"]).ok();
    assert!(!first.exists() && !second.exists());
    assert_eq!(std::fs::read_to_string(third.join("lib/libbar.so.1")).unwrap(), "bar1");
    t.sb.run(&["store", "verify"]).ok();
}
