//! Recipes: one version of one package, one TOML file. Keys are fixed by DESIGN.md and documented
//! in `docs/reference/recipes.md`; unknown keys are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result, line_of};
use crate::version::{Requirement, Version};
use envctl_core::{Format, PackageName, Unpack};

/// What a recipe needs from the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemRequirements {
    /// NVIDIA driver version.
    pub driver: Option<Requirement>,
    /// Highest CUDA version the driver supports.
    pub cuda: Option<Requirement>,
    /// Compute capability of every GPU.
    pub sm: Option<Requirement>,
    /// glibc version.
    pub glibc: Option<Requirement>,
    /// CPU architecture (`x86_64`, `aarch64`).
    pub arch: Option<String>,
}

/// Where a recipe's artifact comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// Platform (`linux-x86_64`); any when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// URL (`https://`, `mirror://NAME/…`, `file://`, or `index://NAME/FILE` for a file on a
    /// package index, written in a recipe as `index = "NAME"` and `filename = "FILE"`).
    pub url: String,
    /// sha256, 64 lowercase hex digits.
    pub sha256: String,
    /// How its archive is unpacked (`format`, `strip-components`, `subdir`, `move`, `root`).
    #[serde(flatten)]
    pub unpack: Unpack,
    /// Only for these Pythons (a wheel built for one interpreter, `cp311`): the source a profile
    /// uses is the one whose `python` holds its resolved Python. Any Python when absent.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "requirement_text")]
    pub python: Option<Requirement>,
    /// The recipe gave a path relative to itself (`url` holds it made absolute): a lock keeps it
    /// relative to the lock, so a checkout that ships its artifacts locks the same in any clone.
    #[serde(skip)]
    pub relative: bool,
}

fn requirement_text<S: serde::Serializer>(
    r: &Option<Requirement>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_str(r.as_str()),
        None => s.serialize_none(),
    }
}

/// One version of one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// Package name.
    pub name: PackageName,
    /// Version.
    pub version: Version,
    /// One line about it.
    pub summary: String,
    /// SPDX license expression.
    pub license: String,
    /// Dependencies: name → requirement.
    pub dependencies: BTreeMap<PackageName, Requirement>,
    /// Machine requirements.
    pub system: SystemRequirements,
    /// Sources, one per platform.
    pub sources: Vec<Source>,
    /// Environment variables for sessions; values may use `${profile}`.
    pub env: BTreeMap<String, String>,
    /// What to tell a user when a dependency cannot be met, by dependency: where a package
    /// without a published hash comes from (`cudatoolkit` 10.0: the site's own conda channel).
    pub hints: BTreeMap<PackageName, String>,
    /// The file it was read from (`<bundled>/…` for the embedded repository).
    pub origin: PathBuf,
}

impl Recipe {
    /// The source for `platform` and, when one is resolved, `python`: among the sources whose
    /// `python` holds it (or that name none), the one naming the platform, else one with no
    /// platform; a source for that very Python comes before one for any.
    pub fn source_for(&self, platform: &str, python: Option<&Version>) -> Option<&Source> {
        let fits = |s: &&Source| match (&s.python, python) {
            (Some(req), Some(v)) => req.matches(v),
            (Some(_), None) => false,
            (None, _) => true,
        };
        let on = |p: Option<&str>| {
            let with = self.sources.iter().filter(fits).filter(move |s| s.platform.as_deref() == p);
            with.clone().find(|s| s.python.is_some()).or_else(|| with.clone().next())
        };
        on(Some(platform)).or_else(|| on(None))
    }

    /// Whether some source serves `platform` (for some Python).
    pub fn has_source(&self, platform: &str) -> bool {
        self.sources.iter().any(|s| s.platform.is_none() || s.platform.as_deref() == Some(platform))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    license: String,
    #[serde(default)]
    dependencies: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    system: RawSystem,
    #[serde(default)]
    source: Vec<RawSource>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    hints: BTreeMap<Spanned<String>, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    driver: Option<Spanned<String>>,
    cuda: Option<Spanned<String>>,
    sm: Option<Spanned<String>>,
    glibc: Option<Spanned<String>>,
    arch: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSource {
    platform: Option<String>,
    url: Option<Spanned<String>>,
    index: Option<Spanned<String>>,
    filename: Option<Spanned<String>>,
    sha256: Spanned<String>,
    format: Option<Spanned<String>>,
    #[serde(default)]
    strip_components: u32,
    subdir: Option<Spanned<String>>,
    #[serde(default, rename = "move")]
    moves: BTreeMap<Spanned<String>, Spanned<String>>,
    root: Option<Spanned<String>>,
    python: Option<Spanned<String>>,
}

impl Recipe {
    /// Reads and checks a recipe file.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        Recipe::parse(&text, path)
    }

    /// Parses and checks recipe text; `path` is used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Recipe> {
        let raw: RawRecipe = toml::from_str(text)
            .map_err(|e| Error::Toml { path: path.to_path_buf(), message: e.to_string() })?;
        let bad = |span: std::ops::Range<usize>, key: &str, message: String| Error::Value {
            path: path.to_path_buf(),
            line: line_of(text, span.start),
            key: key.to_owned(),
            message,
        };
        let name = PackageName::parse(raw.name.get_ref()).map_err(|m| bad(raw.name.span(), "name", m))?;
        let version = Version::parse(raw.version.get_ref())
            .map_err(|e| bad(raw.version.span(), "version", e.to_string()))?;
        let mut dependencies = BTreeMap::new();
        for (dep, req) in &raw.dependencies {
            let key = format!("dependencies.{}", dep.get_ref());
            let n = PackageName::parse(dep.get_ref()).map_err(|m| bad(dep.span(), &key, m))?;
            let r = Requirement::parse(req.get_ref()).map_err(|e| bad(req.span(), &key, e.to_string()))?;
            dependencies.insert(n, r);
        }
        let req = |v: &Option<Spanned<String>>, key: &str| -> Result<Option<Requirement>> {
            v.as_ref()
                .map(|s| Requirement::parse(s.get_ref()).map_err(|e| bad(s.span(), key, e.to_string())))
                .transpose()
        };
        let system = SystemRequirements {
            driver: req(&raw.system.driver, "system.driver")?,
            cuda: req(&raw.system.cuda, "system.cuda")?,
            sm: req(&raw.system.sm, "system.sm")?,
            glibc: req(&raw.system.glibc, "system.glibc")?,
            arch: raw.system.arch.as_ref().map(|a| a.get_ref().clone()),
        };
        if let Some(a) = &raw.system.arch
            && !a.get_ref().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            return Err(bad(a.span(), "system.arch", format!("invalid architecture `{}`", a.get_ref())));
        }
        if raw.source.is_empty() {
            return Err(Error::Value {
                path: path.to_path_buf(),
                line: 1,
                key: "source".into(),
                message: "a recipe needs at least one [[source]]".into(),
            });
        }
        let mut sources = Vec::new();
        for s in raw.source {
            let sha = s.sha256.get_ref();
            if sha.len() != 64 || !sha.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(
                    s.sha256.span(),
                    "source.sha256",
                    format!("expected 64 hexadecimal digits, got `{sha}`"),
                ));
            }
            let url = match (&s.url, &s.index, &s.filename) {
                (Some(url), None, None) => {
                    let text = url.get_ref();
                    if text.is_empty() || text.chars().any(char::is_whitespace) {
                        return Err(bad(url.span(), "source.url", format!("invalid URL `{text}`")));
                    }
                    // `file://pkgs/x.tar.gz` reads as a relative path, which depends on where envctl
                    // runs: refused here rather than after every other download.
                    if let Some(rest) = text.strip_prefix("file://")
                        && !rest.starts_with('/')
                    {
                        return Err(bad(
                            url.span(),
                            "source.url",
                            format!(
                                "`{text}` is a relative file URL: write `file:///absolute/path`, or a plain relative path (read from the recipe's directory)"
                            ),
                        ));
                    }
                    text.clone()
                }
                (None, Some(index), Some(file)) => {
                    let (i, f) = (index.get_ref(), file.get_ref());
                    if i.is_empty()
                        || !i.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
                    {
                        return Err(bad(
                            index.span(),
                            "source.index",
                            format!(
                                "invalid index name `{i}`: use letters, digits, `-`, `_` and `.` (the host comes from the configuration)"
                            ),
                        ));
                    }
                    if f.is_empty()
                        || f.contains(['/', '\\'])
                        || f.chars().any(char::is_whitespace)
                        || f.starts_with('.')
                    {
                        return Err(bad(
                            file.span(),
                            "source.filename",
                            format!("`{f}` must be a plain file name"),
                        ));
                    }
                    format!("index://{i}/{f}")
                }
                (None, None, None) => {
                    return Err(bad(
                        s.sha256.span(),
                        "source",
                        "a source needs `url`, or `index` and `filename`".into(),
                    ));
                }
                (Some(url), _, _) => {
                    return Err(bad(
                        url.span(),
                        "source.url",
                        "give `url` or `index` with `filename`, not both".into(),
                    ));
                }
                (None, Some(index), None) => {
                    return Err(bad(
                        index.span(),
                        "source.index",
                        "`index` needs `filename` beside it".into(),
                    ));
                }
                (None, None, Some(file)) => {
                    return Err(bad(
                        file.span(),
                        "source.filename",
                        "`filename` needs `index` beside it".into(),
                    ));
                }
            };
            let url = &url;
            let format = match &s.format {
                Some(f) => Some(Format::parse(f.get_ref()).map_err(|_| {
                    let known: Vec<&str> = Format::names().collect();
                    bad(
                        f.span(),
                        "source.format",
                        format!(
                            "unknown format `{}`; expected one of {}, whl",
                            f.get_ref(),
                            known.join(", ")
                        ),
                    )
                })?),
                None => None,
            };
            // subdir, move and root name places inside the package: relative, without `..`.
            let inside = |p: &Spanned<String>, key: &str| {
                let t = p.get_ref();
                if t.is_empty() || t.starts_with('/') || t.split('/').any(|c| c == "..") {
                    return Err(bad(p.span(), key, format!("`{t}` must be a relative path without `..`")));
                }
                Ok(())
            };
            if let Some(d) = &s.subdir {
                inside(d, "source.subdir")?;
            }
            let mut moves = BTreeMap::new();
            for (from, to) in &s.moves {
                inside(from, "source.move")?;
                inside(to, "source.move")?;
                moves.insert(from.get_ref().clone(), to.get_ref().clone());
            }
            if let Some(r) = &s.root {
                inside(r, "source.root")?;
            }
            let python = req(&s.python, "source.python")?;
            // A plain relative path names a file beside the recipe (a repository that ships its
            // artifacts), wherever envctl runs from; it is shown and fetched in its canonical form.
            let (url, relative) = match path.parent() {
                Some(dir) if crate::url_path::is_relative_path(url) && dir.is_dir() => {
                    (crate::url_path::absolute_in(dir, url), true)
                }
                _ => (url.clone(), false),
            };
            sources.push(Source {
                platform: s.platform,
                url,
                sha256: sha.to_ascii_lowercase(),
                unpack: Unpack {
                    format,
                    strip_components: s.strip_components,
                    subdir: s.subdir.map(|d| d.into_inner()),
                    moves,
                    root: s.root.map(|r| r.into_inner()),
                },
                python,
                relative,
            });
        }
        let env = crate::env::check(&raw.env, |span, key, m| bad(span, &key, m))?;
        let mut hints = BTreeMap::new();
        for (dep, text) in raw.hints {
            let key = format!("hints.{}", dep.get_ref());
            let n = PackageName::parse(dep.get_ref()).map_err(|m| bad(dep.span(), &key, m))?;
            hints.insert(n, text);
        }
        Ok(Recipe {
            name,
            version,
            summary: raw.summary,
            license: raw.license,
            dependencies,
            system,
            sources,
            env,
            hints,
            origin: path.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TF: &str = r#"name = "tensorflow"
version = "1.15.5"
summary = "End-to-end machine learning platform"
license = "Apache-2.0"

[dependencies]
python = "3.7"
cuda-cudart = "10.0"
cudnn = ">=7.6,<8"

[system]
driver = ">=410.48"
arch = "x86_64"

[[source]]
platform = "linux-x86_64"
url = "mirror://pypi/tensorflow_gpu-1.15.5-cp37-cp37m-manylinux2010_x86_64.whl"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
subdir = "lib/python3.7/site-packages"

[env]
TF_CPP_MIN_LOG_LEVEL = "1"
"#;

    #[test]
    fn the_design_example_parses() {
        let r = Recipe::parse(TF, Path::new("tf.toml")).unwrap();
        assert_eq!(r.name.as_str(), "tensorflow");
        assert_eq!(r.dependencies.len(), 3);
        assert_eq!(r.system.driver.as_ref().unwrap().to_string(), ">=410.48");
        assert_eq!(
            r.source_for("linux-x86_64", None).unwrap().unpack.subdir.as_deref(),
            Some("lib/python3.7/site-packages")
        );
        assert!(r.source_for("linux-aarch64", None).is_none());
    }

    #[test]
    fn a_wheel_per_python_is_chosen_by_the_resolved_python() {
        let text = |extra: &str| {
            format!(
                r#"name = "numpy"
version = "1.26.4"
[dependencies]
python = "3.10|3.11"
[[source]]
python = "3.10"
index = "pypi"
filename = "numpy-1.26.4-cp310-cp310-manylinux_2_17_x86_64.whl"
sha256 = "{a}"
[[source]]
python = "3.11"
index = "pypi"
filename = "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl"
sha256 = "{b}"
{extra}"#,
                a = "a".repeat(64),
                b = "b".repeat(64)
            )
        };
        let r = Recipe::parse(&text(""), Path::new("numpy.toml")).unwrap();
        let on =
            |v: &str| r.source_for("linux-x86_64", Some(&Version::parse(v).unwrap())).map(|s| s.url.clone());
        assert!(on("3.11.9").unwrap().contains("cp311"));
        assert!(on("3.10.14").unwrap().contains("cp310"));
        assert_eq!(on("3.12.1"), None);
        assert!(r.source_for("linux-x86_64", None).is_none(), "no Python resolved, no wheel for one");
        assert!(r.has_source("linux-x86_64"));
        // A source for any Python serves the rest; one for the very Python comes first.
        let r = Recipe::parse(
            &text(&format!(
                "[[source]]\nindex = \"pypi\"\nfilename = \"numpy-1.26.4.tar.gz\"\nsha256 = \"{}\"\n",
                "c".repeat(64)
            )),
            Path::new("numpy.toml"),
        )
        .unwrap();
        let on =
            |v: &str| r.source_for("linux-x86_64", Some(&Version::parse(v).unwrap())).unwrap().url.clone();
        assert!(on("3.11.9").contains("cp311"));
        assert!(on("3.12.1").ends_with(".tar.gz"));
        let bad = text("").replace("python = \"3.11\"\nindex", "python = \"3.x\"\nindex");
        let e = Recipe::parse(&bad, Path::new("numpy.toml")).unwrap_err().to_string();
        assert!(e.contains("numpy.toml") && e.contains("source.python"), "{e}");
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let text = TF.replace("cudnn = \">=7.6,<8\"", "cudnn = \">=7.6,<8x\"");
        let e = Recipe::parse(&text, Path::new("r/tf.toml")).unwrap_err().to_string();
        assert!(
            e.contains("r/tf.toml")
                && e.contains("line 9")
                && e.contains("dependencies.cudnn")
                && e.contains("column"),
            "{e}"
        );

        let text = TF.replace("license =", "licence =");
        let e = Recipe::parse(&text, Path::new("tf.toml")).unwrap_err().to_string();
        assert!(e.contains("tf.toml") && e.contains("licence") && e.contains("line 4"), "{e}");

        let text = TF.replace("sha256 = \"0000", "sha256 = \"zz00");
        let e = Recipe::parse(&text, Path::new("tf.toml")).unwrap_err().to_string();
        assert!(e.contains("line 18") && e.contains("source.sha256"), "{e}");
    }

    #[test]
    fn a_relative_file_url_is_refused_when_the_recipe_is_read() {
        let text = TF.replace("mirror://pypi/", "file://wheels/");
        let e = Recipe::parse(&text, Path::new("r/tf.toml")).unwrap_err().to_string();
        assert!(e.contains("r/tf.toml") && e.contains("line 17") && e.contains("relative file URL"), "{e}");
        assert!(e.contains("file:///absolute/path"), "{e}");
        let text = TF.replace("mirror://pypi/", "file:///srv/wheels/");
        Recipe::parse(&text, Path::new("r/tf.toml")).unwrap();
    }
}
