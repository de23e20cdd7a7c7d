//! CUDA from NVIDIA-shaped archives: a manifest in NVIDIA's schema listing fixture archives with
//! NVIDIA's layout (one top folder, `include/`, `lib/`, a `LICENSE` in every one, the driver stub in
//! `lib/stubs/`), imported with `envctl import nvidia-redist` and served through a loopback mirror.

mod common;

use common::fixture::Fixture;
use envctl_testkit::{Archive, Entry, sha256_hex};

/// The runtime components of one release, with NVIDIA's names and made-up versions.
const COMPONENTS: &[(&str, &str)] = &[
    ("cuda_cudart", "12.4.127"),
    ("cuda_nvrtc", "12.4.127"),
    ("cuda_nvtx", "12.4.127"),
    ("libcublas", "12.4.5.8"),
    ("libcufft", "11.2.1.3"),
    ("libcurand", "10.3.5.147"),
    ("libcusolver", "11.6.1.9"),
    ("libcusparse", "12.3.1.170"),
    ("libnpp", "12.2.5.30"),
    ("libnvjitlink", "12.4.127"),
    ("libnvjpeg", "12.3.1.117"),
    ("nvidia_driver", "550.54.15"),
];

/// Serves every component as NVIDIA lays it out and writes a manifest listing them.
fn publish(f: &Fixture) -> std::path::PathBuf {
    let mut manifest = serde_json::json!({
        "release_date": "2024-04-03", "release_label": "12.4.1", "release_product": "cuda",
    });
    for (name, version) in COMPONENTS {
        let top = format!("{name}-linux-x86_64-{version}-archive");
        let lib = name.trim_start_matches("cuda_").trim_start_matches("lib");
        let mut a = Archive::new()
            .with(Entry::file(&format!("{top}/LICENSE"), format!("license of {name}")))
            .with(Entry::file(&format!("{top}/include/{lib}.h"), format!("/* {name} {version} */")))
            .with(Entry::file(&format!("{top}/lib/lib{lib}.so.{version}"), vec![7u8; 64]))
            .with(Entry::symlink(&format!("{top}/lib/lib{lib}.so"), &format!("lib{lib}.so.{version}")));
        if *name == "cuda_cudart" {
            a = a.with(Entry::file(&format!("{top}/lib/stubs/libcuda.so"), "the driver stub"));
        }
        let bytes = a.tar_xz();
        let relative = format!("{name}/linux-x86_64/{top}.tar.xz");
        f.server.serve(&format!("/nvidia/cuda/redist/{relative}"), bytes.clone());
        // The same layout on disk: an air-gapped site's copy.
        let copy = f.sb.path("nvidia-copy/cuda/redist").join(&relative);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::write(copy, &bytes).unwrap();
        manifest[*name] = serde_json::json!({
            "name": format!("{name} (fixture)"), "license": "CUDA Toolkit", "version": version,
            "linux-x86_64": { "relative_path": relative, "sha256": sha256_hex(&bytes), "md5": "", "size": bytes.len().to_string() },
        });
    }
    let path = f.sb.path("redistrib_12.4.1.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    path
}

#[test]
fn every_runtime_component_of_a_release_applies_without_collision_and_the_stub_stays_off_the_library_path() {
    let f = Fixture::new();
    let manifest = publish(&f);
    let team = f.sb.path("team");
    f.run(&["import", "nvidia-redist", manifest.to_str().unwrap(), "--out", team.to_str().unwrap()]).ok();
    assert!(!team.join("nvidia-driver").exists(), "the driver became a recipe");
    std::fs::write(
        f.sb.path("config.toml"),
        format!(
            "recipes = [\"{}\"]\n[mirrors]\nnvidia = [\"{}\"]\n[fetch]\nretries = 1\nbackoff-ms = 10\n",
            team.display(),
            f.server.url("/nvidia")
        ),
    )
    .unwrap();
    let p = f.profile("gpu", "[packages]\ncuda-runtime = \"12.4\"\n");
    let apply = f.sb.run_env(&["apply", &p], &[("ENVCTL_SYSTEM_DRIVER", "550.54.15")]);
    apply.ok();
    let generation = std::fs::canonicalize(f.profiles_dir().join("gpu")).unwrap();
    for (name, version) in &COMPONENTS[..COMPONENTS.len() - 1] {
        let lib = name.trim_start_matches("cuda_").trim_start_matches("lib");
        assert!(generation.join(format!("lib/lib{lib}.so.{version}")).exists(), "{name}");
        let license = generation.join(format!("share/licenses/{}/LICENSE", name.replace('_', "-")));
        assert_eq!(std::fs::read_to_string(&license).unwrap(), format!("license of {name}"));
    }
    assert!(!generation.join("LICENSE").exists());
    let env = f.sb.run_env(&["env", "gpu", "--format", "json"], &[("ENVCTL_SYSTEM_DRIVER", "550.54.15")]);
    let vars: serde_json::Value = serde_json::from_str(&env.stdout).unwrap();
    let ld = vars["LD_LIBRARY_PATH"].as_str().unwrap();
    assert!(ld.contains(&format!("{}/lib", generation.display())), "{ld}");
    assert!(!ld.contains("stubs"), "the driver stub is on the library path: {ld}");
    assert_eq!(vars["CUDA_HOME"].as_str(), Some(generation.to_str().unwrap()));
    // An old driver is caught at lock time, naming it.
    let p = f.profile("old", "[packages]\ncuda-runtime = \"12.4\"\n");
    let r = f.sb.run_env(&["lock", &p], &[("ENVCTL_SYSTEM_DRIVER", "470.82.01")]);
    let err = r.failed();
    assert!(err.contains("NVIDIA driver") && err.contains("470.82.01"), "{err}");
}

#[test]
fn a_bundled_cuda_profile_without_a_reachable_nvidia_fails_naming_the_url_and_the_way_out() {
    let f = Fixture::new();
    std::fs::write(
        f.sb.path("config.toml"),
        format!(
            "[mirrors]\nnvidia = [\"{}\"]\n[fetch]\nretries = 0\nbackoff-ms = 10\n",
            f.server.url("/nowhere")
        ),
    )
    .unwrap();
    let p = f.profile("gpu", "[packages]\ncuda-cudart = \"12.4\"\n");
    let r = f.sb.run_env(&["apply", &p], &[("ENVCTL_SYSTEM_DRIVER", "550.54.15")]);
    let err = r.failed();
    assert!(err.contains(&f.server.url("/nowhere/cuda/redist/cuda_cudart/linux-x86_64/")), "{err}");
    assert!(err.contains("[mirrors]") && err.contains("--offline"), "{err}");
}

#[test]
fn offline_uses_only_the_store_and_local_mirrors_and_names_what_it_lacks() {
    let f = Fixture::new();
    let manifest = publish(&f);
    let team = f.sb.path("team");
    f.run(&["import", "nvidia-redist", manifest.to_str().unwrap(), "--out", team.to_str().unwrap()]).ok();
    let config = |base: String| {
        std::fs::write(
            f.sb.path("config.toml"),
            format!(
                "recipes = [\"{}\"]\n[mirrors]\nnvidia = [\"{base}\"]\n[fetch]\nretries = 0\n",
                team.display()
            ),
        )
        .unwrap();
    };
    let driver = [("ENVCTL_SYSTEM_DRIVER", "550.54.15")];
    let p = f.profile("gpu", "[packages]\ncuda-runtime = \"12.4\"\n");
    // An http mirror and an empty store: offline names every artifact it would have to fetch.
    config(f.server.url("/nvidia"));
    let r = f.sb.run_env(&["apply", &p, "--offline"], &driver);
    let err = r.failed();
    assert!(
        err.contains("offline")
            && err.contains("cuda-cudart 12.4.127 (mirror://nvidia/cuda/redist/cuda_cudart/"),
        "{err}"
    );
    // One line per artifact, so a list of fifty reads as one.
    let listed: Vec<&str> = err.lines().filter(|l| l.contains("(mirror://")).collect();
    assert!(listed.len() >= 2 && listed.iter().all(|l| l.matches("mirror://").count() == 1), "{err}");
    assert!(err.contains(&format!("{} packages are neither in the store", listed.len())), "{err}");
    assert_eq!(
        f.server.hits(
            "/nvidia/cuda/redist/cuda_cudart/linux-x86_64/cuda_cudart-linux-x86_64-12.4.127-archive.tar.xz"
        ),
        0
    );
    // A file:// copy of NVIDIA's layout is local: offline works from it.
    config(format!("file://{}", f.sb.path("nvidia-copy").display()));
    f.sb.run_env(&["apply", &p, "--offline"], &driver).ok();
    assert_eq!(
        f.sb.run_env(&["run", "gpu", "--", "sh", "-c", "ls $CUDA_HOME/lib/libcudart.so.12.4.127"], &driver)
            .code,
        0
    );
}

#[test]
fn a_dry_run_names_a_mirror_that_is_not_configured_and_the_configuration_file() {
    let f = Fixture::new();
    std::fs::write(
        f.repo.join("site-1.0.toml"),
        format!("name = \"site\"\nversion = \"1.0\"\n[[source]]\nurl = \"mirror://site-cache/x.tar.gz\"\nsha256 = \"{}\"\n", "2".repeat(64)),
    )
    .unwrap();
    let p = f.profile("p", "[packages]\nsite = \"1\"\n");
    let r = f.run(&["apply", &p, "--dry-run"]);
    r.ok();
    assert!(r.stderr.contains("mirror `site-cache` is not configured"), "{}", r.stderr);
    assert!(r.stderr.contains(&f.sb.path("config.toml").display().to_string()), "{}", r.stderr);
}

fn example(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name).display().to_string()
}

#[test]
fn the_bundled_cuda_examples_lock_to_one_release_with_the_matching_cudnn_build() {
    let f = Fixture::new();
    let cases = [
        (
            "cuda12.4-cudnn9-py311.toml",
            &[
                ("cuda-version", "12.4.1"),
                ("cuda-cudart", "12.4.127"),
                ("cudnn", "9.8.0.87+cuda12"),
                ("python", "3.11.16"),
            ][..],
        ),
        (
            "cuda11.8-toolkit-cudnn8.9-py310.toml",
            &[
                ("cuda-version", "11.8.0"),
                ("cuda-nvcc", "11.8.89"),
                ("cudnn", "8.9.7.29+cuda11"),
                ("python", "3.10.21"),
            ][..],
        ),
    ];
    for (file, want) in cases {
        // A copy, so the lock is written in the sandbox.
        let p = f.profile(file.trim_end_matches(".toml"), &std::fs::read_to_string(example(file)).unwrap());
        f.sb.run_env(&["lock", &p], &[("ENVCTL_SYSTEM_DRIVER", "550.54.15")]).ok();
        let lock = std::fs::read_to_string(p.replace(".toml", ".lock")).unwrap();
        let v: toml::Value = toml::from_str(&lock).unwrap();
        let locked: std::collections::BTreeMap<&str, &str> = v["package"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
            .collect();
        for (name, version) in want {
            assert_eq!(locked.get(name), Some(version), "{file}: {locked:?}");
        }
        // One release: every CUDA component's cuda-version is the same one.
        assert_eq!(locked.keys().filter(|n| **n == "cuda-version").count(), 1);
    }
    let p = f.profile("old-driver", &std::fs::read_to_string(example("cuda12.4-cudnn9-py311.toml")).unwrap());
    let r = f.sb.run_env(&["lock", &p], &[("ENVCTL_SYSTEM_DRIVER", "470.82.01")]);
    let err = r.failed();
    assert!(err.contains("NVIDIA driver >=525.60.13") && err.contains("470.82.01"), "{err}");
}

/// A conda package in format v2: a zip of `pkg-*.tar.zst` (payload) and `info-*.tar.zst`.
fn dot_conda(id: &str, payload: Archive) -> Vec<u8> {
    let info =
        Archive::new().with(Entry::file("info/index.json", format!("{{\"name\": \"{id}\"}}"))).tar_zst();
    Archive::new()
        .with(Entry::file("metadata.json", "{\"conda_pkg_format_version\": 2}"))
        .with(Entry::file(&format!("info-{id}.tar.zst"), info))
        .with(Entry::file(&format!("pkg-{id}.tar.zst"), payload.tar_zst()))
        .zip()
}

#[test]
fn python_3_7_cuda_10_0_and_cudnn_7_6_apply_from_an_imported_conda_channel() {
    let f = Fixture::new();
    // The channel: cudatoolkit as .conda and .tar.bz2 (the .conda wins), cudnn as .tar.bz2 only,
    // one file without a sha256 (left out), and an unrelated package.
    let toolkit = Archive::new()
        .with(Entry::file("lib/libcudart.so.10.0.130", vec![1u8; 100]))
        .with(Entry::symlink("lib/libcudart.so.10.0", "libcudart.so.10.0.130"));
    let toolkit_v2 = dot_conda("cudatoolkit-10.0.130-0", toolkit.clone());
    let toolkit_v1 = toolkit.clone().with(Entry::file("info/index.json", "{}")).tar_bz2();
    let cudnn_v1 = Archive::new()
        .with(Entry::file("info/index.json", "{}"))
        .with(Entry::file("info/recipe/meta.yaml", "x"))
        .with(Entry::file("lib/libcudnn.so.7.6.5", vec![2u8; 100]))
        .with(Entry::symlink("lib/libcudnn.so.7", "libcudnn.so.7.6.5"))
        .tar_bz2();
    for (file, bytes) in [
        ("cudatoolkit-10.0.130-0.conda", &toolkit_v2),
        ("cudatoolkit-10.0.130-0.tar.bz2", &toolkit_v1),
        ("cudnn-7.6.5-cuda10.0_0.tar.bz2", &cudnn_v1),
    ] {
        f.server.serve(&format!("/channel/linux-64/{file}"), bytes.clone());
    }
    let record = |name: &str, version: &str, build: &str, depends: &[&str], sha: Option<String>| serde_json::json!({ "name": name, "version": version, "build": build, "depends": depends, "sha256": sha, "md5": "0" });
    let repodata = serde_json::json!({
        "info": { "subdir": "linux-64" },
        "packages": {
            "cudatoolkit-10.0.130-0.tar.bz2": record("cudatoolkit", "10.0.130", "0", &["libgcc-ng >=7.3.0"], Some(sha256_hex(&toolkit_v1))),
            "cudnn-7.6.5-cuda10.0_0.tar.bz2": record("cudnn", "7.6.5", "cuda10.0_0", &["cudatoolkit >=10.0,<10.1", "__glibc >=2.17"], Some(sha256_hex(&cudnn_v1))),
            "cudnn-7.6.5-cuda10.1_0.tar.bz2": record("cudnn", "7.6.5", "cuda10.1_0", &["cudatoolkit >=10.1,<10.2"], None),
            "numpy-1.0-0.tar.bz2": record("numpy", "1.0", "0", &[], Some("3".repeat(64))),
        },
        "packages.conda": {
            "cudatoolkit-10.0.130-0.conda": record("cudatoolkit", "10.0.130", "0", &["libgcc-ng >=7.3.0"], Some(sha256_hex(&toolkit_v2))),
        },
    });
    f.server.serve("/channel/linux-64/repodata.json", repodata.to_string().into_bytes());
    let team = f.sb.path("team");
    let r = f.run(&[
        "import",
        "conda",
        &f.server.url("/channel"),
        "cudatoolkit=10.0.130",
        "cudnn=7.6.5",
        "--out",
        team.to_str().unwrap(),
    ]);
    r.ok();
    assert!(r.stderr.contains("left out cudnn-7.6.5-cuda10.1_0.tar.bz2: no sha256"), "{}", r.stderr);
    let toolkit_recipe = std::fs::read_to_string(team.join("cudatoolkit/10.0.130+conda.0.toml")).unwrap();
    assert!(
        toolkit_recipe.contains("cudatoolkit-10.0.130-0.conda")
            && toolkit_recipe.contains("format = \"conda\""),
        "{toolkit_recipe}"
    );
    let cudnn_recipe = std::fs::read_to_string(team.join("cudnn/7.6.5+conda.cuda10.0_0.toml")).unwrap();
    assert!(
        cudnn_recipe.contains("cudatoolkit = \">=10.0,<10.1\"")
            && cudnn_recipe.contains("glibc = \">=2.17\""),
        "{cudnn_recipe}"
    );
    // A Python 3.7 of the team's own.
    let py = Archive::new()
        .with(Entry::file_mode("bin/python3", "#!/bin/sh\necho Python 3.7.17\n", 0o755))
        .tar_gz();
    f.publish("python", "3.7.17", &py, "");
    std::fs::write(
        f.sb.path("config.toml"),
        format!("recipes = [\"{}\", \"{}\"]\n", f.repo.display(), team.display()),
    )
    .unwrap();
    let p = f.profile("vision", "[packages]\npython = \"3.7\"\ncudatoolkit = \"10.0\"\ncudnn = \"7.6\"\n");
    f.sb.run_env(&["apply", &p], &[("ENVCTL_SYSTEM_DRIVER", "418.40")]).ok();
    let generation = std::fs::canonicalize(f.profiles_dir().join("vision")).unwrap();
    assert!(
        generation.join("lib/libcudart.so.10.0").exists() && generation.join("lib/libcudnn.so.7").exists()
    );
    assert!(!generation.join("info").exists(), "a conda package's info/ reached the profile");
    let env = f.sb.run_env(&["run", "vision", "--", "sh", "-c", "echo $LD_LIBRARY_PATH; python3"], &[]);
    assert!(
        env.stdout.contains(&format!("{}/lib", generation.display())) && env.stdout.contains("Python 3.7.17"),
        "{}",
        env.stdout
    );
}

#[test]
fn search_and_show_list_the_real_versions_from_the_manifests() {
    let f = Fixture::new();
    let search = f.run(&["search", "cudnn", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&search.stdout).unwrap();
    let cudnn = v.as_array().unwrap().iter().find(|r| r["name"] == "cudnn").unwrap();
    assert_eq!(cudnn["version"], "9.8.0.87+cuda12", "{cudnn}");
    let show = f.run(&["show", "cuda-cudart"]);
    show.ok();
    for version in ["12.8.90", "12.6.77", "12.4.127", "11.8.89"] {
        assert!(show.stdout.contains(&format!("cuda-cudart {version}")), "{}", show.stdout);
    }
    assert!(
        show.stdout.contains("sha256 0483bff9a36e7a44465db3cd42874f6f70f019297dcf803fbefcbf58d7448c8f"),
        "{}",
        show.stdout
    );
}
