//! One manifest, several environments (issue 27, 6): `[feature.NAME]` package sets composed by
//! `[environments]`, each locked in the one lock file and applied as its own profile, as pixi's
//! features and environments are.

mod common;

use common::Run;
use common::fixture::Fixture;

const MANIFEST: &str = r#"name = "p"
[packages]
world = "1"

[feature.new.packages]
hello = "2"

[feature.old.packages]
hello = "1"

[environments]
default = ["new"]
old = ["old"]
"#;

fn project(f: &Fixture, manifest: &str) -> std::path::PathBuf {
    let dir = f.sb.path("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("envctl.toml"), manifest).unwrap();
    dir
}

fn in_dir(f: &Fixture, dir: &std::path::Path, args: &[&str]) -> Run {
    Run::from(f.sb.command(args).current_dir(dir).output().unwrap())
}

/// The version a lock's table of packages holds for `name`.
fn version_in(packages: &toml::Value, name: &str) -> String {
    let p = packages.as_array().unwrap().iter().find(|p| p["name"].as_str() == Some(name)).unwrap();
    p["version"].as_str().unwrap().to_owned()
}

#[test]
fn each_environment_is_locked_in_the_one_lock_file_and_applied_as_its_own_profile() {
    let f = Fixture::new();
    let dir = project(&f, MANIFEST);

    // `lock` locks every environment: the default one at the top, the others in their sections.
    let said = in_dir(&f, &dir, &["lock"]).success().stderr;
    assert!(
        said.contains("wrote `") && said.contains("envctl.lock`, environment `old`, (2 packages)"),
        "{said}"
    );
    let text = std::fs::read_to_string(dir.join("envctl.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(version_in(&lock["package"], "hello"), "2.0", "{text}");
    assert_eq!(version_in(&lock["environment"]["old"]["package"], "hello"), "1.0", "{text}");
    assert_eq!(version_in(&lock["environment"]["old"]["package"], "world"), "1.0", "{text}");
    in_dir(&f, &dir, &["lock"]).success();
    assert_eq!(
        std::fs::read_to_string(dir.join("envctl.lock")).unwrap(),
        text,
        "a second lock changed the file"
    );

    // Each runs as its own profile; `-e` goes before or after the command's name.
    assert_eq!(in_dir(&f, &dir, &["run", "--", "hello"]).ok(), "hello 2.0");
    assert_eq!(in_dir(&f, &dir, &["run", "-e", "old", "--", "hello"]).ok(), "hello 1.0");
    assert_eq!(
        in_dir(&f, &dir, &["-e", "old", "run", "--", "sh", "-c", "echo $ENVCTL_PROFILE"]).ok(),
        "p-old"
    );
    assert_eq!(in_dir(&f, &dir, &["run", "--", "sh", "-c", "echo $ENVCTL_PROFILE"]).ok(), "p");
    let listed = f.run(&["profiles"]).success().stdout;
    assert!(listed.contains("p-old") && listed.lines().any(|l| l.starts_with("p ")), "{listed}");
    // Applying one environment keeps the others' locks (each records its store paths in its own
    // section); a frozen apply uses its own section.
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("envctl.lock")).unwrap()).unwrap();
    for packages in [&lock["package"], &lock["environment"]["old"]["package"]] {
        let hello =
            packages.as_array().unwrap().iter().find(|p| p["name"].as_str() == Some("hello")).unwrap();
        assert!(hello.get("store-path").is_some(), "{lock}");
    }
    in_dir(&f, &dir, &["apply", "-e", "old", "--frozen", "envctl.toml"]).success();

    // An update moves a package wherever an environment has it, and only there.
    let loosened =
        MANIFEST.replace("[feature.old.packages]\nhello = \"1\"", "[feature.old.packages]\nhello = \"*\"");
    std::fs::write(dir.join("envctl.toml"), &loosened).unwrap();
    in_dir(&f, &dir, &["lock"]).success();
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("envctl.lock")).unwrap()).unwrap();
    assert_eq!(
        version_in(&lock["environment"]["old"]["package"], "hello"),
        "1.0",
        "a lock does not upgrade by itself"
    );
    in_dir(&f, &dir, &["update", "hello", "--no-apply"]).success();
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(dir.join("envctl.lock")).unwrap()).unwrap();
    assert_eq!(version_in(&lock["environment"]["old"]["package"], "hello"), "2.0");
    let err = in_dir(&f, &dir, &["update", "helo"]).failed().to_owned();
    assert!(err.contains("no environment of") && err.contains("`helo`"), "{err}");
}

#[test]
fn a_wrong_environment_or_feature_is_named_with_what_the_file_defines() {
    let f = Fixture::new();
    let dir = project(&f, MANIFEST);
    let err = in_dir(&f, &dir, &["run", "-e", "gpu", "--", "hello"]).failed().to_owned();
    assert!(err.contains("no environment `gpu`; the file defines old"), "{err}");
    // A profile is one environment already: `-e` with a profile's name says what to name instead.
    in_dir(&f, &dir, &["apply", "envctl.toml"]).success();
    let err = in_dir(&f, &dir, &["run", "-e", "old", "p", "--", "hello"]).failed().to_owned();
    assert!(err.contains("`p` is a profile") && err.contains("`p-old`"), "{err}");

    let dir = project(&f, &MANIFEST.replace("old = [\"old\"]", "old = [\"olde\"]"));
    let err = in_dir(&f, &dir, &["lock"]).failed().to_owned();
    assert!(
        err.contains("line 13") && err.contains("no feature `olde` is defined; the file defines new, old"),
        "{err}"
    );

    // Two features of one environment asking for the same package: which, and where.
    let dir = project(&f, &MANIFEST.replace("old = [\"old\"]", "both = [\"new\", \"old\"]"));
    let err = in_dir(&f, &dir, &["-e", "both", "lock"]).failed().to_owned();
    assert!(
        err.contains("the features `new` (line 6) and `old` of one environment both ask for `hello`"),
        "{err}"
    );
}
