//! A project's `envctl.toml`: edited from the command line (`init`, `add`, `remove`), found in
//! a parent directory, locked (`outdated`, `lock --update`, priorities, relative sources), and
//! read back (`list --tree`, `why`, `graph`); ad-hoc packages beside it.

mod common;

use common::fixture::Fixture;

#[test]
fn a_priority_for_a_package_the_profile_does_not_have_is_an_error_with_the_nearest_name() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\nworld = \"1\"\n[priority]\nhelo = 3\n");
    let err = f.run(&["apply", &p]).failed().to_owned();
    assert!(err.contains("[priority] names `helo`") && err.contains("did you mean `hello`?"), "{err}");
    let p = f.profile("p", "[packages]\nhello = \"1\"\nworld = \"1\"\n[priority]\nhello = 3\n");
    f.run(&["apply", &p]).ok();
}

#[test]
fn lock_update_of_a_misspelt_name_suggests_the_nearest() {
    let f = Fixture::new();
    let p = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.run(&["lock", &p]).ok();
    let err = f.run(&["lock", &p, "--update", "helo"]).failed().to_owned();
    assert!(err.contains("did you mean `hello`?"), "{err}");
}

#[test]
fn ad_hoc_packages_take_name_at_requirement_and_their_files_go_with_gc() {
    let f = Fixture::new();
    assert_eq!(f.run(&["shell", "-p", "hello@2", "--", "hello"]).ok(), "hello 2.0");
    assert_eq!(f.run(&["shell", "-p", "hello=1", "--", "hello"]).ok(), "hello 1.0");
    let err = f.run(&["shell", "-p", "Bad Name@1", "--", "true"]).failed().to_owned();
    assert!(err.contains("invalid `-p Bad Name@1`") && !err.contains("adhoc/"), "{err}");
    let adhoc = f.sb.path("envctl/adhoc");
    assert!(!common::list(&adhoc).is_empty());
    // Files untouched for more than ten minutes are collected with the store.
    for name in common::list(&adhoc) {
        let out = std::process::Command::new("touch")
            .args(["-d", "1 hour ago"])
            .arg(adhoc.join(&name))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    f.run(&["gc"]).ok();
    assert!(common::list(&adhoc).is_empty(), "{:?}", common::list(&adhoc));
}

/// `envctl init`, `add`, `remove`: the profile file edited from the command line, its comments
/// kept, then locked and applied; found in a parent directory.
#[test]
fn init_add_and_remove_edit_the_file_keeping_comments_and_apply_it() {
    let f = Fixture::new();
    let project = f.sb.path("team-vision");
    std::fs::create_dir_all(project.join("src/deep")).unwrap();
    let run_in = |dir: &std::path::Path, args: &[&str]| {
        let out = f.sb.command(args).current_dir(dir).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run_in(&project, &["init"]);
    assert_eq!(code, 0, "{err}");
    let file = project.join("envctl.toml");
    assert!(std::fs::read_to_string(&file).unwrap().contains("name = \"team-vision\""));
    let (code, err) = run_in(&project, &["init"]);
    assert_eq!(code, 1, "a second init must not replace the file: {err}");

    // A comment of the team's own, then `add` from a sub-directory.
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[packages]\n", "[packages]\n# pinned for the paper\n");
    std::fs::write(&file, text).unwrap();
    let (code, err) = run_in(&project.join("src/deep"), &["add", "hello@1", "world"]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("# pinned for the paper")
            && text.contains("hello = \"1\"")
            && text.contains("world = \"*\""),
        "{text}"
    );
    let out = f.run(&["run", "team-vision", "--", "hello"]);
    assert_eq!(out.ok(), "hello 1.0");

    // Changing a requirement replaces it; removing a package applies again without it.
    let (code, err) = run_in(&project, &["add", "hello=2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(f.run(&["run", "team-vision", "--", "hello"]).ok(), "hello 2.0");
    let (code, err) = run_in(&project, &["remove", "world"]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("world") && text.contains("# pinned for the paper"), "{text}");
    let listed = f.run(&["list", "team-vision"]).stdout;
    assert!(!listed.contains("world") && listed.contains("hello"), "{listed}");
    let (code, err) = run_in(&project, &["remove", "helo"]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `hello`"), "{err}");

    // A failed `add` (a misspelt name) or `remove` (one whose lock fails) puts the file and its
    // lock back: the next command does not trip over it.
    let lock = project.join("envctl.lock");
    let (text, locked) = (std::fs::read_to_string(&file).unwrap(), std::fs::read_to_string(&lock).unwrap());
    let (code, err) = run_in(&project, &["add", "helo"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is left as it was"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "the file is as it was");
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), locked, "the lock is as it was");
    let (code, err) = run_in(&project, &["add", "world"]);
    assert_eq!(code, 0, "the next add is not stopped by the failed one: {err}");
    assert!(std::fs::read_to_string(&file).unwrap().contains("world = \"*\""));
    // Without a lock before, none is left behind.
    std::fs::remove_file(&lock).unwrap();
    let text = std::fs::read(&file).unwrap();
    let (code, err) = run_in(&project, &["add", "hello@9"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), text);
    assert!(!lock.exists(), "no lock is left by a failed add");
    assert!(
        std::fs::read_dir(&project).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp"))
    );

    // Nowhere to add to.
    let (code, err) = run_in(&f.sb.path("user"), &["add", "hello"]);
    assert_eq!(code, 1);
    assert!(err.contains("envctl init"), "{err}");
}

/// `envctl outdated`: what `lock --update` would move, and the newest version there is.
#[test]
fn outdated_lists_what_the_requirements_allow_and_what_is_newest() {
    let f = Fixture::new();
    let p = f.profile("team", "[packages]\nhello = \"1\"\nworld = \"*\"\n");
    f.run(&["lock", &p]).ok();
    let json: serde_json::Value = serde_json::from_str(&f.run(&["outdated", &p, "--json"]).stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"name": "hello", "locked": "1.0", "allowed": "1.0", "newest": "2.0"}]),
        "world is at its newest and is not listed"
    );
    // The requirement loosened, the lock not yet updated: 2.0 is allowed now.
    std::fs::write(&p, "[packages]\nhello = \"*\"\nworld = \"*\"\n").unwrap();
    let out = f.run(&["outdated", &p]);
    let header = out.ok();
    assert!(header.starts_with("PACKAGE") && header.contains("ALLOWED"), "{header}");
    let row = out.stdout.lines().find(|l| l.starts_with("hello")).unwrap();
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["hello", "1.0", "2.0", "2.0"]);
    assert!(out.stderr.contains("--update"), "{}", out.stderr);
    let lock = std::fs::read_to_string(f.sb.path("team.lock")).unwrap();
    assert!(lock.contains("version = \"1.0\""), "outdated must not write the lock");
}

#[test]
fn a_lock_keeps_relative_path_sources_relative_so_another_clone_applies_it_frozen() {
    let sb = common::Sandbox::new();
    let project = sb.path("clone-a");
    std::fs::create_dir_all(project.join("recipes")).unwrap();
    std::fs::create_dir_all(project.join("artifacts")).unwrap();
    let a = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file_mode(
        "bin/hello",
        "#!/bin/sh\necho hi\n",
        0o755,
    ));
    let bytes = a.tar_gz();
    std::fs::write(project.join("artifacts/hello-1.0.tar.gz"), &bytes).unwrap();
    std::fs::write(
        project.join("recipes/hello-1.0.toml"),
        format!(
            "name = \"hello\"\nversion = \"1.0\"\n[[source]]\nurl = \"../artifacts/hello-1.0.tar.gz\"\nsha256 = \"{}\"\n",
            envctl_testkit::sha256_hex(&bytes)
        ),
    )
    .unwrap();
    std::fs::write(project.join("p.toml"), "[packages]\nhello = \"1\"\n").unwrap();
    sb.config(&format!("recipes = [\"{}\"]", project.join("recipes").display()));
    sb.run(&["lock", &project.join("p.toml").display().to_string()]).ok();
    let lock = std::fs::read_to_string(project.join("p.lock")).unwrap();
    assert!(lock.contains("url = \"artifacts/hello-1.0.tar.gz\""), "{lock}");
    assert!(!lock.contains(&project.display().to_string()), "{lock}");

    // Another clone, elsewhere; the first one is gone.
    let other = sb.path("elsewhere/clone-b");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::rename(&project, &other).unwrap();
    sb.config(&format!("recipes = [\"{}\"]", other.join("recipes").display()));
    let file = other.join("p.toml").display().to_string();
    sb.run(&["apply", "--frozen", &file]).ok();
    assert_eq!(sb.run(&["run", "p", "--", "hello"]).ok(), "hi");
    // Applying recorded the store path in the lock, not this clone's absolute paths.
    let after = std::fs::read_to_string(other.join("p.lock")).unwrap();
    assert!(
        after.contains("url = \"artifacts/hello-1.0.tar.gz\"") && after.contains("store-path"),
        "{after}"
    );
    assert!(!after.contains(&other.display().to_string()), "{after}");
}

#[test]
fn a_profile_names_its_repositories_and_indexes_so_a_teammates_fresh_machine_applies_the_lock() {
    // The team's repository: its profile, its recipes, and a directory of artifacts it serves as
    // the index `lab`; nothing in envctl's configuration on either machine.
    let sb = common::Sandbox::new();
    let project = sb.path("team");
    std::fs::create_dir_all(project.join("recipes")).unwrap();
    std::fs::create_dir_all(project.join("wheels")).unwrap();
    let a = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file_mode(
        "bin/hello",
        "#!/bin/sh\necho hi from the lab\n",
        0o755,
    ));
    let bytes = a.tar_gz();
    std::fs::write(project.join("wheels/hello-1.0.tar.gz"), &bytes).unwrap();
    std::fs::write(
        project.join("recipes/hello-1.0.toml"),
        format!(
            "name = \"hello\"\nversion = \"1.0\"\n[[source]]\nindex = \"lab\"\nfilename = \"hello-1.0.tar.gz\"\nformat = \"tar.gz\"\nsha256 = \"{}\"\n",
            envctl_testkit::sha256_hex(&bytes)
        ),
    )
    .unwrap();
    let profile =
        "[packages]\nhello = \"1\"\n\n[recipes]\nteam = \"recipes\"\n\n[indexes]\nlab = [\"wheels\"]\n";
    std::fs::write(project.join("envctl.toml"), profile).unwrap();
    let file = project.join("envctl.toml").display().to_string();
    sb.run(&["lock", &file]).ok();
    let lock = std::fs::read_to_string(project.join("envctl.lock")).unwrap();
    assert!(lock.contains("[recipes]\nteam = \"recipes\"\n\n[indexes]\nlab = [\"wheels\"]\n"), "{lock}");

    // A teammate clones it elsewhere, on a machine of their own.
    let teammate = common::Sandbox::new();
    let clone = teammate.path("src/team");
    std::fs::create_dir_all(clone.parent().unwrap()).unwrap();
    common::copy_dir(&project, &clone);
    let theirs = clone.join("envctl.toml").display().to_string();
    teammate.run(&["apply", "--locked", &theirs]).ok();
    assert_eq!(teammate.run(&["run", "envctl", "--", "hello"]).ok(), "hi from the lab");

    // Without the file naming its index, a fresh machine is told where to name it, not to re-lock.
    let fresh = common::Sandbox::new();
    let bare = fresh.path("bare");
    common::copy_dir(&project, &bare);
    std::fs::write(bare.join("envctl.toml"), "[packages]\nhello = \"1\"\n\n[recipes]\nteam = \"recipes\"\n")
        .unwrap();
    let err = fresh.run(&["apply", &bare.join("envctl.toml").display().to_string()]).failed().to_owned();
    assert!(
        err.contains("names the package index `lab`, which is not configured")
            && err.contains("name it in the profile file, and commit it"),
        "{err}"
    );
}

/// A profile `p` of `app` (needing hello and world) and `tool` (needing world), applied from
/// `envctl.toml` in `proj/`.
fn with_dependencies() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new();
    let a = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("share/app", "a"));
    f.publish("app", "1.0", &a.tar_gz(), "[dependencies]\nhello = \"1\"\nworld = \"1\"");
    let t = envctl_testkit::Archive::new().with(envctl_testkit::Entry::file("share/tool", "t"));
    f.publish("tool", "1.0", &t.tar_gz(), "[dependencies]\nworld = \"1\"");
    let proj = f.sb.path("proj/src/deep");
    std::fs::create_dir_all(&proj).unwrap();
    let file = f.sb.path("proj/envctl.toml");
    std::fs::write(&file, "name = \"p\"\n[packages]\napp = \"1\"\ntool = \"1\"\n").unwrap();
    f.run(&["apply", &file.display().to_string()]).ok();
    (f, proj)
}

#[test]
fn list_tree_why_and_graph_read_an_applied_profile() {
    let (f, _) = with_dependencies();
    let tree = f.run(&["list", "p", "--tree"]).success().stdout;
    assert_eq!(tree, "app 1.0\n├── hello 1.0\n└── world 1.0\ntool 1.0\n└── world 1.0\n", "{tree}");
    // cargo tree's --depth and --invert.
    assert_eq!(f.run(&["list", "p", "--tree", "--depth", "0"]).success().stdout, "app 1.0\ntool 1.0\n");
    let inverted = f.run(&["list", "p", "--tree", "--invert", "world"]).success().stdout;
    assert_eq!(inverted, "world 1.0\n├── app 1.0\n└── tool 1.0\n", "{inverted}");
    let err = f.run(&["list", "p", "--tree", "-i", "wrold"]).failed().to_owned();
    assert!(err.contains("the profile has no package `wrold`; did you mean `world`?"), "{err}");
    let usage = f.run(&["list", "p", "--depth", "1"]);
    assert!(usage.code == 2 && usage.stderr.contains("--tree"), "{}", usage.stderr);
    let why = f.run(&["why", "p", "world"]).success().stdout;
    assert_eq!(
        why, "app 1.0    (asked for by profile `p`, generation 1)\n└─ world 1.0    (needs world)\n",
        "{why}"
    );
    let graph = f.run(&["graph", "p"]).success().stdout;
    assert!(graph.contains("app 1.0 -> hello, world\n") && graph.contains("tool 1.0 -> world\n"), "{graph}");
    // The file gives the same graph, with each edge's requirement.
    let file = f.sb.path("proj/envctl.toml").display().to_string();
    assert_eq!(f.run(&["graph", &file]).success().stdout, graph);
    let why = f.run(&["why", &file, "world"]).success().stdout;
    assert!(why.contains("└─ world 1.0    (needs world 1)"), "{why}");
    let err = f.run(&["why", "q", "world"]).failed().to_owned();
    assert!(err.contains("there is no profile `q`"), "{err}");
}

#[test]
fn run_env_and_list_find_envctl_toml_in_a_parent_and_run_takes_the_command_without_dashes() {
    let (f, deep) = with_dependencies();
    let run = |args: &[&str]| {
        let mut c = f.sb.command(args);
        c.current_dir(&deep);
        common::Run::from(c.output().unwrap())
    };
    // A profile, then the command and its options, no `--`.
    assert_eq!(f.run(&["run", "p", "hello", "--version"]).ok(), "hello 1.0");
    assert_eq!(f.run(&["run", "p", "sh", "-c", "echo $ENVCTL_PROFILE"]).ok(), "p");
    // No profile: `--`, then the command, in the profile envctl.toml names.
    assert_eq!(run(&["run", "--", "sh", "-c", "echo $ENVCTL_PROFILE"]).ok(), "p");
    let env = run(&["env", "--format", "json"]).success().stdout;
    assert!(env.contains("\"ENVCTL_PROFILE\": \"p\""), "{env}");
    let list = run(&["list"]).success().stdout;
    assert!(list.starts_with("PACKAGE") && list.contains("tool"), "{list}");
    // Nowhere to find one: says where it looked.
    let err = f.run(&["list"]).failed().to_owned();
    assert!(err.contains("no `envctl.toml` here or in a parent directory"), "{err}");
}

/// Issue 27, 4: `envctl update [NAME…]` re-locks and applies in one command; `lock --update FILE`
/// takes the file as the file.
#[test]
fn update_relocks_and_applies_and_lock_update_takes_a_file() {
    let f = Fixture::new();
    let project = f.sb.path("proj");
    std::fs::create_dir_all(&project).unwrap();
    let file = project.join("envctl.toml");
    let in_project = |args: &[&str]| {
        let out = f.sb.command(args).current_dir(&project).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).trim().to_owned(), stderr)
    };
    let locked = |name: &str| {
        let lock = std::fs::read_to_string(project.join("envctl.lock")).unwrap();
        let at = lock.find(&format!("name = \"{name}\"")).unwrap();
        lock[at..].lines().nth(1).unwrap().to_owned()
    };
    std::fs::write(&file, "name = \"p\"\n[packages]\nhello = \"1\"\nworld = \"*\"\n").unwrap();
    assert_eq!(in_project(&["apply", "envctl.toml"]).0, 0);
    // Loosened: the lock keeps hello 1 (a lock does not upgrade behind a team's back).
    std::fs::write(&file, "name = \"p\"\n[packages]\nhello = \"*\"\nworld = \"*\"\n").unwrap();
    assert_eq!(in_project(&["lock"]).0, 0, "`lock` finds envctl.toml");
    assert_eq!(locked("hello"), "version = \"1.0\"");

    let (code, _, err) = in_project(&["update", "helo"]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `hello`"), "{err}");
    let (code, _, err) = in_project(&["update", "hello", "--no-apply"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(locked("hello"), "version = \"2.0\"");
    assert_eq!(in_project(&["run", "p", "--", "hello"]).1, "hello 1.0", "--no-apply applied");
    let (code, _, err) = in_project(&["update"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(in_project(&["run", "p", "--", "hello"]).1, "hello 2.0");

    // `lock --update FILE`: the file is the file, and everything is re-resolved.
    std::fs::write(&file, "name = \"p\"\n[packages]\nhello = \"<=1\"\n").unwrap();
    assert_eq!(in_project(&["lock"]).0, 0);
    std::fs::write(&file, "name = \"p\"\n[packages]\nhello = \"*\"\n").unwrap();
    let (code, _, err) = in_project(&["lock", "--update", "envctl.toml"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(locked("hello"), "version = \"2.0\"");
}

/// Issue 26, 6: an apply records each archive's size in the lock, so a fresh machine's dry run
/// says what it would download without asking the network, and an offline apply lists what is
/// missing one per line with its size.
#[test]
fn the_lock_records_archive_sizes_for_dry_runs_and_offline_applies_elsewhere() {
    let f = Fixture::new();
    let file = f.profile("p", "[packages]\nhello = \"1\"\n");
    f.run(&["apply", &file]).success();
    let len = f.server.body_len("/hello-1.0.tar.gz").unwrap();
    let lock = std::fs::read_to_string(f.sb.path("p.lock")).unwrap();
    assert!(lock.starts_with("# Generated") && lock.contains("\nversion = 3\n"), "{lock}");
    assert!(lock.contains(&format!("archive-size = {len}\n")), "{lock}");

    // Another machine: an empty home, the same lock.
    let elsewhere = f.sb.path("elsewhere");
    let other = [("ENVCTL_HOME", elsewhere.to_str().unwrap())];
    let heads = f.server.heads("/hello-1.0.tar.gz");
    let plan = f.sb.run_env(&["apply", &file, "--frozen", "--dry-run"], &other).success();
    assert!(plan.stdout.contains(&format!("hello-1.0.tar.gz ({len} B)")), "{}", plan.stdout);
    assert_eq!(
        f.server.heads("/hello-1.0.tar.gz"),
        heads,
        "the dry run asked the network for a size the lock has"
    );
    let err = f.sb.run_env(&["apply", &file, "--frozen", "--offline"], &other).failure();
    let url = f.server.url("/hello-1.0.tar.gz");
    assert!(err.failed().contains(&format!("\n    hello 1.0 ({url}, {len} B)")), "{}", err.stderr);
}
