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

use envctl_core::{Format, Unpack};
use envctl_recipes::Comments;
use envctl_recipes::import::{Generated, Problem};
use envctl_recipes::{PackageName, Requirement, Version};

use crate::tags::{WheelTags, manylinux_glibc};

/// What the recipes are for.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The interpreter, `X.Y` or `X.Y.Z`.
    pub python: String,
    /// The CPU architecture (`x86_64`).
    pub arch: String,
    /// The index name the sources use.
    pub index: String,
    /// Dependencies the publisher's metadata leaves out, by distribution of this request:
    /// TensorFlow 1.15's GPU wheel names no CUDA, yet loads `libcudart.so.10.0`.
    pub add: BTreeMap<PackageName, BTreeMap<String, String>>,
    /// Hints shown when a dependency cannot be met, by distribution of this request and dependency.
    pub hints: BTreeMap<PackageName, BTreeMap<String, String>>,
    /// System needs the publisher's metadata does not state, by distribution of this request:
    /// the GPUs a framework's CUDA code runs on (`sm = ">=5.0"`), measured from its wheel.
    pub system: BTreeMap<PackageName, BTreeMap<String, String>>,
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

/// One distribution as one report resolved it.
struct Entry {
    name: PackageName,
    version: Version,
    summary: Option<String>,
    license: Option<String>,
    /// dependency → requirement text
    deps: BTreeMap<String, String>,
    /// The Python series of a version-specific wheel (`3.11` for `cp311`).
    specific: Option<Version>,
    /// `python` for a wheel that runs on many (from `Requires-Python`).
    requires_python: String,
    glibc: Option<(u64, u64)>,
    arch: Option<String>,
    cuda: Option<u64>,
    file: String,
    sha256: String,
    /// For a source distribution: its build backend.
    sdist: Option<String>,
}

/// A source distribution in a report, for [`Options::inspect`] to look into.
#[derive(Debug, Clone)]
pub struct SdistRef {
    /// Distribution name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where the report says it is (the user's index; never written into a recipe).
    pub url: String,
    /// Its sha256.
    pub sha256: String,
    /// Its file name.
    pub file: String,
}

/// Looks into a source distribution: its build system, or why it cannot be built.
pub type Inspect<'a> = &'a mut dyn FnMut(&SdistRef) -> Result<crate::sdist::BuildSystem, String>;

/// What the reports alone cannot tell.
#[derive(Default)]
pub struct Options<'a> {
    /// Reads a source distribution's build system, or says why it cannot be built (a compiler
    /// needed). Without it, a report holding a source distribution is refused.
    pub inspect: Option<Inspect<'a>>,
}

/// The recipes for a pip report's closure (see the module docs). `origin` names the report in
/// errors.
pub fn import(report: &str, target: &Target, origin: &str) -> Result<Vec<Generated>, Problem> {
    import_many(&[(report, target, origin)], Options::default())
}

/// The recipes for several reports of one request, each for its own Python, merged: one recipe
/// per distribution version whose `python` dependency is every series it was resolved for; a
/// version-specific wheel (`cp311`) becomes a source for its Python (`python = "3.11"`), a wheel
/// for any Python one source for all. A dependency one Python needs is kept for all (a
/// requirement of `pubgrub` cannot depend on which Python the same solve picks), and two
/// requirements on one name must both hold.
pub fn import_many(
    reports: &[(&str, &Target, &str)],
    mut options: Options,
) -> Result<Vec<Generated>, Problem> {
    let mut all: BTreeMap<(PackageName, Version), Vec<(Entry, &Target)>> = BTreeMap::new();
    for (report, target, origin) in reports {
        for e in entries(report, target, origin, &mut options)? {
            all.entry((e.name.clone(), e.version.clone())).or_default().push((e, target));
        }
    }
    let mut out = Vec::new();
    for ((name, version), entries) in all {
        out.push(merge(&name, &version, &entries).map_err(|message| Problem {
            file: reports.iter().map(|r| r.2).collect::<Vec<_>>().join(", "),
            message,
        })?);
    }
    Ok(out)
}

fn entries(
    report: &str,
    target: &Target,
    origin: &str,
    options: &mut Options,
) -> Result<Vec<Entry>, Problem> {
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
        let version = Version::parse(&m.version).map_err(|e| problem(format!("{name}: {e}")))?;
        let sha256 = sha.to_ascii_lowercase();
        // A source distribution is built by its backend, whose requirements join its own.
        let (tags, build) = match WheelTags::from_file_name(&file) {
            Some(tags) => {
                tags.check(&python, &target.arch, None)
                    .map_err(|why| problem(format!("{name}: `{file}`: {why}")))?;
                (Some(tags), None)
            }
            None if crate::sdist::is_sdist_file(&file) => {
                let Some(inspect) = options.inspect.as_mut() else {
                    return Err(problem(format!(
                        "{name}: `{file}` is a source distribution, and nothing here can look into it"
                    )));
                };
                let sdist = SdistRef {
                    name: name.to_string(),
                    version: m.version.clone(),
                    url: item.download_info.url.clone(),
                    sha256: sha256.clone(),
                    file: file.clone(),
                };
                let build = inspect(&sdist).map_err(|why| {
                    problem(format!(
                        "{name} {} is published only as source (`{file}`) and cannot be built here: {why}",
                        m.version
                    ))
                })?;
                // Built into a pure wheel: no interpreter, ABI or platform of its own.
                (None, Some(build))
            }
            None => {
                return Err(problem(format!(
                    "{name}: `{file}` is neither a wheel nor a source distribution"
                )));
            }
        };

        let mut deps: BTreeMap<String, String> = BTreeMap::new();
        for req in active(reqs, &env, &extras[name]) {
            let Ok(dep) = PackageName::parse(req.name.as_ref()) else { continue };
            if !items.contains_key(&dep) || dep == *name {
                continue;
            }
            let spec = specifier(req);
            // Several lines for one name (under different markers) all hold.
            let merged = both(deps.remove(dep.as_str()), spec);
            Requirement::parse(&merged).map_err(|e| problem(format!("{name}: requirement on {dep}: {e}")))?;
            deps.insert(dep.to_string(), merged);
        }
        if let Some(build) = &build {
            for text in &build.requires {
                let req: pep508_rs::Requirement = pep508_rs::Requirement::from_str(text).map_err(|e| {
                    problem(format!("{name}: cannot read the build requirement `{text}`: {e}"))
                })?;
                if !req.marker.evaluate(&env, &[]) {
                    continue;
                }
                let dep = PackageName::parse(req.name.as_ref()).map_err(problem)?;
                if !items.contains_key(&dep) {
                    return Err(problem(format!(
                        "{name} {} is published only as source and its build backend needs `{text}`, which the closure lacks: add `{dep}` to the request",
                        m.version
                    )));
                }
                let spec = specifier(&req);
                let merged = both(deps.remove(dep.as_str()), spec);
                deps.insert(dep.to_string(), merged);
            }
        }
        let platforms = tags.as_ref().map(|t| t.platform.as_slice()).unwrap_or_default();
        let specific = tags.as_ref().is_some_and(|t| t.abi.iter().any(|a| a != "none" && a != "abi3"));
        out.push(Entry {
            name: name.clone(),
            version,
            summary: m.summary.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned),
            license: license(m),
            deps,
            specific: specific
                .then(|| Version::parse(&series))
                .transpose()
                .map_err(|e| problem(e.to_string()))?,
            requires_python: python_requirement(m.requires_python.as_deref()),
            glibc: platforms.iter().filter_map(|p| manylinux_glibc(p, &target.arch)).min(),
            arch: platforms.iter().any(|p| p != "any").then(|| target.arch.clone()),
            cuda: cuda_major(name.as_str()),
            file,
            sha256,
            sdist: build.map(|b| b.backend),
        });
    }
    Ok(out)
}

/// A requirement's version specifiers as recipe text (`>=1.0,<2`), `*` for none.
fn specifier(req: &pep508_rs::Requirement) -> String {
    match &req.version_or_url {
        Some(pep508_rs::VersionOrUrl::VersionSpecifier(s)) if !s.is_empty() => {
            s.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
        }
        _ => "*".to_owned(),
    }
}

/// Two requirements on one name that must both hold, as one.
fn both(prev: Option<String>, spec: String) -> String {
    match prev {
        Some(prev) if prev == spec || spec == "*" => prev,
        Some(prev) if prev != "*" => format!("{prev},{spec}"),
        _ => spec,
    }
}

/// One recipe from what each report said of one distribution version.
fn merge(name: &PackageName, version: &Version, entries: &[(Entry, &Target)]) -> Result<Generated, String> {
    let first = &entries[0].0;
    let mut deps: BTreeMap<String, String> = BTreeMap::new();
    for (e, _) in entries {
        for (dep, spec) in &e.deps {
            let merged = both(deps.remove(dep), spec.clone());
            deps.insert(dep.clone(), merged);
        }
    }
    // What the requests that resolved this version add.
    let mut hints: BTreeMap<&String, &String> = BTreeMap::new();
    for (_, target) in entries {
        for (dep, spec) in target.add.get(name).into_iter().flatten() {
            let merged = both(deps.remove(dep), spec.clone());
            deps.insert(dep.clone(), merged);
        }
        hints.extend(target.hints.get(name).into_iter().flatten());
    }
    // Sources: one per file, with the Pythons whose reports chose it. One file for every Python
    // is one source for any Python its tags allow; else each source is for its own Pythons.
    let mut files: BTreeMap<&str, (&Entry, BTreeSet<Version>)> = BTreeMap::new();
    for (e, t) in entries {
        let series = Version::parse(&t.python.split('.').take(2).collect::<Vec<_>>().join("."))
            .map_err(|e| e.to_string())?;
        files.entry(e.file.as_str()).or_insert((e, BTreeSet::new())).1.insert(series);
    }
    let union = |set: &mut dyn Iterator<Item = &Version>| {
        let set: BTreeSet<&Version> = set.collect();
        set.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("|")
    };
    let one_file = files.len() == 1;
    let python = match files.values().next() {
        Some((e, _)) if one_file && e.specific.is_none() => e.requires_python.clone(),
        _ => union(&mut files.values().flat_map(|(_, s)| s.iter())),
    };
    deps.insert("python".into(), python);
    for (dep, spec) in &deps {
        Requirement::parse(spec).map_err(|e| format!("{name} {version}: requirement on {dep}: {e}"))?;
    }

    let pythons: BTreeSet<Version> =
        entries.iter().filter_map(|(_, t)| Version::parse(&t.python).ok()).collect();
    let pythons: Vec<String> = pythons.iter().map(|v| v.to_string()).collect();
    let target = entries[0].1;
    let mut comments = Comments {
        header: vec![format!(
            "Written by `envctl import pip` for CPython {} on {}.",
            pythons.join(", "),
            target.arch
        )],
        ..Comments::default()
    };
    let mut recipe = envctl_recipes::import::recipe(name.as_str(), &version.to_string())?;
    recipe.summary = first.summary.clone().unwrap_or_default();
    recipe.license = first.license.clone().unwrap_or_default();
    if let Some(backend) = &first.sdist {
        comments.after_top = vec![
            "Published only as source: built into a wheel with the profile's Python by its build".into(),
            format!("backend `{backend}`, whose requirements are among the dependencies."),
        ];
    }
    for (dep, spec) in &deps {
        envctl_recipes::import::depend(&mut recipe, dep, spec)?;
    }
    let requirement = envctl_recipes::import::requirement;
    if let Some(cuda) = first.cuda {
        recipe.system.cuda = Some(requirement(&format!(">={cuda}"))?);
    }
    if let Some(glibc) = entries.iter().filter_map(|(e, _)| e.glibc).max() {
        recipe.system.glibc = Some(requirement(&format!(">={}.{}", glibc.0, glibc.1))?);
    }
    recipe.system.arch = entries.iter().find_map(|(e, _)| e.arch.clone());
    let stated: BTreeMap<&String, &String> =
        entries.iter().flat_map(|(_, t)| t.system.get(name).into_iter().flatten()).collect();
    for (key, spec) in stated {
        let slot = match key.as_str() {
            "cuda" => &mut recipe.system.cuda,
            "glibc" => &mut recipe.system.glibc,
            "driver" => &mut recipe.system.driver,
            "sm" => &mut recipe.system.sm,
            "arch" => {
                recipe.system.arch = Some(spec.to_string());
                continue;
            }
            other => return Err(format!("{name}: unknown system requirement `{other}`")),
        };
        *slot = Some(requirement(spec)?);
    }
    for (file, (e, series)) in &files {
        let unpack = Unpack { format: e.sdist.is_some().then_some(Format::Sdist), ..Unpack::default() };
        let mut source =
            envctl_recipes::import::source(format!("index://{}/{file}", target.index), &e.sha256, unpack);
        if !one_file {
            source.python = Some(requirement(&union(&mut series.iter()))?);
        }
        recipe.sources.push(source);
    }
    for (dep, hint) in hints {
        recipe.hints.insert(PackageName::parse(dep)?, hint.clone());
    }
    Ok(Generated::new(format!("{name}/{version}.toml"), &recipe, &comments))
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

/// `python` for a wheel that runs on many: what `Requires-Python` says, else any Python 3.
fn python_requirement(requires: Option<&str>) -> String {
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
        let target = Target {
            python: "3.11".into(),
            arch: "x86_64".into(),
            index: "pypi".into(),
            ..Default::default()
        };
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
            envctl_recipes::Recipe::parse(&g.text, std::path::Path::new(&g.path))
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
        let target = Target {
            python: "3.11".into(),
            arch: "x86_64".into(),
            index: "pypi".into(),
            ..Default::default()
        };
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

    #[test]
    fn reports_for_several_pythons_merge_into_one_recipe_per_version() {
        let report = |py: &str, crypto_deps: &[&str]| {
            serde_json::json!({"install": [
                item("numpy", "1.26.4", &format!("numpy-1.26.4-cp{py}-cp{py}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"), &[], Some(">=3.9")),
                item("cryptography", "50.0.2", &format!("cryptography-50.0.2-cp{}-abi3-manylinux_2_28_x86_64.whl", if py == "311" { "311" } else { "37" }), crypto_deps, Some(">=3.8")),
                item("typing_extensions", "4.9.0", "typing_extensions-4.9.0-py3-none-any.whl", &[], Some(">=3.8")),
            ]})
            .to_string()
        };
        let (r310, r311) = (
            report("310", &["typing-extensions>=4.13.2; python_version < \"3.11\""]),
            report("311", &["typing-extensions>=4.13.2; python_version < \"3.11\""]),
        );
        let t310 = Target {
            python: "3.10".into(),
            arch: "x86_64".into(),
            index: "pypi".into(),
            ..Default::default()
        };
        let t311 = Target { python: "3.11".into(), ..t310.clone() };
        let out =
            import_many(&[(&r311, &t311, "a.json"), (&r310, &t310, "b.json")], Options::default()).unwrap();
        let get = |p: &str| out.iter().find(|g| g.path == p).unwrap().text.clone();
        let numpy = get("numpy/1.26.4.toml");
        assert!(numpy.contains("python = \"3.10|3.11\""), "{numpy}");
        assert!(numpy.contains("for CPython 3.10, 3.11 on x86_64"), "{numpy}");
        let r = envctl_recipes::Recipe::parse(&numpy, std::path::Path::new("numpy.toml")).unwrap();
        let on =
            |v: &str| r.source_for("linux-x86_64", Some(&Version::parse(v).unwrap())).unwrap().url.clone();
        assert!(on("3.10.4").contains("cp310") && on("3.11.9").contains("cp311"), "{numpy}");
        // abi3 files chosen per Python: each source for the Python that chose it; the 3.10-only
        // dependency holds for both.
        let crypto = get("cryptography/50.0.2.toml");
        assert_eq!(crypto.matches("[[source]]").count(), 2, "{crypto}");
        assert!(
            crypto.contains("python = \"3.10|3.11\"") && crypto.contains("typing-extensions = \">=4.13.2\""),
            "{crypto}"
        );
        let r = envctl_recipes::Recipe::parse(&crypto, std::path::Path::new("c.toml")).unwrap();
        let on =
            |v: &str| r.source_for("linux-x86_64", Some(&Version::parse(v).unwrap())).unwrap().url.clone();
        assert!(on("3.10.4").contains("cp37-abi3") && on("3.11.9").contains("cp311-abi3"), "{crypto}");
        // One file for every Python: one source, for any Python its metadata allows.
        let te = get("typing-extensions/4.9.0.toml");
        assert!(te.contains("python = \">=3.8\"") && te.matches("[[source]]").count() == 1, "{te}");
        // The order the reports come in changes nothing.
        assert_eq!(
            out,
            import_many(&[(&r310, &t310, "b.json"), (&r311, &t311, "a.json")], Options::default()).unwrap()
        );
    }

    #[test]
    fn a_source_distribution_is_looked_into_and_additions_stay_with_their_request() {
        let report = |tf: &str, extra: &[serde_json::Value]| {
            let mut install = vec![
                item(
                    tf,
                    "1.15.5",
                    &format!("{}-1.15.5-cp37-cp37m-manylinux2010_x86_64.whl", tf.replace('-', "_")),
                    &["gast==0.2.2"],
                    None,
                ),
                item("gast", "0.2.2", "gast-0.2.2.tar.gz", &[], Some(">=2.7")),
                item("setuptools", "68.0.0", "setuptools-68.0.0-py3-none-any.whl", &[], Some(">=3.7")),
            ];
            install.extend(extra.iter().cloned());
            serde_json::json!({ "install": install }).to_string()
        };
        let wheel = item("wheel", "0.42.0", "wheel-0.42.0-py3-none-any.whl", &[], Some(">=3.7"));
        let gpu = Target {
            python: "3.7".into(),
            arch: "x86_64".into(),
            index: "pypi".into(),
            add: [(
                PackageName::parse("tensorflow-gpu").unwrap(),
                [("cudatoolkit".to_owned(), "10.0".to_owned())].into(),
            )]
            .into(),
            hints: [(
                PackageName::parse("tensorflow-gpu").unwrap(),
                [("cudatoolkit".to_owned(), "ask your site".to_owned())].into(),
            )]
            .into(),
            system: [(
                PackageName::parse("tensorflow-gpu").unwrap(),
                [("sm".to_owned(), ">=3.0".to_owned())].into(),
            )]
            .into(),
        };
        let cpu =
            Target { add: BTreeMap::new(), hints: BTreeMap::new(), system: BTreeMap::new(), ..gpu.clone() };
        let (r_gpu, r_cpu) =
            (report("tensorflow-gpu", std::slice::from_ref(&wheel)), report("tensorflow", &[wheel]));
        let mut looked = Vec::new();
        let mut inspect = |s: &SdistRef| {
            looked.push(s.file.clone());
            Ok(crate::sdist::BuildSystem::from_pyproject(None, "pyproject.toml").unwrap())
        };
        let out = import_many(
            &[(&r_gpu, &gpu, "gpu.json"), (&r_cpu, &cpu, "cpu.json")],
            Options { inspect: Some(&mut inspect) },
        )
        .unwrap();
        assert_eq!(looked, ["gast-0.2.2.tar.gz", "gast-0.2.2.tar.gz"]);
        let get = |p: &str| out.iter().find(|g| g.path == p).unwrap().text.clone();
        let gast = get("gast/0.2.2.toml");
        assert!(
            gast.contains("format = \"sdist\"")
                && gast.contains("setuptools = \">=40.8.0\"")
                && gast.contains("wheel = \"*\""),
            "{gast}"
        );
        envctl_recipes::Recipe::parse(&gast, std::path::Path::new("gast.toml")).unwrap();
        let tf_gpu = get("tensorflow-gpu/1.15.5.toml");
        assert!(
            tf_gpu.contains("cudatoolkit = \"10.0\"")
                && tf_gpu.contains("[hints]\ncudatoolkit = \"ask your site\""),
            "{tf_gpu}"
        );
        let r = envctl_recipes::Recipe::parse(&tf_gpu, std::path::Path::new("tf.toml")).unwrap();
        assert_eq!(r.hints.len(), 1);
        // A system need the metadata leaves out (the GPUs its CUDA code was built for).
        assert!(tf_gpu.contains("arch = \"x86_64\"\nsm = \">=3.0\"\n"), "{tf_gpu}");
        assert_eq!(r.system.sm.as_ref().map(|s| s.to_string()).as_deref(), Some(">=3.0"));
        let tf_cpu = get("tensorflow/1.15.5.toml");
        assert!(!tf_cpu.contains("cudatoolkit") && !tf_cpu.contains("sm ="), "{tf_cpu}");

        // A backend requirement outside the closure, and an sdist that cannot be built.
        let no_wheel = report("tensorflow", &[]);
        let mut inspect = |_: &SdistRef| Ok(crate::sdist::BuildSystem::from_pyproject(None, "p").unwrap());
        let e =
            import_many(&[(&no_wheel, &cpu, "r.json")], Options { inspect: Some(&mut inspect) }).unwrap_err();
        assert!(
            e.message.contains("gast 0.2.2") && e.message.contains("add `wheel` to the request"),
            "{e:?}"
        );
        let mut inspect = |_: &SdistRef| Err("building it needs a compiler: it holds `gast/_x.c`".to_owned());
        let e =
            import_many(&[(&r_cpu, &cpu, "r.json")], Options { inspect: Some(&mut inspect) }).unwrap_err();
        assert!(e.message.contains("published only as source") && e.message.contains("gast/_x.c"), "{e:?}");
        let e = import_many(&[(&r_cpu, &cpu, "r.json")], Options::default()).unwrap_err();
        assert!(e.message.contains("gast-0.2.2.tar.gz"), "{e:?}");
    }
}
