//! Conda packages into recipes: records of a channel's `repodata.json` (read as a stream by the
//! caller; only the small fields of each record are kept), or a list of records with their file
//! names and sha256 (`shared/data/conda-cuda/packages.json`).
//!
//! - One recipe per name, version and build: the version carries the build as its local label
//!   (`7.6.5+conda.cuda10.0_0`), so `cudnn = "7.6"` matches every build and the solver picks the
//!   one whose dependencies fit; `conda.` sorts below NVIDIA's `cuda11`/`cuda12` variants of the
//!   same release, so NVIDIA's own archive is preferred where both exist.
//! - The `.conda` file (format `conda`, the payload `pkg-*.tar.zst` only) is preferred to the
//!   `.tar.bz2` of the same build (format `conda-v1`, `info/` left out).
//! - `depends` match specs become dependencies when they name a package of the same import or
//!   `cuda-version` (conda-forge's and envctl's mean the same: the CUDA release a profile is on),
//!   and `__glibc` / `__cuda` become `[system]` requirements; the rest (a channel's compiler runtimes,
//!   say) are listed in a comment, since the machine or another repository provides them.
//! - A record without a sha256 is left out and reported: envctl never trusts a file it cannot
//!   verify.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use envctl_core::{Format, Unpack};

use super::{Generated, Problem};
use crate::recipe::{Recipe, Source};
use crate::version::{Requirement, Version};
use crate::write::Comments;

/// The fields of a conda package record that recipes need.
#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    /// Package name.
    pub name: String,
    /// Version, conda's spelling.
    pub version: String,
    /// Build string.
    pub build: String,
    /// Run dependencies, as match specs.
    #[serde(default)]
    pub depends: Option<Vec<String>>,
    /// sha256 of the file.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The file name, when the record does not come keyed by it.
    #[serde(default)]
    pub filename: Option<String>,
    /// The full URL, when the record carries it.
    #[serde(default)]
    pub url: Option<String>,
}

/// The records of a channel's `repodata.json` (its `packages` and `packages.conda` maps, file
/// name to record) whose package name is one of `names`, read as a stream: a channel's file runs to
/// hundreds of MB and hundreds of thousands of records, and only the few asked for are kept.
pub fn read_repodata(
    reader: impl std::io::Read,
    names: &BTreeSet<String>,
) -> serde_json::Result<Vec<(String, Record)>> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    /// The whole file: the two maps of records, everything else skipped.
    struct Top<'a>(&'a BTreeSet<String>);
    /// One map of records, keeping the wanted ones.
    struct Files<'a>(&'a BTreeSet<String>);

    impl<'de> Visitor<'de> for Top<'_> {
        type Value = Vec<(String, Record)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a conda repodata.json object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                if key == "packages" || key == "packages.conda" {
                    out.extend(map.next_value_seed(Files(self.0))?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(out)
        }
    }
    impl<'de> DeserializeSeed<'de> for Files<'_> {
        type Value = Vec<(String, Record)>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Files<'_> {
        type Value = Vec<(String, Record)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of file names to package records")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(file) = map.next_key::<String>()? {
                let record: Record = map.next_value()?;
                if self.0.contains(&record.name) {
                    out.push((file, record));
                }
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let records = serde::Deserializer::deserialize_map(&mut de, Top(names))?;
    de.end()?;
    Ok(records)
}

/// What to import: `name` or `name=version` (a version may end in `*`).
#[derive(Debug, Clone)]
pub struct Spec {
    /// Package name.
    pub name: String,
    /// Version prefix, if any.
    pub version: Option<String>,
}

impl Spec {
    /// Parses `name[=version]`.
    pub fn parse(text: &str) -> Spec {
        match text.split_once('=') {
            Some((n, v)) => {
                Spec { name: n.trim().to_owned(), version: Some(v.trim().trim_start_matches('=').to_owned()) }
            }
            None => Spec { name: text.trim().to_owned(), version: None },
        }
    }

    fn matches(&self, r: &Record) -> bool {
        r.name == self.name
            && self.version.as_deref().is_none_or(|v| match v.strip_suffix('*') {
                Some(prefix) => r.version.starts_with(prefix),
                None => r.version == v,
            })
    }
}

/// Records from a JSON list of records that carry their own file names (and URLs), as
/// `shared/data/conda-cuda/packages.json` has them.
pub fn records_from_list(text: &str, origin: &str) -> Result<Vec<(String, Record)>, Problem> {
    let list: Vec<Record> = serde_json::from_str(text).map_err(|e| Problem {
        file: origin.to_owned(),
        message: format!("not a JSON list of records with name, version, build, filename and sha256: {e}"),
    })?;
    Ok(list.into_iter().filter_map(|r| Some((r.filename.clone()?, r))).collect())
}

/// Points every record at `mirror://NAME/<subdir>/<file>` instead of its channel.
pub fn with_mirror(records: Vec<(String, Record)>, mirror: &str, subdir: &str) -> Vec<(String, Record)> {
    records
        .into_iter()
        .map(|(f, mut r)| {
            r.url = Some(format!("mirror://{mirror}/{subdir}/{f}"));
            (f, r)
        })
        .collect()
}

/// One package file to import: its record, file name and where it is fetched from.
struct File {
    record: Record,
    filename: String,
    url: String,
}

/// Recipes for the records of `channel`/`subdir` that the specs ask for. `base` is where the files
/// are fetched from (`<base>/<filename>`). Returns the recipes and a line per record left out.
pub fn import(
    records: Vec<(String, Record)>,
    base: &str,
    specs: &[Spec],
    origin: &str,
) -> Result<(Vec<Generated>, Vec<String>), Problem> {
    let mut chosen: BTreeMap<(String, String, String), File> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (filename, record) in records {
        if !specs.iter().any(|s| s.matches(&record)) {
            continue;
        }
        if record.sha256.as_deref().is_none_or(|s| s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            skipped.push(format!("{filename}: no sha256 to verify it by"));
            continue;
        }
        let url = record.url.clone().unwrap_or_else(|| format!("{}/{filename}", base.trim_end_matches('/')));
        let key = (record.name.clone(), record.version.clone(), record.build.clone());
        let is_v2 = filename.ends_with(".conda");
        // The .conda file wins over the .tar.bz2 of the same build.
        if chosen.get(&key).is_some_and(|f| f.filename.ends_with(".conda")) && !is_v2 {
            continue;
        }
        chosen.insert(key, File { record, filename, url });
    }
    for spec in specs {
        if !chosen.values().any(|f| spec.matches(&f.record)) {
            let what =
                spec.version.as_deref().map_or_else(|| spec.name.clone(), |v| format!("{}={v}", spec.name));
            return Err(Problem {
                file: origin.to_owned(),
                message: format!("no package with a sha256 matches `{what}`"),
            });
        }
    }
    let names: BTreeSet<String> = chosen.values().map(|f| f.record.name.clone()).collect();
    let mut out = Vec::new();
    for f in chosen.values() {
        let r = &f.record;
        let version = format!(
            "{}+conda.{}",
            r.version,
            r.build.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '_', "_")
        );
        Version::parse(&version)
            .map_err(|e| Problem { file: origin.to_owned(), message: format!("{}: {e}", f.filename) })?;
        let mut deps = BTreeMap::new();
        let mut system = BTreeMap::new();
        let mut external = Vec::new();
        for spec in r.depends.iter().flatten() {
            let mut words = spec.split_whitespace();
            let Some(dep) = words.next() else { continue };
            let constraint = words.next().unwrap_or("*");
            let requirement = requirement_of_conda(constraint);
            match (dep, requirement) {
                ("__glibc", Some(req)) => {
                    system.insert("glibc", req);
                }
                ("__cuda", Some(req)) => {
                    system.insert("cuda", req);
                }
                (name, Some(req)) if names.contains(name) || name == "cuda-version" => {
                    deps.insert(name.to_owned(), req);
                }
                _ => external.push(spec.clone()),
            }
        }
        let format = if f.filename.ends_with(".conda") { Format::Conda } else { Format::CondaV1 };
        let mut comments = Comments {
            header: vec![format!("Generated by `envctl import conda` from {origin}: {}.", f.filename)],
            ..Comments::default()
        };
        if !external.is_empty() {
            comments.header.push(format!(
                "Not imported (provided by the machine or another repository): {}.",
                external.join(", ")
            ));
        }
        let made = (|| -> Result<Recipe, String> {
            let mut recipe = super::recipe(&r.name, &version)?;
            recipe.summary = format!("{} {} (conda build {})", r.name, r.version, r.build);
            for (n, q) in &deps {
                super::depend(&mut recipe, n, q)?;
            }
            recipe.system.glibc = system.get("glibc").map(|q| super::requirement(q)).transpose()?;
            recipe.system.cuda = system.get("cuda").map(|q| super::requirement(q)).transpose()?;
            let unpack = Unpack { format: Some(format), ..Unpack::default() };
            let sha256 = r.sha256.clone().unwrap_or_default();
            recipe.sources.push(Source {
                platform: Some("linux-x86_64".to_owned()),
                ..super::source(f.url.clone(), &sha256, unpack)
            });
            Ok(recipe)
        })()
        .map_err(|m| Problem { file: origin.to_owned(), message: format!("{}: {m}", f.filename) })?;
        out.push(Generated::new(format!("{}/{version}.toml", r.name), &made, &comments));
    }
    Ok((out, skipped))
}

/// A conda version constraint (`>=10.0,<10.1`, `7.6.*`, `>=3.7,<3.8.0a0|3.9`) as an envctl
/// requirement, when envctl's grammar reads it the same way (see docs/reference/versions.md: a
/// bare series is a prefix match in both); `None` otherwise.
fn requirement_of_conda(constraint: &str) -> Option<String> {
    let text = constraint.trim();
    if text.is_empty() || text == "*" {
        return Some("*".into());
    }
    Requirement::parse(text).ok().map(|r| r.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repodata_is_read_keeping_only_the_names_asked_for() {
        let text = r#"{
            "info": {"subdir": "linux-64"}, "repodata_version": 1,
            "packages": {
                "cudnn-7.6.5-cuda10.0_0.tar.bz2": {"name": "cudnn", "version": "7.6.5", "build": "cuda10.0_0", "depends": ["cudatoolkit >=10.0,<10.1"], "sha256": "aa", "size": 1},
                "numpy-1.0-0.tar.bz2": {"name": "numpy", "version": "1.0", "build": "0", "depends": [], "license": "BSD"}
            },
            "packages.conda": {
                "cudnn-7.6.5-cuda10.0_0.conda": {"name": "cudnn", "version": "7.6.5", "build": "cuda10.0_0", "sha256": "bb"}
            },
            "removed": ["x.tar.bz2"]
        }"#;
        let names: BTreeSet<String> = ["cudnn".to_owned()].into();
        let records = read_repodata(text.as_bytes(), &names).unwrap();
        let files: Vec<&str> = records.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, ["cudnn-7.6.5-cuda10.0_0.tar.bz2", "cudnn-7.6.5-cuda10.0_0.conda"]);
        assert!(read_repodata(&b"{\"packages\": {\"x\": 1}}"[..], &names).is_err());
    }
}
