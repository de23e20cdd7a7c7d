//! Python source distributions: how one builds (PEP 517's `[build-system]`), and whether building
//! it needs a compiler. envctl builds pure-Python sdists into wheels with the profile's
//! interpreter, as pip and uv do; one that compiles an extension is refused before anything runs,
//! naming the file that shows it.

use std::path::Path;

use serde::Deserialize;

/// How a source tree builds (its `pyproject.toml`'s `[build-system]`, or the legacy setuptools
/// default when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSystem {
    /// What the backend needs installed (PEP 508 requirements).
    pub requires: Vec<String>,
    /// `module:object` of the backend.
    pub backend: String,
    /// Directories of the tree put first on the backend's import path (`backend-path`).
    pub backend_path: Vec<String>,
}

#[derive(Deserialize)]
struct PyProject {
    #[serde(rename = "build-system")]
    build_system: Option<RawBuildSystem>,
}

#[derive(Deserialize)]
struct RawBuildSystem {
    #[serde(default)]
    requires: Option<Vec<String>>,
    #[serde(rename = "build-backend")]
    build_backend: Option<String>,
    #[serde(rename = "backend-path", default)]
    backend_path: Vec<String>,
}

/// What PEP 517 says a tree without `[build-system]` builds with.
const LEGACY_REQUIRES: &[&str] = &["setuptools>=40.8.0", "wheel"];
const LEGACY_BACKEND: &str = "setuptools.build_meta:__legacy__";

/// Backends that exist to compile: a tree built by one needs a compiler whatever its files say.
const COMPILING_BACKENDS: &[&str] =
    &["maturin", "mesonpy", "scikit_build_core", "setuptools_rust", "pybind11", "enscons", "py_build_cmake"];

/// Source files a C, C++, Cython, Fortran, CUDA or Rust compiler turns into an extension.
const COMPILED_SOURCES: &[&str] =
    &["c", "cc", "cpp", "cxx", "c++", "pyx", "pxd", "f", "f90", "f95", "for", "cu", "rs", "m", "mm"];

impl BuildSystem {
    /// Reads the unpacked source tree at `tree`: how it builds, or why it cannot be built here
    /// (no `pyproject.toml`, `setup.py` or `setup.cfg` at its top; a compiler needed).
    pub fn of_tree(tree: &Path) -> Result<BuildSystem, String> {
        let read = |name: &str| std::fs::read_to_string(tree.join(name)).ok();
        let build = BuildSystem::from_pyproject(read("pyproject.toml").as_deref(), "pyproject.toml")?;
        let files: Vec<String> = walkdir::WalkDir::new(tree)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| Some(e.path().strip_prefix(tree).ok()?.to_string_lossy().into_owned()))
            .collect();
        if !files.iter().any(|f| f == "pyproject.toml" || f == "setup.py" || f == "setup.cfg") {
            return Err("it has no pyproject.toml, setup.py or setup.cfg at its top".into());
        }
        match build.needs_compiler(files.iter().map(String::as_str), read("setup.py").as_deref()) {
            Some(why) => Err(format!("building it needs a compiler: {why}")),
            None => Ok(build),
        }
    }

    /// Reads `pyproject.toml`'s text (`None` when the tree has none). `origin` names it in errors.
    pub fn from_pyproject(text: Option<&str>, origin: &str) -> Result<BuildSystem, String> {
        let legacy = || BuildSystem {
            requires: LEGACY_REQUIRES.iter().map(|s| s.to_string()).collect(),
            backend: LEGACY_BACKEND.to_owned(),
            backend_path: Vec::new(),
        };
        let Some(text) = text else { return Ok(legacy()) };
        let parsed: PyProject = toml::from_str(text).map_err(|e| format!("cannot read `{origin}`: {e}"))?;
        let Some(raw) = parsed.build_system else { return Ok(legacy()) };
        let requires =
            raw.requires.unwrap_or_else(|| LEGACY_REQUIRES.iter().map(|s| s.to_string()).collect());
        for p in &raw.backend_path {
            if p.starts_with('/') || p.split('/').any(|c| c == "..") {
                return Err(format!("`{origin}`: backend-path `{p}` leaves the source tree"));
            }
        }
        Ok(BuildSystem {
            requires,
            backend: raw.build_backend.unwrap_or_else(|| LEGACY_BACKEND.to_owned()),
            backend_path: raw.backend_path,
        })
    }

    /// Why building a tree with these `files` (paths relative to its top) and `setup.py` text
    /// needs a compiler, or `None` when it is pure Python.
    pub fn needs_compiler<'a>(
        &self,
        files: impl IntoIterator<Item = &'a str>,
        setup_py: Option<&str>,
    ) -> Option<String> {
        let module = self.backend.split([':', '.']).next().unwrap_or_default();
        if COMPILING_BACKENDS.contains(&module) {
            return Some(format!("its build backend `{}` compiles extensions", self.backend));
        }
        for r in &self.requires {
            let name: String = r
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect::<String>()
                .to_ascii_lowercase()
                .replace('-', "_");
            if matches!(
                name.as_str(),
                "cython" | "cffi" | "pybind11" | "numpy" | "setuptools_rust" | "maturin"
            ) {
                return Some(format!("it needs `{r}` to build, which compiles an extension"));
            }
        }
        for f in files {
            let ext =
                Path::new(f).extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
            let in_tests = f.split('/').any(|c| matches!(c, "tests" | "test" | "docs" | "examples"));
            if COMPILED_SOURCES.contains(&ext.as_str()) && !in_tests {
                return Some(format!("it holds `{f}`, a source file for a compiler"));
            }
        }
        if let Some(setup) = setup_py {
            for word in ["ext_modules", "Extension(", "cythonize", "build_ext"] {
                if setup.contains(word) {
                    return Some(format!("its setup.py declares extension modules (`{word}`)"));
                }
            }
        }
        None
    }
}

/// Whether a file name is a source distribution's (`NAME-VERSION.tar.gz`, `.zip`, `.tar.bz2`).
pub fn is_sdist_file(file: &str) -> bool {
    !file.ends_with(".whl") && [".tar.gz", ".zip", ".tar.bz2", ".tgz"].iter().any(|e| file.ends_with(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_without_build_system_builds_with_legacy_setuptools() {
        let b = BuildSystem::from_pyproject(None, "pyproject.toml").unwrap();
        assert_eq!(b.backend, "setuptools.build_meta:__legacy__");
        assert_eq!(b.requires, ["setuptools>=40.8.0", "wheel"]);
        let b = BuildSystem::from_pyproject(Some("[tool.black]\nline-length = 99\n"), "p").unwrap();
        assert_eq!(b.backend, "setuptools.build_meta:__legacy__");
        let b = BuildSystem::from_pyproject(
            Some("[build-system]\nrequires = [\"flit_core>=3.2,<4\"]\nbuild-backend = \"flit_core.buildapi\"\n"),
            "p",
        )
        .unwrap();
        assert_eq!((b.backend.as_str(), b.requires.len()), ("flit_core.buildapi", 1));
        let e = BuildSystem::from_pyproject(
            Some("[build-system]\nbackend-path = [\"../x\"]\n"),
            "gast/pyproject.toml",
        )
        .unwrap_err();
        assert!(e.contains("gast/pyproject.toml") && e.contains("leaves"), "{e}");
    }

    #[test]
    fn compiled_extensions_are_found_by_their_sources_setup_or_backend() {
        let legacy = BuildSystem::from_pyproject(None, "p").unwrap();
        let pure = ["setup.py", "gast/__init__.py", "gast/gast.py", "PKG-INFO", "tests/helper.c"];
        assert_eq!(legacy.needs_compiler(pure, Some("setup(name='gast', packages=['gast'])")), None);
        let why = legacy.needs_compiler(["setup.py", "src/_speedups.c"], None).unwrap();
        assert!(why.contains("src/_speedups.c"), "{why}");
        let why = legacy
            .needs_compiler(["setup.py"], Some("setup(ext_modules=[Extension('x', ['x.c'])])"))
            .unwrap();
        assert!(why.contains("ext_modules"), "{why}");
        let maturin = BuildSystem::from_pyproject(
            Some("[build-system]\nrequires = [\"maturin>=1\"]\nbuild-backend = \"maturin\"\n"),
            "p",
        )
        .unwrap();
        assert!(maturin.needs_compiler(["pyproject.toml"], None).unwrap().contains("maturin"));
        let cython = BuildSystem::from_pyproject(
            Some("[build-system]\nrequires = [\"setuptools\", \"Cython>=3\"]\n"),
            "p",
        )
        .unwrap();
        assert!(cython.needs_compiler(["setup.py"], None).unwrap().contains("Cython>=3"));
        assert!(is_sdist_file("gast-0.2.2.tar.gz") && !is_sdist_file("gast-0.5.0-py3-none-any.whl"));
    }
}
