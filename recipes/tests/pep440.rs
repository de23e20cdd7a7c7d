//! PEP 440 versions on real strings (their wheel tags are tested in envctl-python's
//! `tests/tags.rs`): the framework wheel file names in `data/framework-wheel-names.txt`, taken (file names only) from the hash tables in the shared
//! publisher data (`shared/data/framework-wheels`: nixpkgs' TensorFlow, PyTorch, torchaudio and
//! jaxlib pins and the TensorFlow 1.15 supplementary hashes).

use envctl_recipes::{Requirement, Version};

fn names() -> Vec<String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/framework-wheel-names.txt"))
            .unwrap();
    text.lines().map(str::to_owned).collect()
}

#[test]
fn every_framework_wheel_name_has_a_version() {
    let names = names();
    assert!(names.len() > 200, "{}", names.len());
    for name in &names {
        let version = name.split('-').nth(1).unwrap();
        Version::parse(version).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn framework_variants_order_and_match_as_pip_orders_them() {
    let v = |s: &str| Version::parse(s).unwrap();
    // Local labels: a CUDA or CPU build of one release sorts after the plain release.
    assert!(v("2.7.1") < v("2.7.1+cpu") && v("2.7.1+cpu") < v("2.7.1+cu128"));
    assert!(v("2.3.0+cu121") < v("2.3.1") && v("0.4.23+cuda12.cudnn89") > v("0.4.23"));
    assert!(v("2.16.1+nv24.08") > v("2.16.1") && v("2.16.1+nv24.08") < v("2.16.2"));
    // `==2.7.1` takes every build of 2.7.1; `==2.7.1+cu128` only that one.
    let any_build = Requirement::parse("==2.7.1").unwrap();
    assert!(any_build.matches(&v("2.7.1+cpu")) && any_build.matches(&v("2.7.1+cu128")));
    let cuda = Requirement::parse("==2.7.1+cu128").unwrap();
    assert!(cuda.matches(&v("2.7.1+cu128")) && !cuda.matches(&v("2.7.1+cpu")));
    // The 1.15 series is TensorFlow 1.15.x only.
    let tf1 = Requirement::parse("1.15").unwrap();
    assert!(tf1.matches(&v("1.15.5")) && tf1.matches(&v("1.15.0")) && !tf1.matches(&v("1.14.0")));
}
