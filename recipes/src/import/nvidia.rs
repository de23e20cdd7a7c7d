//! NVIDIA's `redistrib_<release>.json` manifests (CUDA and cuDNN) into recipes.
//!
//! - One recipe per component and version, with a source for each of `linux-x86_64` and
//!   `linux-sbsa` (envctl's `linux-aarch64`) under `mirror://nvidia/<product>/redist/…`, the
//!   archive's top folder stripped and its `LICENSE` moved to `share/licenses/<name>/` (every
//!   component ships one, which would otherwise collide in a profile).
//! - Each CUDA component depends on `cuda-version` at its release (`==12.4.1`), so one line keeps a
//!   profile on one release; a component version that several releases ship names them all.
//! - Each release gets `cuda-version` (no files), and the metapackages `cuda-runtime` (the runtime
//!   libraries) and `cuda-toolkit` (adds nvcc, headers and the development tools).
//! - cuDNN's per-CUDA archives (`cuda_variant`) become variants `<version>+cuda<major>` depending on
//!   `cuda-version` of that major.
//! - Driver requirements come from [`crate::CUDA_DRIVER_TABLE`]: minor-version compatibility,
//!   any driver of the release's major family.
//!
//! The driver's own components (`nvidia_driver`, `fabricmanager`, `imex`, `libnvidia_nscq`,
//! `nvidia_fs`, `cuda_compat`, `driver_assistant`) never become recipes: they must match the
//! kernel module, so sessions use the host's.

use std::collections::BTreeMap;

use serde_json::Value;

use envctl_core::{EMPTY_URL, Unpack};

use super::{EMPTY_SHA256, Generated, Problem};
use crate::recipe::{Recipe, Source};
use crate::version::Version;
use crate::write::Comments;

/// Components that belong to the driver, never to a profile.
const DRIVER_COMPONENTS: &[&str] = &[
    "nvidia_driver",
    "fabricmanager",
    "imex",
    "libnvidia_nscq",
    "nvidia_fs",
    "cuda_compat",
    "driver_assistant",
];

/// NVIDIA platform → envctl platform.
const PLATFORMS: &[(&str, &str)] = &[("linux-x86_64", "linux-x86_64"), ("linux-sbsa", "linux-aarch64")];

/// What `cuda-runtime` gathers (when the release has them).
const RUNTIME: &[&str] = &[
    "cuda_cudart",
    "cuda_nvrtc",
    "cuda_nvtx",
    "libcublas",
    "libcufft",
    "libcurand",
    "libcusolver",
    "libcusparse",
    "libnpp",
    "libnvjitlink",
    "libnvjpeg",
];

/// What `cuda-toolkit` adds to the runtime.
const TOOLKIT: &[&str] = &[
    "cuda_nvcc",
    "cuda_cccl",
    "cuda_cuobjdump",
    "cuda_cupti",
    "cuda_cuxxfilt",
    "cuda_nvdisasm",
    "cuda_nvml_dev",
    "cuda_nvprune",
    "cuda_profiler_api",
    "cuda_sanitizer_api",
];

/// One archive of a component.
#[derive(Debug, Clone)]
struct Archive {
    platform: &'static str,
    relative_path: String,
    sha256: String,
}

/// One component version, possibly shipped by several releases.
#[derive(Debug, Clone)]
struct Component {
    name: String,
    summary: String,
    license: String,
    version: String,
    product: String,
    /// Releases (`12.4.1`) or, for cuDNN variants, the CUDA major (`12`).
    releases: Vec<String>,
    variant_major: Option<String>,
    archives: Vec<Archive>,
    /// The manifests that ship it: `redistrib_12.4.1.json (released 2024-04-03)`.
    from: Vec<String>,
}

/// envctl's name for an NVIDIA component: lowercase, `_` as `-`.
pub fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// The lowest driver of a CUDA major family, from the driver table.
fn driver_for(major: u64) -> Option<&'static str> {
    crate::CUDA_DRIVER_TABLE
        .iter()
        .find(|(cuda, _)| cuda.split('.').next().and_then(|m| m.parse().ok()) == Some(major))
        .map(|(_, d)| *d)
}

fn archive_of(v: &Value) -> Option<(String, String)> {
    let path = v.get("relative_path")?.as_str()?.to_owned();
    let sha = v.get("sha256")?.as_str()?.to_ascii_lowercase();
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some((path, sha))
}

/// Reads one manifest (`file` names it in problems) into components.
fn read(
    file: &str,
    text: &str,
    out: &mut Vec<Component>,
    release_of: &mut Vec<(String, String)>,
) -> Result<(), Problem> {
    let problem = |what: String| Problem { file: file.to_owned(), message: what };
    let manifest: Value = serde_json::from_str(text).map_err(|e| problem(format!("not JSON: {e}")))?;
    let top = manifest.as_object().ok_or_else(|| problem("the manifest is not a JSON object".into()))?;
    let product =
        top.get("release_product").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| {
            // CUDA 11.8.0's manifest has no product; cuDNN's always say so.
            if top.contains_key("cudnn") { "cudnn".into() } else { "cuda".into() }
        });
    let release = match top.get("release_label").and_then(Value::as_str) {
        Some(label) => label.to_owned(),
        None => file
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_prefix("redistrib_"))
            .and_then(|f| f.strip_suffix(".json"))
            .map(str::to_owned)
            .ok_or_else(|| {
                problem("no `release_label`, and the file is not named redistrib_<release>.json".into())
            })?,
    };
    Version::parse(&release).map_err(|e| problem(format!("release `{release}`: {e}")))?;
    let date = top.get("release_date").and_then(Value::as_str).unwrap_or("").to_owned();
    let from = format!("{} (released {date})", file.rsplit('/').next().unwrap_or(file));
    release_of.push((release.clone(), from.clone()));
    for (key, value) in top {
        let Some(component) = value.as_object() else { continue };
        if DRIVER_COMPONENTS.contains(&key.as_str()) {
            continue;
        }
        let Some(version) = component.get("version").and_then(Value::as_str) else {
            return Err(problem(format!("component `{key}` has no version")));
        };
        Version::parse(version)
            .map_err(|e| problem(format!("component `{key}` version `{version}`: {e}")))?;
        let summary = component.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
        let license = component.get("license").and_then(Value::as_str).unwrap_or("").to_owned();
        let variants: Vec<String> = component
            .get("cuda_variant")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let base = Component {
            name: normalize(key),
            summary,
            license,
            version: version.to_owned(),
            product: product.clone(),
            releases: vec![release.clone()],
            variant_major: None,
            archives: Vec::new(),
            from: vec![from.clone()],
        };
        if variants.is_empty() {
            let mut c = base;
            for (theirs, ours) in PLATFORMS {
                if let Some((relative_path, sha256)) = component.get(*theirs).and_then(archive_of) {
                    c.archives.push(Archive { platform: ours, relative_path, sha256 });
                }
            }
            if !c.archives.is_empty() {
                out.push(c);
            }
        } else {
            for major in variants {
                let mut c = base.clone();
                c.version = format!("{version}+cuda{major}");
                c.variant_major = Some(major.clone());
                c.releases = vec![major.clone()];
                for (theirs, ours) in PLATFORMS {
                    if let Some((relative_path, sha256)) = component
                        .get(*theirs)
                        .and_then(|p| p.get(format!("cuda{major}")))
                        .and_then(archive_of)
                    {
                        c.archives.push(Archive { platform: ours, relative_path, sha256 });
                    }
                }
                if !c.archives.is_empty() {
                    out.push(c);
                }
            }
        }
    }
    Ok(())
}

/// Recipes for the manifests `(file name, text)`, sorted by path; the same input gives the same
/// bytes.
pub fn import(manifests: &[(String, String)]) -> Result<Vec<Generated>, Problem> {
    let mut components = Vec::new();
    let mut sources = Vec::new();
    for (file, text) in manifests {
        read(file, text, &mut components, &mut sources)?;
    }
    // One recipe per name and version; releases that ship the same version are merged.
    let mut merged: BTreeMap<(String, String), Component> = BTreeMap::new();
    for c in components {
        match merged.get_mut(&(c.name.clone(), c.version.clone())) {
            Some(existing) => {
                for r in c.releases {
                    if !existing.releases.contains(&r) {
                        existing.releases.push(r);
                    }
                }
                for f in c.from {
                    if !existing.from.contains(&f) {
                        existing.from.push(f);
                    }
                }
            }
            None => {
                merged.insert((c.name.clone(), c.version.clone()), c);
            }
        }
    }
    let origin_of = |release: &str| {
        sources.iter().find(|(r, _)| r == release).map(|(_, s)| s.clone()).unwrap_or_default()
    };
    let mut out = Vec::new();
    // Per CUDA release: what it ships, for cuda-version and the metapackages.
    let mut by_release: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for c in merged.values() {
        if c.product == "cuda" {
            for r in &c.releases {
                by_release.entry(r.clone()).or_default().insert(c.name.clone(), c.version.clone());
            }
        }
    }
    let problem = |what: &str, message: String| Problem { file: what.to_owned(), message };
    let family = |major: u64, comments: &mut Comments, recipe: &mut Recipe| -> Result<(), String> {
        if let Some(driver) = driver_for(major) {
            recipe.system.driver = Some(super::requirement(&format!(">={driver}"))?);
            comments.system.insert("driver", format!("any driver of the CUDA {major} family"));
        }
        Ok(())
    };
    for c in merged.values() {
        let major: u64 = c
            .variant_major
            .as_deref()
            .or_else(|| c.releases.first().map(String::as_str))
            .and_then(|r| r.split('.').next())
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let mut comments = Comments {
            header: vec![format!(
                "Generated by `envctl import nvidia-redist` from NVIDIA's {}.",
                c.from.join(", ")
            )],
            ..Comments::default()
        };
        let made = (|| -> Result<Recipe, String> {
            let mut recipe = super::recipe(&c.name, &c.version)?;
            recipe.summary = c.summary.clone();
            if !c.license.is_empty() {
                recipe.license = format!("LicenseRef-NVIDIA-{}", c.license.replace(' ', "-"));
            }
            let mut releases = c.releases.clone();
            releases.sort_by(|a, b| Version::parse(a).ok().cmp(&Version::parse(b).ok()));
            let requirement = match &c.variant_major {
                Some(m) => format!(">={m},<{}", major + 1),
                None => releases.iter().map(|r| format!("=={r}")).collect::<Vec<_>>().join("|"),
            };
            super::depend(&mut recipe, "cuda-version", &requirement)?;
            family(major, &mut comments, &mut recipe)?;
            for a in &c.archives {
                let unpack = Unpack {
                    strip_components: 1,
                    moves: [("LICENSE".to_owned(), format!("share/licenses/{}/LICENSE", c.name))].into(),
                    ..Unpack::default()
                };
                let url = format!("mirror://nvidia/{}/redist/{}", c.product, a.relative_path);
                recipe.sources.push(Source {
                    platform: Some(a.platform.to_owned()),
                    ..super::source(url, &a.sha256, unpack)
                });
            }
            Ok(recipe)
        })()
        .map_err(|m| problem(&c.from.join(", "), format!("{} {}: {m}", c.name, c.version)))?;
        out.push(Generated::new(format!("{}/{}.toml", c.name, c.version), &made, &comments));
    }
    for (release, shipped) in &by_release {
        let major: u64 = release.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        let header =
            vec![format!("Generated by `envctl import nvidia-redist` from NVIDIA's {}.", origin_of(release))];
        let empty = || super::source(EMPTY_URL.to_owned(), EMPTY_SHA256, Unpack::default());
        let made = (|| -> Result<Vec<(String, Recipe, Comments)>, String> {
            let mut made = Vec::new();
            let mut comments = Comments { header: header.clone(), ..Comments::default() };
            let mut version = super::recipe("cuda-version", release)?;
            version.summary = format!("Keeps a profile's CUDA components on release {release}");
            family(major, &mut comments, &mut version)?;
            version.sources.push(empty());
            made.push((format!("cuda-version/{release}.toml"), version, comments));
            for (meta, parts, summary) in [
                ("cuda-runtime", RUNTIME.to_vec(), "the runtime libraries"),
                (
                    "cuda-toolkit",
                    [RUNTIME, TOOLKIT].concat(),
                    "the runtime libraries, nvcc, headers and development tools",
                ),
            ] {
                let mut recipe = super::recipe(meta, release)?;
                recipe.summary = format!("CUDA {release}: {summary}");
                super::depend(&mut recipe, "cuda-version", &format!("=={release}"))?;
                for part in parts {
                    if let Some(v) = shipped.get(&normalize(part)) {
                        super::depend(&mut recipe, &normalize(part), &format!("=={v}"))?;
                    }
                }
                recipe.sources.push(empty());
                made.push((
                    format!("{meta}/{release}.toml"),
                    recipe,
                    Comments { header: header.clone(), ..Comments::default() },
                ));
            }
            Ok(made)
        })()
        .map_err(|m| problem(&origin_of(release), format!("release {release}: {m}")))?;
        for (path, recipe, comments) in made {
            out.push(Generated::new(path, &recipe, &comments));
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
