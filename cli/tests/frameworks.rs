//! The bundled framework stacks (examples/frameworks/) lock to their publishers' pairings: the
//! CUDA, cuDNN and Python TensorFlow's tested-builds table gives for a release, the CUDA a PyTorch
//! wheel is tagged with (`cu121`, `cu128`), read from the data the recipes were made from rather
//! than written here; a profile never holds two CUDA majors; a lock is deterministic; and a
//! request that cannot be met is explained in one screen.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::Sandbox;

/// A machine with a CUDA 12.8 driver and a recent glibc, whatever this one has.
const MACHINE: &[(&str, &str)] = &[
    ("ENVCTL_SYSTEM_DRIVER", "570.86.15"),
    ("ENVCTL_SYSTEM_GLIBC", "2.35"),
    ("ENVCTL_SYSTEM_ARCH", "x86_64"),
];

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn examples() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo_file("examples/frameworks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    out.sort();
    out
}

/// Locks a copy of `example` in the sandbox; the lock's text, its versions by name, and what the
/// lock printed on stderr.
fn lock(sb: &Sandbox, example: &Path) -> (String, BTreeMap<String, String>, String) {
    let file = sb.path(&example.file_name().unwrap().to_string_lossy());
    std::fs::copy(example, &file).unwrap();
    let lock_file = file.with_extension("lock");
    let _ = std::fs::remove_file(&lock_file);
    let run = sb.run_env(&["lock", file.to_str().unwrap()], MACHINE).success();
    let text = std::fs::read_to_string(&lock_file).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    let versions = parsed["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["version"].as_str().unwrap().to_owned()))
        .collect();
    (text, versions, run.stderr)
}

/// The sandbox's configuration: with `site`, the site's recipes for CUDA 10.0; always an empty
/// local directory as the `pypi` index, so that nothing here reaches a real index whatever pip's
/// configuration says.
fn configure(sb: &Sandbox, site: bool) {
    let wheelhouse = sb.path("empty-wheelhouse");
    std::fs::create_dir_all(&wheelhouse).unwrap();
    let recipes =
        if site { format!("recipes = [\"{}\"]", site_recipes(sb).display()) } else { String::new() };
    sb.config(&format!("{recipes}\n[indexes]\npypi = [\"{}\"]", wheelhouse.display()));
}

/// `X.Y…` as numbers.
fn numbers(v: &str) -> Vec<u64> {
    v.split(['.', '+']).map_while(|p| p.parse().ok()).collect()
}

/// A row of TensorFlow's tested-builds table (Linux GPU): (Python range, cuDNN, CUDA).
fn tested_build(tf: &str) -> (String, String, String) {
    let table =
        std::fs::read_to_string(repo_file("recipes/data/frameworks/tensorflow-tested-builds.md")).unwrap();
    let series: Vec<&str> = tf.split('.').take(2).collect();
    // 1.x's GPU rows name the separate tensorflow_gpu package.
    let prefixes =
        ["tensorflow", "tensorflow_gpu"].map(|p| format!("<tr><td>{p}-{}.{}.", series[0], series[1]));
    let row = table
        .lines()
        .find(|l| prefixes.iter().any(|p| l.starts_with(p)) && l.matches("<td>").count() == 6)
        .unwrap();
    let cells: Vec<String> =
        row.split("<td>").skip(1).map(|c| c.split("</td>").next().unwrap().trim().to_owned()).collect();
    (cells[1].clone(), cells[4].clone(), cells[5].clone())
}

/// The CUDA a PyTorch release's wheels are tagged with in the nixpkgs data (`cu121` → `12.1`).
fn torch_cuda(torch: &str) -> String {
    let flat: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("recipes/data/frameworks/wheels-flat.json")).unwrap(),
    )
    .unwrap();
    let tag = flat
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["filename"].as_str())
        .map(|f| f.replace("%2B", "+"))
        .find_map(|f| {
            let rest = f.strip_prefix(&format!("torch-{torch}+cu"))?;
            Some(rest.split('-').next()?.to_owned())
        })
        .unwrap_or_else(|| panic!("no CUDA wheel of torch {torch} in the data"));
    let (major, minor) = tag.split_at(tag.len() - 1);
    format!("{major}.{minor}")
}

/// Whether `python` (`3.11.16`) is in a table range (`3.9-3.11`, `2.7, 3.3-3.7`).
fn python_in(range: &str, python: &str) -> bool {
    let series = &numbers(python)[..2];
    range.split(',').map(str::trim).any(|part| match part.split_once('-') {
        Some((lo, hi)) => numbers(lo).as_slice() <= series && series <= numbers(hi).as_slice(),
        None => numbers(part).as_slice() == series,
    })
}

/// Every CUDA major the lock's packages are built for.
fn cuda_majors(versions: &BTreeMap<String, String>) -> Vec<u64> {
    let mut majors: Vec<u64> = versions
        .iter()
        .filter_map(|(name, version)| {
            if let Some(tag) = name.strip_prefix("nvidia-").and_then(|n| n.rsplit('-').next()) {
                return tag.strip_prefix("cu")?.parse().ok();
            }
            matches!(name.as_str(), "cuda-cudart" | "cudatoolkit" | "cuda-version")
                .then(|| numbers(version)[0])
        })
        .collect();
    majors.sort();
    majors.dedup();
    majors
}

/// A site's recipes for CUDA 10.0 and cuDNN 7.6 as `envctl import conda` writes them from a
/// channel (empty trees here: a lock fetches nothing).
fn site_recipes(sb: &Sandbox) -> PathBuf {
    let dir = sb.path("site-recipes");
    std::fs::create_dir_all(&dir).unwrap();
    let empty =
        "url = \"empty:\"\nsha256 = \"5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef\"\n";
    std::fs::write(
        dir.join("cudatoolkit.toml"),
        format!("name = \"cudatoolkit\"\nversion = \"10.0.130+conda.0\"\n[[source]]\n{empty}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("cudnn.toml"),
        format!(
            "name = \"cudnn\"\nversion = \"7.6.5+conda.cuda10.0_0\"\n[dependencies]\ncudatoolkit = \">=10.0,<10.1\"\n[[source]]\n{empty}"
        ),
    )
    .unwrap();
    dir
}

#[test]
fn every_bundled_framework_example_locks_to_its_published_pairing_deterministically() {
    let sb = Sandbox::new();
    configure(&sb, true);
    let mut seen = Vec::new();
    for example in examples() {
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        let (text, versions, stderr) = lock(&sb, &example);
        let (again, _, _) = lock(&sb, &example);
        assert_eq!(text, again, "{name}: two locks of one request differ");
        // gast 0.2.2 has no wheel; its sdist cannot be fetched here, and the lock says so.
        if versions.contains_key("gast") && versions["gast"] == "0.2.2" {
            assert!(
                stderr.contains("warning: gast 0.2.2 is published only as source and cannot be fetched now"),
                "{name}: {stderr}"
            );
            assert!(text.contains("format = \"sdist\""), "{name}: {text}");
        }
        let python = &versions["python"];
        assert!(cuda_majors(&versions).len() <= 1, "{name}: two CUDA majors: {versions:?}");
        if let Some(tf) = versions.get("tensorflow").filter(|v| v.starts_with("1.")) {
            // The CPU-only build: no CUDA at all.
            let (pythons, _, _) = tested_build(tf);
            assert!(
                python_in(&pythons, python),
                "{name}: Python {python}, TensorFlow {tf} is tested on {pythons}"
            );
            assert!(cuda_majors(&versions).is_empty(), "{name}: CUDA in a CPU-only stack: {versions:?}");
            seen.push(format!("tensorflow {tf} (CPU)"));
            continue;
        }
        if let Some(tf) = versions.get("tensorflow-gpu") {
            let (pythons, tested_cudnn, tested_cuda) = tested_build(tf);
            assert!(
                python_in(&pythons, python),
                "{name}: Python {python}, TensorFlow {tf} is tested on {pythons}"
            );
            assert!(versions["cudatoolkit"].starts_with(&format!("{tested_cuda}.")), "{name}: {versions:?}");
            // cuDNN 7.6 for CUDA 10.0: a later minor of the 7.4 TensorFlow 1.15.0 was tested with.
            let (cudnn, tested) = (numbers(&versions["cudnn"]), numbers(&tested_cudnn));
            assert!(
                cudnn[0] == tested[0] && cudnn[..2] >= tested[..2] && cudnn[..2] == [7, 6],
                "{name}: {versions:?}"
            );
            assert_eq!(cuda_majors(&versions), [10], "{name}: {versions:?}");
            seen.push(format!("tensorflow-gpu {tf}"));
            continue;
        }
        let runtime =
            versions.get("nvidia-cuda-runtime-cu12").unwrap_or_else(|| panic!("{name}: no CUDA runtime"));
        let cudnn = versions.get("nvidia-cudnn-cu12").unwrap_or_else(|| panic!("{name}: no cuDNN"));
        assert_eq!(cuda_majors(&versions), [12], "{name}: {versions:?}");
        if let Some(tf) = versions.get("tensorflow") {
            let (pythons, tested_cudnn, tested_cuda) = tested_build(tf);
            assert!(
                python_in(&pythons, python),
                "{name}: Python {python}, TensorFlow {tf} is tested on {pythons}"
            );
            // TensorFlow's and-cuda extra pins the tested CUDA (2.15) or allows its later minors
            // (from 2.16): the same major, never older than the tested one.
            for (what, got, tested) in [("CUDA", runtime, &tested_cuda), ("cuDNN", cudnn, &tested_cudnn)] {
                let (got, tested) = (numbers(got), numbers(tested));
                assert!(
                    got[0] == tested[0] && got[..2] >= tested[..2],
                    "{name}: {what} {got:?} for TensorFlow {tf}, tested with {tested:?}"
                );
            }
            if tf.starts_with("2.15.") {
                assert!(runtime.starts_with(&format!("{tested_cuda}.")), "{name}: CUDA {runtime}");
                assert!(cudnn.starts_with(&format!("{tested_cudnn}.")), "{name}: cuDNN {cudnn}");
            }
            seen.push(format!("tensorflow {tf}"));
        }
        if let Some(torch) = versions.get("torch") {
            let cuda = torch_cuda(torch);
            assert!(
                runtime.starts_with(&format!("{cuda}.")),
                "{name}: CUDA {runtime}, torch {torch} is built for {cuda}"
            );
            assert!(versions.contains_key("torchvision"), "{name}");
            seen.push(format!("torch {torch}"));
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "tensorflow 1.15.5 (CPU)",
            "tensorflow 2.15.1",
            "tensorflow 2.21.0",
            "tensorflow-gpu 1.15.5",
            "torch 2.3.0",
            "torch 2.8.0"
        ]
    );
}

#[test]
fn requests_the_stacks_cannot_meet_are_explained_in_one_screen() {
    let sb = Sandbox::new();
    configure(&sb, false);
    let torch = sb.path("torch.toml");
    std::fs::write(&torch, "[packages]\ntorch = \"2.8\"\n").unwrap();
    let old_driver = [("ENVCTL_SYSTEM_DRIVER", "470.82.01"), ("ENVCTL_SYSTEM_GLIBC", "2.35")];
    let run = sb.run_env(&["lock", torch.to_str().unwrap()], &old_driver).failure();
    let e = run.failed();
    assert!(e.contains("torch 2.8.0") && e.contains("470.82.01") && e.contains("Upgrade the driver"), "{e}");
    assert!(e.lines().count() <= 25, "more than a screen:\n{e}");

    // TensorFlow 1.15's CUDA has no bundled recipe: the lock says where it comes from.
    let tf1 = sb.path("tf1.toml");
    std::fs::write(&tf1, "[packages]\ntensorflow-gpu = \"1.15\"\n").unwrap();
    let run = sb.run_env(&["lock", tf1.to_str().unwrap()], MACHINE).failure();
    let e = run.failed();
    assert!(
        e.contains("tensorflow-gpu")
            && e.contains("cudatoolkit")
            && e.contains("envctl import conda CHANNEL cudatoolkit=10.0.130 cudnn=7.6.5"),
        "{e}"
    );
    assert!(e.lines().count() <= 25, "more than a screen:\n{e}");
    // Nor does it run on Python 3.11.
    std::fs::write(&tf1, "[packages]\ntensorflow = \"1.15\"\npython = \"3.11\"\n").unwrap();
    let run = sb.run_env(&["lock", tf1.to_str().unwrap()], MACHINE).failure();
    let e = run.failed();
    assert!(e.contains("tensorflow 1.15") && e.contains("python 3.7") && e.contains("tf1.toml:3"), "{e}");
    assert!(e.lines().count() <= 25, "more than a screen:\n{e}");

    let tf = sb.path("tf.toml");
    std::fs::write(&tf, "[packages]\ntensorflow = \"2.15\"\npython = \"3.12\"\n").unwrap();
    let run = sb.run_env(&["lock", tf.to_str().unwrap()], MACHINE).failure();
    let e = run.failed();
    assert!(e.contains("tensorflow 2.15") && e.contains("python") && e.contains("tf.toml:3"), "{e}");
    assert!(e.lines().count() <= 25, "more than a screen:\n{e}");
}

#[test]
fn show_names_each_wheel_s_python_and_where_a_missing_dependency_comes_from() {
    let sb = Sandbox::new();
    let out = sb.run(&["show", "torch@2.8"]).success();
    for python in ["3.10", "3.11", "3.12"] {
        let tag = python.replace('.', "");
        assert!(
            out.stdout
                .lines()
                .any(|l| l.contains(&format!("[python {python}]")) && l.contains(&format!("-cp{tag}-"))),
            "{}",
            out.stdout
        );
    }
    let out = sb.run(&["show", "tensorflow-gpu@1.15"]).success();
    assert!(out.stdout.contains("without cudatoolkit: TensorFlow 1.15 needs CUDA 10.0"), "{}", out.stdout);
    let json = sb.run(&["show", "tensorflow-gpu@1.15", "--json"]).success();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let first = if v.is_array() { v[0].clone() } else { v };
    assert!(first["hints"]["cudnn"].as_str().unwrap().contains("envctl import conda"), "{first}");
}
