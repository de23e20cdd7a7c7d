//! Recipes written as files: the one writer every importer (NVIDIA's manifests, conda,
//! python-build-standalone, pip) hands a [`Recipe`] value to, instead of each spelling TOML.
//!
//! The text is deterministic, so the bundled repository regenerates byte for byte: the top keys
//! (`name`, `version`, then `summary` and `license` when set), `[dependencies]` by name,
//! `[system]` in the order `cuda`, `glibc`, `arch`, `driver`, `sm`, each `[[source]]` (`platform`,
//! `python`, `url` or `index` with `filename`, `sha256`, then the unpack spec: `format`,
//! `strip-components`, `subdir`, `move` as an inline table, `root`), `[env]` and `[hints]`; a
//! section or key that is empty is left out. Comments a reader should see go where
//! [`Comments`] says.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::recipe::{Recipe, Source};
use crate::version::Requirement;

/// What a recipe file tells its reader besides the recipe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comments {
    /// Lines before `name` (where it was generated from).
    pub header: Vec<String>,
    /// Lines after the top keys (how it is built).
    pub after_top: Vec<String>,
    /// A comment at the end of a `[system]` key's line, by key (`driver`).
    pub system: BTreeMap<&'static str, String>,
}

/// `s` as a TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// `k` as a TOML key: bare when it can be.
fn key(k: &str) -> String {
    if !k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        k.to_owned()
    } else {
        quote(k)
    }
}

impl Recipe {
    /// The recipe as a file, with `comments`; [`Recipe::parse`] reads it back as this recipe.
    pub fn to_toml(&self, comments: &Comments) -> String {
        let mut out = String::new();
        for line in &comments.header {
            let _ = writeln!(out, "# {line}");
        }
        let _ = writeln!(
            out,
            "name = {}\nversion = {}",
            quote(self.name.as_str()),
            quote(&self.version.to_string())
        );
        for (k, v) in [("summary", &self.summary), ("license", &self.license)] {
            if !v.is_empty() {
                let _ = writeln!(out, "{k} = {}", quote(v));
            }
        }
        for line in &comments.after_top {
            let _ = writeln!(out, "# {line}");
        }
        if !self.dependencies.is_empty() {
            out.push_str("\n[dependencies]\n");
            for (name, req) in &self.dependencies {
                let _ = writeln!(out, "{} = {}", key(name.as_str()), quote(req.as_str()));
            }
        }
        let s = &self.system;
        let text = |r: &Option<Requirement>| r.as_ref().map(|r| r.as_str().to_owned());
        let system = [
            ("cuda", text(&s.cuda)),
            ("glibc", text(&s.glibc)),
            ("arch", s.arch.clone()),
            ("driver", text(&s.driver)),
            ("sm", text(&s.sm)),
        ];
        if system.iter().any(|(_, v)| v.is_some()) {
            out.push_str("\n[system]\n");
            for (k, v) in system {
                let Some(v) = v else { continue };
                let _ = write!(out, "{k} = {}", quote(&v));
                if let Some(note) = comments.system.get(k) {
                    let _ = write!(out, "    # {note}");
                }
                out.push('\n');
            }
        }
        for source in &self.sources {
            out.push_str("\n[[source]]\n");
            write_source(&mut out, source);
        }
        for (title, table) in [
            ("env", self.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>()),
            ("hints", self.hints.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
        ] {
            if !table.is_empty() {
                let _ = writeln!(out, "\n[{title}]");
                for (k, v) in table {
                    let _ = writeln!(out, "{} = {}", key(&k), quote(&v));
                }
            }
        }
        out
    }
}

fn write_source(out: &mut String, s: &Source) {
    if let Some(p) = &s.platform {
        let _ = writeln!(out, "platform = {}", quote(p));
    }
    if let Some(p) = &s.python {
        let _ = writeln!(out, "python = {}", quote(p.as_str()));
    }
    match s.url.strip_prefix("index://").and_then(|rest| rest.split_once('/')) {
        Some((index, file)) => {
            let _ = writeln!(out, "index = {}\nfilename = {}", quote(index), quote(file));
        }
        None => {
            let _ = writeln!(out, "url = {}", quote(&s.url));
        }
    }
    let _ = writeln!(out, "sha256 = {}", quote(&s.sha256));
    let u = &s.unpack;
    if let Some(f) = u.format {
        let _ = writeln!(out, "format = {}", quote(f.name()));
    }
    if u.strip_components != 0 {
        let _ = writeln!(out, "strip-components = {}", u.strip_components);
    }
    if let Some(d) = &u.subdir {
        let _ = writeln!(out, "subdir = {}", quote(d));
    }
    if !u.moves.is_empty() {
        let moves: Vec<String> = u.moves.iter().map(|(f, t)| format!("{} = {}", key(f), quote(t))).collect();
        let _ = writeln!(out, "move = {{ {} }}", moves.join(", "));
    }
    if let Some(r) = &u.root {
        let _ = writeln!(out, "root = {}", quote(r));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every bundled recipe, read and written again, is its own text without its comments: the
    /// writer says what each importer wrote (pip's included, which no test can run offline).
    #[test]
    fn every_bundled_recipe_reads_back_and_writes_as_it_is() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundled");
        let mut seen = 0;
        let mut files = Vec::new();
        for package in std::fs::read_dir(&dir).unwrap() {
            for file in std::fs::read_dir(package.unwrap().path()).unwrap() {
                files.push(file.unwrap().path());
            }
        }
        files.sort();
        for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
            let text = std::fs::read_to_string(path).unwrap();
            let recipe = Recipe::parse(&text, Path::new("recipe.toml")).unwrap();
            let bare: String = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| match l.split_once("    # ") {
                    Some((before, _)) => format!("{before}\n"),
                    None => format!("{l}\n"),
                })
                .collect();
            assert_eq!(recipe.to_toml(&Comments::default()), bare, "{}", path.display());
            seen += 1;
        }
        assert!(seen > 300, "{seen} recipes");
    }

    #[test]
    fn comments_go_where_they_are_asked_for() {
        let text = "name = \"a\"\nversion = \"1\"\n\n[system]\ndriver = \">=525\"\n\n[[source]]\nurl = \"empty:\"\nsha256 = \"5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef\"\n";
        let recipe = Recipe::parse(text, Path::new("a.toml")).unwrap();
        let comments = Comments {
            header: vec!["Generated by hand.".into()],
            after_top: vec!["Built from source.".into()],
            system: [("driver", "any driver of the CUDA 12 family".to_owned())].into(),
        };
        let written = recipe.to_toml(&comments);
        assert!(
            written
                .starts_with("# Generated by hand.\nname = \"a\"\nversion = \"1\"\n# Built from source.\n"),
            "{written}"
        );
        assert!(written.contains("driver = \">=525\"    # any driver of the CUDA 12 family\n"), "{written}");
        assert_eq!(Recipe::parse(&written, Path::new("a.toml")).unwrap(), recipe);
    }
}
