//! Recipe repositories: folders of recipe files, searched recursively, layered in order. The
//! bundled repository is compiled into the binary.
//!
//! Priority is by name (strict priority, as conda and pixi treat channels and Spack its
//! repositories): a name that a higher repository defines hides that name in every lower one,
//! all versions of it. A team that writes its own `cuda-cudart` recipes gets exactly those, never
//! a newer bundled one pointing at a server it cannot reach. What is hidden is kept, so `envctl
//! show` can say so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::recipe::Recipe;
use crate::version::Version;
use envctl_core::PackageName;

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
}

/// Recipes by name and version.
#[derive(Debug, Clone, Default)]
pub struct Repository {
    packages: BTreeMap<PackageName, BTreeMap<Version, Arc<Recipe>>>,
    hidden: BTreeMap<PackageName, Vec<Arc<Recipe>>>,
}

impl Repository {
    /// The repository compiled into the binary.
    pub fn bundled() -> Result<Repository> {
        let mut repo = Repository::default();
        for (path, text) in bundled::BUNDLED {
            let origin = PathBuf::from(format!("<bundled>/{path}"));
            repo.insert(Recipe::parse(text, &origin)?, false)?;
        }
        Ok(repo)
    }

    /// Loads every `*.toml` under `dir`. Two files for the same name and version are an error
    /// naming both. Parsing runs on every core.
    pub fn load_dir(dir: &Path) -> Result<Repository> {
        let mut files = Vec::new();
        walk(dir, &mut files)?;
        files.sort();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
        let chunk = files.len().div_ceil(threads).max(1);
        let parsed: Vec<Result<Vec<Recipe>>> = std::thread::scope(|s| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().map(|f| Recipe::load(f)).collect::<Result<Vec<_>>>()))
                .collect();
            handles.into_iter().map(|h| h.join().expect("recipe parsing does not panic")).collect()
        });
        let mut repo = Repository::default();
        for part in parsed {
            for recipe in part? {
                repo.insert(recipe, false)?;
            }
        }
        Ok(repo)
    }

    /// Adds a recipe. Unless `replace`, a second recipe for the same name and version is an error.
    pub fn insert(&mut self, recipe: Recipe, replace: bool) -> Result<()> {
        let versions = self.packages.entry(recipe.name.clone()).or_default();
        if !replace && let Some(old) = versions.get(&recipe.version) {
            return Err(Error::Value {
                path: recipe.origin.clone(),
                line: 1,
                key: "version".into(),
                message: format!(
                    "{} {} is also defined by `{}`; a repository holds one recipe per name and version",
                    recipe.name,
                    recipe.version,
                    old.origin.display()
                ),
            });
        }
        versions.insert(recipe.version.clone(), Arc::new(recipe));
        Ok(())
    }

    /// Layers `other` over this one: every name it defines replaces all of ours (see the module
    /// docs); our versions of that name are kept as hidden.
    pub fn layer(&mut self, other: Repository) {
        for (name, versions) in other.packages {
            if let Some(old) = self.packages.insert(name.clone(), versions) {
                self.hidden.entry(name).or_default().extend(old.into_values());
            }
        }
        for (name, recipes) in other.hidden {
            self.hidden.entry(name).or_default().extend(recipes);
        }
    }

    /// The recipes of `name` that a higher repository hides, newest first.
    pub fn hidden(&self, name: &str) -> Vec<&Arc<Recipe>> {
        let mut out: Vec<&Arc<Recipe>> =
            self.hidden.get(name).map(|v| v.iter().collect()).unwrap_or_default();
        out.sort_by(|a, b| b.version.cmp(&a.version));
        out
    }

    /// All package names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &PackageName> {
        self.packages.keys()
    }

    /// The recipes of one package, oldest first. `name` may be written any way PEP 503 normalizes
    /// (`Typing_Extensions`).
    pub fn versions(&self, name: &str) -> Option<&BTreeMap<Version, Arc<Recipe>>> {
        match self.packages.get(name) {
            Some(found) => Some(found),
            None => self.packages.get(PackageName::parse(name).ok()?.as_str()),
        }
    }

    /// One recipe.
    pub fn get(&self, name: &str, version: &Version) -> Option<&Arc<Recipe>> {
        self.versions(name)?.get(version)
    }

    /// Number of recipes.
    pub fn len(&self) -> usize {
        self.packages.values().map(BTreeMap::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// Names nearest to `name` (edit distance at most a third of its length, at least 1, or a
    /// shared prefix), best first, at most three.
    pub fn suggest(&self, name: &str) -> Vec<&PackageName> {
        let limit = (name.len() / 3).max(1);
        let mut scored: Vec<(usize, &PackageName)> = self
            .packages
            .keys()
            .filter_map(|n| {
                let d = distance(name, n.as_str());
                let prefix = n.as_str().starts_with(name) || name.starts_with(n.as_str());
                (d <= limit || (prefix && name.len() >= 3)).then_some((d, n))
            })
            .collect();
        scored.sort();
        scored.into_iter().take(3).map(|(_, n)| n).collect()
    }

    /// Latest recipe of each package whose name or summary contains `text` (case-insensitive).
    pub fn search(&self, text: &str) -> Vec<&Arc<Recipe>> {
        let needle = text.to_lowercase();
        self.packages
            .values()
            .filter_map(|versions| versions.values().next_back())
            .filter(|r| r.name.as_str().contains(&needle) || r.summary.to_lowercase().contains(&needle))
            .collect()
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
    for entry in rd {
        let entry = entry.map_err(|source| Error::Read { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        let ft = entry.file_type().map_err(|source| Error::Read { path: path.clone(), source })?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(name: &str, version: &str, origin: &str) -> String {
        format!(
            "name = \"{name}\"\nversion = \"{version}\"\n[[source]]\nurl = \"https://example.org/{origin}.tar\"\nsha256 = \"{}\"\n",
            "0".repeat(64)
        )
    }

    #[test]
    fn a_name_in_a_higher_repository_hides_every_version_below_and_duplicates_name_both_files() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("cuda")).unwrap();
        std::fs::write(a.path().join("cuda/10.0.toml"), recipe("cuda", "10.0", "a")).unwrap();
        std::fs::write(a.path().join("cuda/12.8.toml"), recipe("cuda", "12.8", "a")).unwrap();
        std::fs::write(a.path().join("python.toml"), recipe("python", "3.11", "a")).unwrap();
        std::fs::write(b.path().join("x.toml"), recipe("cuda", "11.8", "b")).unwrap();
        let mut repo = Repository::load_dir(a.path()).unwrap();
        repo.layer(Repository::load_dir(b.path()).unwrap());
        // Only the higher repository's cuda is left, though the lower one has a newer version.
        let cuda: Vec<String> = repo.versions("cuda").unwrap().keys().map(|v| v.to_string()).collect();
        assert_eq!(cuda, ["11.8"]);
        assert!(
            repo.get("cuda", &Version::parse("11.8").unwrap()).unwrap().sources[0].url.ends_with("/b.tar")
        );
        let hidden: Vec<String> = repo.hidden("cuda").iter().map(|r| r.version.to_string()).collect();
        assert_eq!(hidden, ["12.8", "10.0"]);
        // Names the higher repository does not define stay.
        assert!(repo.versions("python").is_some() && repo.hidden("python").is_empty());
        assert_eq!(repo.len(), 2);

        std::fs::write(a.path().join("dup.toml"), recipe("cuda", "10.0", "dup")).unwrap();
        let e = Repository::load_dir(a.path()).unwrap_err().to_string();
        assert!(e.contains("dup.toml") && e.contains("10.0.toml"), "{e}");
    }

    #[test]
    fn near_names_are_suggested() {
        let mut repo = Repository::default();
        for n in ["tensorflow", "torch", "cudnn", "cuda-cudart"] {
            repo.insert(Recipe::parse(&recipe(n, "1", n), Path::new("x")).unwrap(), false).unwrap();
        }
        assert_eq!(repo.suggest("tensorflw")[0].as_str(), "tensorflow");
        assert_eq!(repo.suggest("cudn")[0].as_str(), "cudnn");
        assert!(repo.suggest("zzzzzz").is_empty());
    }

    #[test]
    fn the_bundled_repository_parses() {
        Repository::bundled().unwrap();
    }
}
