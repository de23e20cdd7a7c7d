//! The bodies of envctl's fuzz targets. `fuzz/` (cargo-fuzz, libFuzzer) calls them with generated
//! inputs; `tests/corpus.rs` replays the committed seeds in `fuzz/seeds/` and seeded mutations of
//! them in every `cargo test`. Each body panics only when a property breaks: parsing never panics,
//! what prints parses back to the same value, and unpacking never writes outside its directory
//! nor past its limits.

use std::path::Path;

use envctl_recipes::{LockFile, ProfileFile, Recipe, Requirement, Version};
use envctl_store::{Format, Limits, Unpack};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("versions", versions),
    ("recipe", recipe),
    ("profile", profile),
    ("lock", lock),
    ("tar", tar),
    ("zip", zip),
    ("wheel", wheel),
];

/// Versions and requirements: no panic; a version prints to text that parses to the same version.
pub fn versions(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(v) = Version::parse(text) {
        let printed = v.to_string();
        let again = Version::parse(&printed)
            .unwrap_or_else(|e| panic!("`{printed}` (from `{text}`) does not parse: {e}"));
        assert_eq!(v, again, "`{text}` prints as `{printed}`, which is another version");
    }
    if let Ok(r) = Requirement::parse(text) {
        let again = Requirement::parse(r.as_str());
        assert!(again.is_ok(), "requirement `{}` does not parse again", r.as_str());
    }
}

/// Recipe files: no panic; an accepted recipe's `[env]` keys are variable names.
pub fn recipe(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Recipe::parse(text, Path::new("fuzz/recipe.toml")) {
        assert!(r.env.keys().all(|k| envctl_recipes::is_variable_name(k)), "an [env] key slipped through");
        assert!(
            r.sources.iter().all(|s| s.sha256.len() == 64),
            "a sha256 of the wrong length slipped through"
        );
    }
}

/// Profile files: no panic; an accepted file has packages and variable-name `[env]` keys.
pub fn profile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(p) = ProfileFile::parse(text, Path::new("fuzz/profile.toml")) {
        assert!(!p.packages.is_empty());
        assert!(p.env.keys().all(|k| envctl_recipes::is_variable_name(k)), "an [env] key slipped through");
    }
}

/// Lock files: no panic; an accepted lock writes out to text that reads back to the same lock.
pub fn lock(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(l) = LockFile::parse(text, Path::new("fuzz/x.lock")) {
        let written = l.to_text("x.toml", Path::new("fuzz"));
        let again = LockFile::parse(&written, Path::new("fuzz/x.lock"))
            .unwrap_or_else(|e| panic!("a written lock does not read back: {e}\n{written}"));
        let mut sorted = l.clone();
        sorted.packages.sort_by(|a, b| a.name.cmp(&b.name));
        sorted.packages.iter_mut().for_each(|p| p.dependencies.sort());
        assert_eq!(sorted, again);
    }
}

/// Small limits, so that a bomb is stopped quickly.
fn limits() -> Limits {
    Limits { max_bytes: 1 << 20, max_entries: 1000 }
}

/// Unpacks into `root/dest` beside a marker in `root`; checks nothing outside `dest` changed and
/// nothing inside points out of it.
fn contained(unpack: impl FnOnce(&Path)) {
    let root = tempfile::tempdir().expect("a temporary directory");
    let dest = root.path().join("dest");
    std::fs::create_dir(&dest).expect("create dest");
    std::fs::write(root.path().join("marker"), "untouched").expect("write the marker");
    unpack(&dest);
    let mut outside: Vec<_> =
        std::fs::read_dir(root.path()).expect("list root").map(|e| e.expect("entry").file_name()).collect();
    outside.sort();
    assert_eq!(outside, ["dest", "marker"], "an archive wrote outside its directory");
    assert_eq!(std::fs::read_to_string(root.path().join("marker")).expect("marker"), "untouched");
    let mut total = 0u64;
    let mut stack = vec![dest.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("list") {
            let entry = entry.expect("entry");
            let meta = std::fs::symlink_metadata(entry.path()).expect("stat");
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path()).expect("readlink");
                assert!(!target.is_absolute(), "a symlink to an absolute path was written: {target:?}");
                let mut depth =
                    entry.path().strip_prefix(&dest).expect("inside").components().count() as i64 - 1;
                for c in target.components() {
                    match c {
                        std::path::Component::ParentDir => depth -= 1,
                        std::path::Component::Normal(_) => depth += 1,
                        _ => {}
                    }
                    assert!(depth >= 0, "a symlink escapes its tree: {:?} -> {target:?}", entry.path());
                }
            }
        }
    }
    assert!(total <= limits().max_bytes, "{total} bytes unpacked past the limit");
    // Store trees are read-only; make them removable again.
    let _ = std::process::Command::new("chmod").arg("-R").arg("u+w").arg(root.path()).status();
}

/// Tar unpacking (already decompressed): no panic, no escape, limits hold.
pub fn tar(data: &[u8]) {
    contained(|dest| {
        let _ = envctl_store::unpack_tar(data, dest, "fuzz.tar", Format::Tar, &Unpack::default(), limits());
    });
}

/// `data` in an unnamed temporary file, at its start (zip readers need a file to seek in).
fn temp_file(data: &[u8]) -> std::fs::File {
    use std::io::{Seek, Write};
    let mut file = tempfile::tempfile().expect("a temporary file");
    file.write_all(data).expect("write the archive");
    file.rewind().expect("rewind");
    file
}

/// Zip unpacking: no panic, no escape, limits hold.
pub fn zip(data: &[u8]) {
    let file = temp_file(data);
    contained(|dest| {
        let _ = envctl_store::unpack_zip(file, dest, "fuzz.zip", Format::Zip, &Unpack::default(), limits());
    });
}

/// Wheel installation (scheme placement, RECORD, entry points): no panic, no escape, limits hold.
pub fn wheel(data: &[u8]) {
    let file = temp_file(data);
    contained(|dest| {
        let _ = envctl_python::unpack_wheel(file, dest, "fuzz-1.0-py3-none-any.whl", limits(), None);
    });
}
