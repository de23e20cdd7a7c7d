//! A home, a configuration and a recipe repository on disk, for the ops layer's tests.

use std::path::Path;

use envctl_ops::{Invocation, Settings};
use envctl_testkit::{Archive, Entry, sha256_hex};

/// A recipe: its name, version and dependencies (`name = "requirement"` lines).
pub struct Package<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub depends: &'a [(&'a str, &'a str)],
}

/// Version 1.0 of each name, with no dependencies.
#[allow(dead_code)] // each test file uses what it needs
pub fn setup(dir: &Path, names: &[&str]) -> Settings {
    let packages: Vec<Package> =
        names.iter().map(|name| Package { name, version: "1.0", depends: &[] }).collect();
    setup_packages(dir, &packages)
}

/// A home, a configuration, and a recipe repository of `packages` (one file each, archives on
/// disk).
pub fn setup_packages(dir: &Path, packages: &[Package]) -> Settings {
    let repo = dir.join("recipes");
    std::fs::create_dir_all(&repo).unwrap();
    for p in packages {
        let (name, version) = (p.name, p.version);
        let bytes =
            Archive::new().with(Entry::file(&format!("bin/{name}"), format!("{name} {version}\n"))).tar_gz();
        let archive = dir.join(format!("{name}-{version}.tar.gz"));
        std::fs::write(&archive, &bytes).unwrap();
        let depends: String = p.depends.iter().map(|(d, req)| format!("{d} = \"{req}\"\n")).collect();
        let depends = if depends.is_empty() { String::new() } else { format!("[dependencies]\n{depends}") };
        std::fs::write(
            repo.join(format!("{name}-{version}.toml")),
            format!(
                "name = \"{name}\"\nversion = \"{version}\"\n{depends}[[source]]\nurl = \"file://{}\"\nsha256 = \"{}\"\n",
                archive.display(),
                sha256_hex(&bytes)
            ),
        )
        .unwrap();
    }
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("recipes = [\"{}\"]\n", repo.display())).unwrap();
    let invocation = Invocation { home: Some(dir.join("home")), config: Some(config), ..Default::default() };
    Settings::load(&invocation).unwrap()
}
