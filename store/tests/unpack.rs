//! The unpacker through its library API: how the unpack spec maps an archive's entries, what it
//! makes of modes and times, and what a hostile archive gets (an error naming the entry, nothing
//! outside the tree).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use envctl_store::{Format, Limits, Unpack, Unpacked, unpack_tar};
use envctl_testkit::{Archive, Entry};

fn unpack(
    archive: &Archive,
    spec: &Unpack,
    limits: Limits,
) -> (envctl_testkit::TempDir, envctl_store::Result<Unpacked>) {
    let dir = envctl_testkit::tempdir();
    let dest = dir.path().join("tree");
    std::fs::create_dir(&dest).unwrap();
    let result = unpack_tar(archive.tar().as_slice(), &dest, "test.tar", Format::Tar, spec, limits);
    (dir, result)
}

fn tree(dir: &envctl_testkit::TempDir) -> std::path::PathBuf {
    dir.path().join("tree")
}

#[test]
fn strip_subdir_and_moves_place_each_entry_and_modes_and_times_are_normalized() {
    let archive = Archive::new()
        .with(Entry::file("cudart-12.4/lib/libcudart.so.12", "elf"))
        .with(Entry::file_mode("cudart-12.4/bin/tool", "#!", 0o4755))
        .with(Entry::file("cudart-12.4/LICENSE", "license"))
        .with(Entry::file("top-level-file", "dropped by strip"));
    let spec = Unpack {
        strip_components: 1,
        subdir: Some("opt/cuda".into()),
        moves: [("LICENSE".to_owned(), "share/licenses/cudart/LICENSE".to_owned())].into(),
        ..Unpack::default()
    };
    let (dir, result) = unpack(&archive, &spec, Limits::default());
    result.unwrap();
    let t = tree(&dir);
    assert_eq!(std::fs::read_to_string(t.join("opt/cuda/lib/libcudart.so.12")).unwrap(), "elf");
    // A move lands outside the sub-directory.
    assert_eq!(std::fs::read_to_string(t.join("share/licenses/cudart/LICENSE")).unwrap(), "license");
    assert!(!t.join("opt/cuda/LICENSE").exists() && !t.join("top-level-file").exists());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&t.join("opt/cuda/lib/libcudart.so.12")), 0o444);
    assert_eq!(mode(&t.join("opt/cuda/bin/tool")), 0o555, "setuid dropped, execute kept");
    assert_eq!(mode(&t.join("opt/cuda")), 0o555);
    assert_eq!(std::fs::metadata(t.join("opt/cuda/bin/tool")).unwrap().mtime(), 1);
}

#[test]
fn root_keeps_only_what_is_under_it() {
    let archive = Archive::new()
        .with(Entry::file("python/install/bin/python3", "py"))
        .with(Entry::file("python/build/objects.o", "o"));
    let spec = Unpack { root: Some("python/install".into()), ..Unpack::default() };
    let (dir, result) = unpack(&archive, &spec, Limits::default());
    result.unwrap();
    let t = tree(&dir);
    assert!(t.join("bin/python3").is_file());
    let top: Vec<_> = std::fs::read_dir(&t).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(top, ["bin"]);
}

#[test]
fn hostile_entries_are_refused_by_name_and_nothing_lands_outside() {
    for (archive, entry) in [
        (Archive::new().with(Entry::file("../escape", "x")), "../escape"),
        (Archive::new().with(Entry::file("/etc/escape", "x")), "/etc/escape"),
        (Archive::new().with(Entry::symlink("lib", "/etc")), "lib"),
        (Archive::new().with(Entry::dir("a")).with(Entry::symlink("a/up", "../../..")), "a/up"),
        (
            Archive::new().with(Entry::symlink("link", "somewhere")).with(Entry::file("link/through", "x")),
            "link/through",
        ),
    ] {
        let (dir, result) = unpack(&archive, &Unpack::default(), Limits::default());
        let err = result.err().unwrap_or_else(|| panic!("{entry} accepted")).to_string();
        assert!(err.contains(entry) && err.contains("test.tar"), "{entry}: {err}");
        assert!(!dir.path().join("escape").exists());
    }
}

#[test]
fn fifos_are_skipped_and_reported_and_limits_stop_a_bomb_early() {
    let archive = Archive::new().with(Entry::file("ok", "x")).with(Entry::Fifo { path: "pipe".into() });
    let (dir, result) = unpack(&archive, &Unpack::default(), Limits::default());
    assert_eq!(result.unwrap().skipped, ["pipe"]);
    assert!(tree(&dir).join("ok").is_file() && !tree(&dir).join("pipe").exists());

    // A header that claims 1 GiB of zeros, against a limit of 1 MiB: refused before writing it.
    let bomb = Archive::new().with(Entry::Zeros { path: "big".into(), size: 1 << 30 });
    let limits = Limits { max_bytes: 1 << 20, max_entries: 10 };
    let (dir, result) = unpack(&bomb, &Unpack::default(), limits);
    assert!(result.is_err());
    assert!(std::fs::metadata(tree(&dir).join("big")).map_or(true, |m| m.len() <= 1 << 20));

    let many = (0..20).fold(Archive::new(), |a, i| a.with(Entry::file(&format!("f{i}"), "x")));
    let (_dir, result) = unpack(&many, &Unpack::default(), limits);
    assert!(result.is_err(), "20 entries unpacked under a limit of 10");
}
