//! `lock`, `outdated` and the dependency graph through the ops layer's API: what a lock writes and
//! reports, that an unchanged file is up to date, that `--update NAME` moves only NAME, and the
//! chain `why` explains.

use envctl_ops::graph::view;
use envctl_ops::lock::{Outcome, Update, lock, outdated};
use envctl_ops::manifest::Change;
use envctl_recipes::PackageName;

mod common;
use common::{Package, setup_packages};

fn packages() -> Vec<Package<'static>> {
    vec![
        Package { name: "app", version: "1.0", depends: &[("lib", ">=1")] },
        Package { name: "lib", version: "1.0", depends: &[("base", "1")] },
        Package { name: "base", version: "1.0", depends: &[] },
        Package { name: "tool", version: "1.0", depends: &[] },
    ]
}

/// The recipes of [`packages`] and a profile file `p.toml` asking for app and tool.
fn project() -> (envctl_testkit::TempDir, envctl_ops::Settings, std::path::PathBuf) {
    let dir = envctl_testkit::tempdir();
    let settings = setup_packages(dir.path(), &packages());
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "[packages]\napp = \"*\"\ntool = \"*\"\n").unwrap();
    (dir, settings, file)
}

#[test]
fn a_lock_is_written_once_then_up_to_date_and_an_update_moves_only_what_it_names() {
    let (dir, settings, file) = project();

    let mut warnings = Vec::new();
    let first = lock(&file, &Update::Nothing, &settings, false, &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(first.path, dir.path().join("p.lock"));
    assert!(first.path.is_file(), "the lock is written beside the file");
    let Outcome::Written { changes } = &first.outcome else { panic!("{:?}", first.outcome) };
    let added: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(added, ["+ app 1.0", "+ base 1.0", "+ lib 1.0", "+ tool 1.0"]);
    let written = std::fs::read(&first.path).unwrap();

    let again = lock(&file, &Update::Nothing, &settings, false, &mut warnings).unwrap();
    assert!(
        matches!(again.outcome, Outcome::UpToDate { ref unmet } if unmet.is_empty()),
        "{:?}",
        again.outcome
    );
    assert_eq!(again.lock.packages, first.lock.packages);
    assert_eq!(std::fs::read(&first.path).unwrap(), written, "an up-to-date lock is not rewritten");

    // New versions of lib and tool appear; updating lib moves lib alone.
    let more = [
        Package { name: "lib", version: "1.1", depends: &[("base", "1")] },
        Package { name: "tool", version: "2.0", depends: &[] },
    ];
    let settings = setup_packages(dir.path(), &more);
    let (_, stale) = outdated(&file, &settings).unwrap();
    let moves: Vec<(&str, Option<&str>)> =
        stale.iter().map(|o| (o.name.as_str(), o.allowed.as_deref())).collect();
    assert_eq!(moves, [("lib", Some("1.1")), ("tool", Some("2.0"))]);

    let updated =
        lock(&file, &Update::Packages(vec!["lib".into()]), &settings, false, &mut warnings).unwrap();
    let Outcome::Written { changes } = &updated.outcome else { panic!("{:?}", updated.outcome) };
    assert_eq!(changes, &[Change::Changed { name: "lib".into(), old: "1.0".into(), new: "1.1".into() }]);

    let unknown =
        lock(&file, &Update::Packages(vec!["tol".into()]), &settings, false, &mut warnings).unwrap_err();
    let text = unknown.render();
    assert!(text.contains("cannot update `tol`") && text.contains("did you mean `tool`?"), "{text}");
}

#[test]
fn the_graph_of_a_file_explains_a_dependency_by_the_chain_that_pulls_it_in() {
    let (_dir, settings, file) = project();

    let v = view(file.to_str().unwrap(), &settings).unwrap();
    let name = |n: &str| PackageName::parse(n).unwrap();
    let chain: Vec<String> = v.graph.why(&name("base")).unwrap().iter().map(|n| n.to_string()).collect();
    assert_eq!(chain, ["app", "lib", "base"]);
    assert_eq!(v.needs[&(name("lib"), name("base"))], "1");
    assert!(v.asked[&name("app")].contains("p.toml:2"), "{}", v.asked[&name("app")]);
    assert!(v.graph.why(&name("nothing")).is_none());
}
