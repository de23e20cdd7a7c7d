//! A Python installed in the store as a profile's interpreter: where its executable is, its
//! `X.Y` series and the `site-packages` a profile mounts wheels at, and the derivations a
//! profile's Python layer asks of it (a `pyvenv.cfg`, a wheel's bytecode, a wheel built from a
//! source distribution).

use std::path::Path;

use envctl_core::StorePathName;

use crate::{BuildSystem, Derivation};

/// A Python in the store, found by [`Installed::find`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Its store path.
    pub path: StorePathName,
    /// The interpreter inside it (`bin/python3.11`, else `bin/python3`).
    pub exe: String,
    /// Its full version (`3.11.9`).
    pub version: String,
    /// Its `X.Y`.
    pub series: String,
}

impl Installed {
    /// The Python of `version` at store path `name` under `store_dir`. The error says why it
    /// cannot be used: a version without a minor number, or a tree with no interpreter.
    pub fn find(store_dir: &Path, name: &str, version: &str) -> Result<Installed, String> {
        let path = StorePathName::parse(name).map_err(|e| e.to_string())?;
        let parts: Vec<&str> = version.split(['.', '+']).collect();
        let series = match parts.as_slice() {
            [major, minor, ..] => format!("{major}.{minor}"),
            _ => return Err(format!("its version `{version}` has no minor number")),
        };
        let root = store_dir.join(name);
        let exe = [format!("bin/python{series}"), "bin/python3".to_owned()]
            .into_iter()
            .find(|e| root.join(e).is_file())
            .ok_or_else(|| {
                format!("`{}` has neither `bin/python{series}` nor `bin/python3`", root.display())
            })?;
        Ok(Installed { path, exe, version: version.to_owned(), series })
    }

    /// Where a profile mounts its wheels' `site-packages`: `lib/pythonX.Y/site-packages`.
    pub fn site_packages(&self) -> String {
        format!("lib/python{}/site-packages", self.series)
    }

    /// The `pyvenv.cfg` (and launchers) that make a profile's `bin/python3` a virtual
    /// environment over the profile.
    pub fn venv(&self) -> Derivation {
        Derivation::Venv {
            python: self.path.clone(),
            exe: self.exe.clone(),
            version: self.version.clone(),
            launchers: true,
        }
    }

    /// The wheel at store path `wheel`, its modules compiled by this Python.
    pub fn bytecode(&self, wheel: StorePathName) -> Derivation {
        Derivation::Bytecode {
            wheel,
            python: self.path.clone(),
            exe: self.exe.clone(),
            version: self.series.clone(),
        }
    }

    /// The source tree at `sdist` built into a wheel by this Python, with the backend `build`
    /// names and the wheels `requires` on its import path.
    pub fn build(
        &self,
        sdist: StorePathName,
        build: BuildSystem,
        requires: Vec<StorePathName>,
    ) -> Derivation {
        Derivation::Build {
            sdist,
            python: self.path.clone(),
            exe: self.exe.clone(),
            backend: build.backend,
            backend_path: build.backend_path,
            requires,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "0123456789abcdfghijklmnpqrsvwxyz-python-3.11.9";

    #[test]
    fn finds_the_series_interpreter_then_python3_and_refuses_a_tree_without_either() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join(NAME).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let err = Installed::find(dir.path(), NAME, "3.11.9").unwrap_err();
        assert!(err.contains("has neither `bin/python3.11` nor `bin/python3`"), "{err}");

        std::fs::write(bin.join("python3"), "").unwrap();
        let found = Installed::find(dir.path(), NAME, "3.11.9").unwrap();
        assert_eq!((found.exe.as_str(), found.series.as_str()), ("bin/python3", "3.11"));
        std::fs::write(bin.join("python3.11"), "").unwrap();
        let found = Installed::find(dir.path(), NAME, "3.11.9").unwrap();
        assert_eq!(found.exe, "bin/python3.11");
        assert_eq!(found.site_packages(), "lib/python3.11/site-packages");

        let err = Installed::find(dir.path(), NAME, "3").unwrap_err();
        assert!(err.contains("has no minor number"), "{err}");
    }
}
