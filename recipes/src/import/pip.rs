//! `envctl import pip`: recipes from pip's installation report (`pip install --dry-run --report`),
//! one per distribution of the resolved closure, for one interpreter and platform.
//!
//! Each recipe names its file on a package index (`index = "pypi"`, `filename`, `sha256`), never
//! a host. Its dependencies are what its metadata's `Requires-Dist` says, markers evaluated for the
//! target (extras included when someone in the closure asks for them), restricted to the closure;
//! `Requires-Python` and the wheel's interpreter tag become a `python` dependency, a manylinux tag
//! a `[system] glibc` need, and an NVIDIA CUDA wheel (`nvidia-*-cu12`) a `[system] cuda` need, so
//! an old driver fails the lock rather than the import.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use serde::Deserialize;

use super::{Generated, Problem, quote};
use crate::name::PackageName;
use crate::version::{Requirement, Version};
use crate::wheel_tags::{WheelTags, manylinux_glibc};

/// What the recipes are for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The interpreter, `X.Y` or `X.Y.Z`.
    pub python: String,
    /// The CPU architecture (`x86_64`).
    pub arch: String,
    /// The index name the sources use.
    pub index: String,
}

#[derive(Deserialize)]
struct Report {
    install: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    metadata: Metadata,
    download_info: DownloadInfo,
    #[serde(default)]
    requested_extras: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    version: String,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    license_expression: Option<String>,
    #[serde(default)]
    requires_dist: Vec<String>,
    #[serde(default)]
    requires_python: Option<String>,
}

#[derive(Deserialize)]
struct DownloadInfo {
    url: String,
    #[serde(default)]
    archive_info: Option<ArchiveInfo>,
}

#[derive(Deserialize)]
struct ArchiveInfo {
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(default)]
    hash: Option<String>,
}

/// The recipes for a pip report's closure (see the module docs). `origin` names the report in
/// errors.
pub fn import(report: &str, target: &Target, origin: &str) -> Result<Vec<Generated>, Problem> {
    let problem = |message: String| Problem { file: origin.to_owned(), message };
    let report: Report =
        serde_json::from_str(report).map_err(|e| problem(format!("not a pip installation report: {e}")))?;
    let full = match target.python.split('.').count() {
        2 => format!("{}.0", target.python),
        _ => target.python.clone(),
    };
    let series: String = target.python.split('.').take(2).collect::<Vec<_>>().join(".");
    let env = pep508_rs::MarkerEnvironment::try_from(pep508_rs::MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: &full,
        os_name: "posix",
        platform_machine: &target.arch,
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "Linux",
        platform_version: "",
        python_full_version: &full,
        python_version: &series,
        sys_platform: "linux",
    })
    .map_err(|e| problem(format!("`{}` is not a Python version: {e}", target.python)))?;
    let python = Version::parse(&full).map_err(|e| problem(e.to_string()))?;

    // name -> (item, its requirements parsed)
    let mut items: BTreeMap<PackageName, (&Item, Vec<pep508_rs::Requirement>)> = BTreeMap::new();
    for item in &report.install {
        let name = PackageName::parse(&item.metadata.name).map_err(problem)?;
        let mut reqs = Vec::new();
        for text in &item.metadata.requires_dist {
            let req = pep508_rs::Requirement::from_str(text)
                .map_err(|e| problem(format!("{name}: cannot read the requirement `{text}`: {e}")))?;
            reqs.push(req);
        }
        items.insert(name, (item, reqs));
    }
    // Extras: what the report says was asked for, then what the closure asks of itself.
    let mut extras: BTreeMap<PackageName, BTreeSet<String>> = BTreeMap::new();
    for (name, (item, _)) in &items {
        let asked = item.requested_extras.clone().unwrap_or_default();
        extras.entry(name.clone()).or_default().extend(asked.into_iter().map(|e| normalize_extra(&e)));
    }
    loop {
        let mut grew = false;
        for (name, (_, reqs)) in &items {
            let wanted: Vec<(PackageName, String)> = active(reqs, &env, &extras[name])
                .filter_map(|req| Some((PackageName::parse(req.name.as_ref()).ok()?, req)))
                .flat_map(|(dep, req)| {
                    req.extras.iter().map(move |e| (dep.clone(), normalize_extra(e.as_ref())))
                })
                .collect();
            for (dep, extra) in wanted {
                grew |= extras.entry(dep).or_default().insert(extra);
            }
        }
        if !grew {
            break;
        }
    }

    let mut out = Vec::new();
    for (name, (item, reqs)) in &items {
        let m = &item.metadata;
        let file = item
            .download_info
            .url
            .split(['#', '?'])
            .next()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let file = percent_encoding::percent_decode_str(file).decode_utf8_lossy().into_owned();
        let sha = item
            .download_info
            .archive_info
            .as_ref()
            .and_then(|a| {
                a.hashes
                    .get("sha256")
                    .cloned()
                    .or_else(|| a.hash.as_ref()?.strip_prefix("sha256=").map(str::to_owned))
            })
            .ok_or_else(|| problem(format!("{name}: the report gives no sha256 for `{file}`")))?;
        Version::parse(&m.version).map_err(|e| problem(format!("{name}: {e}")))?;
        let tags = WheelTags::from_file_name(&file)
            .ok_or_else(|| problem(format!("{name}: `{file}` is not a wheel (envctl installs wheels only; pip was told --only-binary=:all:)")))?;
        tags.check(&python, &target.arch, None).map_err(|why| problem(format!("{name}: `{file}`: {why}")))?;

        let mut deps: BTreeMap<String, String> = BTreeMap::new();
        for req in active(reqs, &env, &extras[name]) {
            let Ok(dep) = PackageName::parse(req.name.as_ref()) else { continue };
            if !items.contains_key(&dep) || dep == *name {
                continue;
            }
            let spec = match &req.version_or_url {
                Some(pep508_rs::VersionOrUrl::VersionSpecifier(s)) if !s.is_empty() => {
                    s.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
                }
                _ => "*".to_owned(),
            };
            // Several lines for one name (under different markers) all hold.
            let merged = match deps.remove(dep.as_str()) {
                Some(prev) if prev != "*" && spec != "*" => format!("{prev},{spec}"),
                Some(prev) if spec == "*" => prev,
                _ => spec,
            };
            Requirement::parse(&merged).map_err(|e| problem(format!("{name}: requirement on {dep}: {e}")))?;
            deps.insert(dep.to_string(), merged);
        }
        deps.insert("python".into(), python_requirement(&tags, m.requires_python.as_deref(), &series));

        let mut system = Vec::new();
        if let Some(glibc) = tags.platform.iter().filter_map(|p| manylinux_glibc(p, &target.arch)).min() {
            system.push(format!("glibc = {}", quote(&format!(">={}.{}", glibc.0, glibc.1))));
        }
        if tags.platform.iter().any(|p| p != "any") {
            system.push(format!("arch = {}", quote(&target.arch)));
        }
        if let Some(cuda) = cuda_major(name.as_str()) {
            system.insert(0, format!("cuda = {}", quote(&format!(">={cuda}"))));
        }

        let mut text = format!(
            "# Written by `envctl import pip` for CPython {} on {}.\nname = {}\nversion = {}\n",
            target.python,
            target.arch,
            quote(name.as_str()),
            quote(&m.version)
        );
        if let Some(s) = m.summary.as_deref().filter(|s| !s.trim().is_empty()) {
            text.push_str(&format!("summary = {}\n", quote(s.trim())));
        }
        if let Some(l) = license(m) {
            text.push_str(&format!("license = {}\n", quote(&l)));
        }
        text.push_str("\n[dependencies]\n");
        for (dep, spec) in &deps {
            text.push_str(&format!("{} = {}\n", bare_key(dep), quote(spec)));
        }
        if !system.is_empty() {
            text.push_str("\n[system]\n");
            for line in &system {
                text.push_str(line);
                text.push('\n');
            }
        }
        text.push_str(&format!(
            "\n[[source]]\nindex = {}\nfilename = {}\nsha256 = {}\n",
            quote(&target.index),
            quote(&file),
            quote(&sha.to_ascii_lowercase())
        ));
        out.push(Generated { path: format!("{name}/{}.toml", m.version), text });
    }
    Ok(out)
}

/// The requirements that hold for the target with `extras`.
fn active<'r>(
    reqs: &'r [pep508_rs::Requirement],
    env: &pep508_rs::MarkerEnvironment,
    extras: &BTreeSet<String>,
) -> impl Iterator<Item = &'r pep508_rs::Requirement> {
    let extras: Vec<pep508_rs::ExtraName> =
        extras.iter().filter_map(|e| pep508_rs::ExtraName::from_str(e).ok()).collect();
    reqs.iter().filter(move |r| r.marker.evaluate(env, &extras))
}

fn normalize_extra(e: &str) -> String {
    PackageName::parse(e).map(|n| n.to_string()).unwrap_or_else(|_| e.to_ascii_lowercase())
}

/// `python` as the wheel needs it: its own series for a version-specific tag (`cp311`), else
/// what `Requires-Python` says, else any Python 3.
fn python_requirement(tags: &WheelTags, requires: Option<&str>, series: &str) -> String {
    let specific = tags.abi.iter().any(|a| a != "none" && a != "abi3");
    if specific {
        return series.to_owned();
    }
    match requires.map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) if Requirement::parse(r).is_ok() => r.replace(' ', ""),
        _ => ">=3".to_owned(),
    }
}

/// The CUDA major an NVIDIA wheel is built for (`nvidia-cudnn-cu12` → 12).
fn cuda_major(name: &str) -> Option<u64> {
    if !name.starts_with("nvidia-") {
        return None;
    }
    name.rsplit('-').next()?.strip_prefix("cu")?.parse().ok()
}

fn license(m: &Metadata) -> Option<String> {
    if let Some(e) = m.license_expression.as_deref().filter(|e| !e.trim().is_empty()) {
        return Some(e.trim().to_owned());
    }
    // The free-text field is often a whole license; only a short one-liner names it.
    m.license
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.len() <= 60 && !l.contains('\n'))
        .map(str::to_owned)
}

/// A TOML key: bare when it can be.
fn bare_key(k: &str) -> String {
    if k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        k.to_owned()
    } else {
        quote(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(
        name: &str,
        version: &str,
        file: &str,
        requires: &[&str],
        requires_python: Option<&str>,
    ) -> serde_json::Value {
        serde_json::json!({
            "metadata": {"name": name, "version": version, "requires_dist": requires, "requires_python": requires_python, "summary": "s"},
            "download_info": {"url": format!("https://files.example/x/{file}"), "archive_info": {"hashes": {"sha256": "ab".repeat(32)}}},
        })
    }

    #[test]
    fn the_closure_becomes_recipes_with_markers_evaluated_for_the_target() {
        let report = serde_json::json!({"install": [
            item("TensorFlow", "2.15.1", "tensorflow-2.15.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 &["numpy<2.0.0,>=1.23.5", "typing-extensions>=3.6.6", "tensorflow-io-gcs-filesystem>=0.23.1; platform_machine != \"arm64\" or platform_system != \"Darwin\"",
                   "nvidia-cudnn-cu12==8.9.4.25; extra == \"and-cuda\"", "enum34; python_version < \"3.4\""], Some(">=3.9")),
            item("numpy", "1.26.4", "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", &[], Some(">=3.9")),
            item("typing_extensions", "4.9.0", "typing_extensions-4.9.0-py3-none-any.whl", &[], Some(">=3.8")),
            item("tensorflow-io-gcs-filesystem", "0.37.1", "tensorflow_io_gcs_filesystem-0.37.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", &[], Some("<3.13,>=3.7")),
        ]});
        let target = Target { python: "3.11".into(), arch: "x86_64".into(), index: "pypi".into() };
        let out = import(&report.to_string(), &target, "report.json").unwrap();
        let tf = out.iter().find(|g| g.path == "tensorflow/2.15.1.toml").unwrap();
        assert!(tf.text.contains("numpy = \">=1.23.5,<2.0.0\""), "{}", tf.text);
        assert!(
            tf.text.contains("typing-extensions = \">=3.6.6\"")
                && tf.text.contains("tensorflow-io-gcs-filesystem"),
            "{}",
            tf.text
        );
        assert!(!tf.text.contains("nvidia") && !tf.text.contains("enum34"), "{}", tf.text);
        assert!(
            tf.text.contains("python = \"3.11\"") && tf.text.contains("glibc = \">=2.17\""),
            "{}",
            tf.text
        );
        assert!(tf.text.contains("index = \"pypi\"") && !tf.text.contains("files.example"), "{}", tf.text);
        let te = out.iter().find(|g| g.path == "typing-extensions/4.9.0.toml").unwrap();
        assert!(te.text.contains("python = \">=3.8\"") && !te.text.contains("[system]"), "{}", te.text);
        for g in &out {
            crate::Recipe::parse(&g.text, std::path::Path::new(&g.path))
                .unwrap_or_else(|e| panic!("{e}\n{}", g.text));
        }
        // Deterministic.
        assert_eq!(out, import(&report.to_string(), &target, "report.json").unwrap());
    }

    #[test]
    fn extras_asked_for_bring_their_requirements_and_cuda_wheels_need_a_driver() {
        let mut tf = item(
            "tensorflow",
            "2.15.1",
            "tensorflow-2.15.1-cp311-cp311-manylinux_2_17_x86_64.whl",
            &["nvidia-cudnn-cu12==8.9.4.25; extra == \"and-cuda\""],
            Some(">=3.9"),
        );
        tf["requested_extras"] = serde_json::json!(["and-cuda"]);
        let report = serde_json::json!({"install": [tf,
            item("nvidia-cudnn-cu12", "8.9.4.25", "nvidia_cudnn_cu12-8.9.4.25-py3-none-manylinux1_x86_64.whl", &[], Some(">=3"))]});
        let target = Target { python: "3.11".into(), arch: "x86_64".into(), index: "pypi".into() };
        let out = import(&report.to_string(), &target, "r").unwrap();
        let tf = out.iter().find(|g| g.path.starts_with("tensorflow/")).unwrap();
        assert!(tf.text.contains("nvidia-cudnn-cu12 = \"==8.9.4.25\""), "{}", tf.text);
        let cudnn = out.iter().find(|g| g.path.starts_with("nvidia-cudnn-cu12/")).unwrap();
        assert!(
            cudnn.text.contains("cuda = \">=12\"") && cudnn.text.contains("glibc = \">=2.5\""),
            "{}",
            cudnn.text
        );
    }
}
