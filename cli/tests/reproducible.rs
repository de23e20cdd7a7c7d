//! A lock reproduces: the same lock gives the same store paths in every home, whatever was
//! compiled or built there, and what was promised once is never given again (generation numbers).

mod common;

use common::fixture::Fixture;
use common::list;
use envctl_testkit::python::Wheel;

/// A wheel with enough Python in it that its bytecode is worth comparing.
fn library() -> Wheel {
    Wheel::new("repro-lib", "1.0", "py3-none-any")
        .file("repro/__init__.py", "from .core import answer\n")
        .file(
            "repro/core.py",
            "CODES = {'225', '226', '426'}\ndef answer(x=None):\n    return [c for c in sorted(CODES) if x is None or c != x]\n",
        )
}

#[test]
fn one_lock_applied_in_ten_fresh_homes_gives_the_same_store_paths() {
    let f = Fixture::new();
    // CPython 3.12 is where the old compiler's pool wrote `ftplib` two ways.
    f.publish_python("3.12");
    let w = library();
    f.publish_wheel(&w, &w.build(), "python = \">=3.7\"");
    let profile = f.profile("repro", "[packages]\nrepro-lib = \"*\"\npython = \"3.12\"\n");
    f.run(&["apply", &profile]).success();
    let lock = std::fs::read_to_string(f.sb.path("repro.lock")).unwrap();
    assert!(lock.contains("tree-hash"), "{lock}");
    let reference = list(&f.sb.store());
    assert!(reference.iter().any(|n| n.contains("-python-3.12")), "{reference:?}");
    assert!(reference.iter().any(|n| n.contains("-bytecode-")), "{reference:?}");

    // Every home at the same place, as on the nodes of a cluster: the profile's `pyvenv.cfg`
    // names its store's directory, so a home elsewhere has another venv and generation. Each
    // home is moved aside once applied and the next one starts empty where it was.
    let home = f.sb.path("envctl");
    std::fs::rename(&home, f.sb.path("home0")).unwrap();
    for i in 1..10 {
        let dir = f.sb.path(&format!("project{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("repro.toml");
        std::fs::copy(f.sb.path("repro.toml"), &file).unwrap();
        std::fs::write(dir.join("repro.lock"), &lock).unwrap();
        f.run(&["apply", "--frozen", &file.display().to_string()]).success();
        assert_eq!(list(&f.sb.store()), reference, "home {i} has other store paths than the first home");
        let again = std::fs::read_to_string(dir.join("repro.lock")).unwrap();
        assert_eq!(again, lock, "home {i} rewrote the lock");
        std::fs::rename(&home, f.sb.path(&format!("home{i}"))).unwrap();
    }
}

#[test]
fn a_bytecode_file_that_cannot_be_written_fails_the_install_and_leaves_nothing() {
    use envctl_testkit::Entry;
    let f = Fixture::new();
    // A `__pycache__` that is a file: writing the module's bytecode fails as on a full disk
    // (an OSError, not a file that is not Python).
    f.publish_python_with(
        "3.11",
        vec![
            Entry::file("lib/python3.11/zz_envctl/__init__.py", "X = 1\n"),
            Entry::file("lib/python3.11/zz_envctl/__pycache__", "in the way"),
        ],
    );
    let profile = f.profile("py", "[packages]\npython = \"3.11\"\n");
    let r = f.run(&["apply", &profile]).failure();
    assert!(r.stderr.contains("cannot install python 3.11"), "{}", r.stderr);
    assert!(r.stderr.contains("NotADirectoryError"), "the compiler's own error is shown: {}", r.stderr);
    assert!(f.sb.store_paths_on_disk().is_empty(), "{:?}", f.sb.store_paths_on_disk());
    assert!(f.sb.tmp_entries().is_empty(), "{:?}", f.sb.tmp_entries());
    assert!(
        !f.sb.path("py.lock").exists()
            || !std::fs::read_to_string(f.sb.path("py.lock")).unwrap().contains("tree-hash")
    );
}
