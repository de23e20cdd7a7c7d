//! The NVIDIA importer on NVIDIA's real manifests (recipes/data/), and the bundled repository it
//! generates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use envctl_recipes::import::{conda, nvidia, pbs};
use envctl_recipes::{Recipe, Repository, Version};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nvidia-redist")
}

fn manifests() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for product in ["cuda", "cudnn"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(data().join(product)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            out.push((f.display().to_string(), std::fs::read_to_string(&f).unwrap()));
        }
    }
    out.sort_by(|x, y| x.0.rsplit('/').next().cmp(&y.0.rsplit('/').next()));
    out
}

fn generated() -> BTreeMap<String, String> {
    nvidia::import(&manifests()).unwrap().into_iter().map(|g| (g.path, g.text)).collect()
}

fn pbs_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/python-build-standalone");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.into_iter().map(|f| (f.display().to_string(), std::fs::read_to_string(&f).unwrap())).collect()
}

/// Everything `recipes/regenerate.sh` writes.
fn everything() -> BTreeMap<String, String> {
    let mut all = generated();
    all.extend(pbs::import(&pbs_files()).unwrap().into_iter().map(|g| (g.path, g.text)));
    all.extend(conda_bundled().into_iter().map(|g| (g.path, g.text)));
    all
}

/// What regenerate.sh imports from the conda list.
fn conda_bundled() -> Vec<envctl_recipes::import::Generated> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/conda/conda-cuda-packages.json");
    let records = conda::records_from_list(&std::fs::read_to_string(path).unwrap(), "x").unwrap();
    let specs = ["cudatoolkit=11.8.0", "cudnn=8.9.7.29"].map(conda::Spec::parse);
    conda::import(
        conda::with_mirror(records, "conda-forge", "linux-64"),
        "",
        &specs,
        "conda-cuda-packages.json",
    )
    .unwrap()
    .0
}

fn manifest(product: &str, release: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(data().join(product).join(format!("redistrib_{release}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn dependency<'r>(r: &'r Recipe, name: &str) -> Option<&'r str> {
    r.dependencies.iter().find(|(n, _)| n.as_str() == name).map(|(_, q)| q.as_str())
}

#[test]
fn cudart_12_4_127_has_the_sha256_and_path_its_manifest_lists_for_each_platform() {
    let m = manifest("cuda", "12.4.1");
    let recipes = generated();
    let text = &recipes["cuda-cudart/12.4.127.toml"];
    let recipe = Recipe::parse(text, Path::new("cuda-cudart/12.4.127.toml")).unwrap();
    for (theirs, ours) in [("linux-x86_64", "linux-x86_64"), ("linux-sbsa", "linux-aarch64")] {
        let entry = &m["cuda_cudart"][theirs];
        let source = recipe.source_for(ours, None).unwrap();
        assert_eq!(source.sha256, entry["sha256"].as_str().unwrap());
        assert_eq!(
            source.url,
            format!("mirror://nvidia/cuda/redist/{}", entry["relative_path"].as_str().unwrap())
        );
        assert_eq!(source.unpack.strip_components, 1);
        assert_eq!(source.unpack.moves["LICENSE"], "share/licenses/cuda-cudart/LICENSE");
    }
    assert_eq!(recipe.dependencies.len(), 1);
    assert_eq!(dependency(&recipe, "cuda-version"), Some("==12.4.1"));
    assert_eq!(recipe.system.driver.as_ref().unwrap().as_str(), ">=525.60.13");
}

#[test]
fn cudnn_variants_depend_on_their_cuda_family() {
    let recipes = generated();
    for (version, family) in
        [("9.8.0.87+cuda12", ">=12,<13"), ("9.8.0.87+cuda11", ">=11,<12"), ("8.9.7.29+cuda11", ">=11,<12")]
    {
        let r = Recipe::parse(&recipes[&format!("cudnn/{version}.toml")], Path::new("x.toml")).unwrap();
        assert_eq!(dependency(&r, "cuda-version"), Some(family), "{version}");
    }
    let r = Recipe::parse(&recipes["cudnn/9.8.0.87+cuda11.toml"], Path::new("x.toml")).unwrap();
    assert!(r.source_for("linux-aarch64", None).is_some(), "sbsa ships both variants");
    assert_eq!(r.system.driver.as_ref().unwrap().as_str(), ">=450.80.02");
}

#[test]
fn each_release_has_cuda_version_and_runtime_and_toolkit_metapackages_pinned_to_it() {
    let recipes = generated();
    for release in ["11.8.0", "12.4.1", "12.6.3", "12.8.1"] {
        let m = manifest("cuda", release);
        for meta in ["cuda-version", "cuda-runtime", "cuda-toolkit"] {
            let r = Recipe::parse(&recipes[&format!("{meta}/{release}.toml")], Path::new("x.toml")).unwrap();
            assert_eq!(r.sources[0].url, "empty:", "{meta} {release}");
        }
        let toolkit =
            Recipe::parse(&recipes[&format!("cuda-toolkit/{release}.toml")], Path::new("x.toml")).unwrap();
        let nvcc = m["cuda_nvcc"]["version"].as_str().unwrap();
        assert_eq!(dependency(&toolkit, "cuda-nvcc"), Some(format!("=={nvcc}").as_str()));
        let runtime =
            Recipe::parse(&recipes[&format!("cuda-runtime/{release}.toml")], Path::new("x.toml")).unwrap();
        assert!(dependency(&runtime, "cuda-nvcc").is_none());
        assert!(dependency(&runtime, "cuda-cudart").is_some());
    }
    // The driver's own components never become recipes.
    assert!(recipes.keys().all(|p| !p.starts_with("nvidia-driver/") && !p.starts_with("fabricmanager/")));
}

#[test]
fn the_import_is_deterministic() {
    assert_eq!(nvidia::import(&manifests()).unwrap(), nvidia::import(&manifests()).unwrap());
}

const PIP_IMPORTED: &str = "# Written by `envctl import pip`";

#[test]
fn the_bundled_repository_is_exactly_what_the_importer_writes() {
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundled");
    let mut on_disk = BTreeMap::new();
    let mut stack = vec![bundled.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&bundled).unwrap().display().to_string();
                let text = std::fs::read_to_string(&p).unwrap();
                // The framework stacks come from pip's resolution against a live index, which
                // a test cannot reach: recipes/regenerate.sh checks those.
                if !text.starts_with(PIP_IMPORTED) {
                    on_disk.insert(rel, text);
                }
            }
        }
    }
    let want = everything();
    let missing: Vec<_> = want.keys().filter(|k| !on_disk.contains_key(*k)).collect();
    let extra: Vec<_> = on_disk.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<_> =
        want.iter().filter(|(k, v)| on_disk.get(*k).is_some_and(|d| d != *v)).map(|(k, _)| k).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "run recipes/regenerate.sh: missing {missing:?}, extra {extra:?}, differing {differ:?}"
    );
}

#[test]
fn bundled_recipes_have_real_hashes_and_their_dependencies_resolve_inside_or_say_where_from() {
    let repo = Repository::bundled().unwrap();
    assert!(repo.len() > 100, "{}", repo.len());
    for name in repo.names() {
        for recipe in repo.versions(name.as_str()).unwrap().values() {
            for s in &recipe.sources {
                assert!(
                    s.sha256.len() == 64 && s.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{}",
                    recipe.origin.display()
                );
            }
            for (dep, req) in &recipe.dependencies {
                let found =
                    repo.versions(dep.as_str()).is_some_and(|vs| vs.keys().any(|v: &Version| req.matches(v)));
                // What a site must provide itself (TensorFlow 1.15's CUDA 10.0) says how.
                let hinted = recipe.hints.get(dep).is_some_and(|h| h.contains("envctl import"));
                assert!(
                    found || hinted,
                    "{} {}: no `{dep} {req}` in the bundled repository, and no hint where it comes from",
                    recipe.name,
                    recipe.version
                );
            }
        }
    }
}

#[test]
fn cpython_builds_come_from_python_build_standalone_with_their_hashes_and_layouts() {
    let recipes = everything();
    let metadata: serde_json::Value =
        serde_json::from_str(&pbs_files().into_iter().find(|(f, _)| f.contains("install_only")).unwrap().1)
            .unwrap();
    let entry = &metadata["cpython-3.11.16-linux-x86_64-gnu"];
    let r = Recipe::parse(&recipes["python/3.11.16.toml"], Path::new("x.toml")).unwrap();
    let x86 = r.source_for("linux-x86_64", None).unwrap();
    assert_eq!(x86.sha256, entry["sha256"].as_str().unwrap());
    assert!(
        x86.url.starts_with("mirror://python-build-standalone/")
            && x86.url.ends_with("install_only_stripped.tar.gz")
    );
    assert_eq!(x86.unpack.strip_components, 1);
    assert!(r.source_for("linux-aarch64", None).is_some());
    // 3.7.9: the full x86_64 build, kept from python/install/, with the pinned hash; no aarch64.
    let r = Recipe::parse(&recipes["python/3.7.9.toml"], Path::new("x.toml")).unwrap();
    let s = r.source_for("linux-x86_64", None).unwrap();
    assert_eq!(s.unpack.root.as_deref(), Some("python/install"));
    assert_eq!(s.sha256, "c6d6256d13e929e77e7ee6e53470fe63ad19d173fee6d56bb1b2dbda67081543");
    assert!(r.source_for("linux-aarch64", None).is_none());
    for minor in 8..=13 {
        assert!(recipes.keys().any(|k| k.starts_with(&format!("python/3.{minor}."))), "no CPython 3.{minor}");
    }
}

#[test]
fn conda_forge_cudnn_keeps_its_cuda_family_and_sorts_below_nvidias_own_archive() {
    let recipes = everything();
    let r = Recipe::parse(&recipes["cudnn/8.9.7.29+conda.hbc23b4c_3.toml"], Path::new("x.toml")).unwrap();
    assert_eq!(dependency(&r, "cuda-version"), Some(">=11.0,<12.0a0"));
    assert_eq!(dependency(&r, "cudatoolkit"), Some("11.*"));
    assert_eq!(r.sources[0].unpack.format.map(|f| f.name()), Some("conda"));
    assert!(r.sources[0].url.starts_with("mirror://conda-forge/linux-64/cudnn-8.9.7.29-hbc23b4c_3.conda"));
    let nvidia = Version::parse("8.9.7.29+cuda11").unwrap();
    assert!(r.version < nvidia, "NVIDIA's archive should be preferred");
    // pkgs/main's files have no published sha256: they are never imported.
    assert!(!recipes.keys().any(|k| k.contains("h6a678d5_0") || k.starts_with("cudatoolkit/10.")));
}
