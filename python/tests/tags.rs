//! Wheel tags on real strings: the framework wheel file names in envctl-recipes'
//! `tests/data/framework-wheel-names.txt` (see that crate's `tests/pep440.rs` for their origin).

use envctl_python::WheelTags;
use envctl_recipes::Version;

fn names() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../recipes/tests/data/framework-wheel-names.txt"
    ))
    .unwrap();
    text.lines().map(str::to_owned).collect()
}

#[test]
fn every_framework_wheel_name_has_a_version_and_tags() {
    let names = names();
    assert!(names.len() > 200, "{}", names.len());
    for name in &names {
        let version = name.split('-').nth(1).unwrap();
        Version::parse(version).unwrap_or_else(|e| panic!("{name}: {e}"));
        let tags = WheelTags::from_file_name(name).unwrap_or_else(|| panic!("{name}: no tags"));
        assert!(!tags.python.is_empty() && !tags.platform.is_empty(), "{name}");
    }
}

#[test]
fn framework_wheels_run_only_where_their_tags_say() {
    let glibc = Version::parse("2.17").unwrap();
    let check = |file: &str, python: &str| {
        WheelTags::from_file_name(file).unwrap().check(
            &Version::parse(python).unwrap(),
            "x86_64",
            Some(&glibc),
        )
    };
    let names = names();
    let tf1 = names.iter().find(|n| n.starts_with("tensorflow-1.15.5-cp37")).unwrap();
    assert!(check(tf1, "3.7.17").is_ok(), "{tf1}");
    assert!(check(tf1, "3.11.9").unwrap_err().contains("cp37"));
    let mac = names.iter().find(|n| n.contains("macosx")).unwrap();
    assert!(check(mac, "3.11.9").is_err(), "{mac}");
    let arm = names.iter().find(|n| n.ends_with("aarch64.whl")).unwrap();
    assert!(check(arm, "3.11.9").is_err(), "{arm}");
    // A manylinux_2_28 PyTorch build needs a newer glibc than 2.17.
    let torch28 = names.iter().find(|n| n.contains("manylinux_2_28_x86_64") && n.contains("cp311")).unwrap();
    assert!(check(torch28, "3.11.9").unwrap_err().contains("2.28"), "{torch28}");
}
