//! The Python layer's derived store paths, made from other store paths rather than fetched and
//! keyed by what they are made from (the store registers, names and repairs them; see
//! `envctl_store::Layer`):
//!
//! - [`Derivation::Bytecode`]: a wheel's `site-packages` as one interpreter sees it: its
//!   directories, a relative symlink to each of its files, and `__pycache__/*.pyc` compiled by that
//!   interpreter. A profile links this tree's package directories whole; the wheel's files stay
//!   stored once, shared by every Python that uses them. The `.pyc` files are
//!   PEP 552's unchecked-hash kind, compiled with a relative file name in a fixed order (see
//!   `bytecode.rs`), so the tree hash does not depend on when or where they were made; sessions
//!   never write any (the store is read-only and each source already has its `.pyc`).
//! - [`Derivation::Venv`]: a `pyvenv.cfg` naming an interpreter, which makes a profile's
//!   `bin/python3` a virtual environment over the profile (`site-packages`, `.pth` files and all),
//!   as uv's and venv's are; with the launchers a venv has (`bin/python`), and `bin/pip` that
//!   says the profile is read-only and what to run instead, where the interpreter has none.
//!
//! - [`Derivation::Build`]: a pure-Python source distribution built into a wheel by its PEP 517
//!   backend, run by the profile's interpreter with the backend's wheels on its import path (no
//!   network, no user site, `SOURCE_DATE_EPOCH` fixed), then installed as any wheel is. The tree
//!   is keyed by the sdist's store path (itself named by the sdist's sha256), the interpreter and
//!   the backend's paths, so the same inputs give the same wheel, made once.
//!
//! Each is registered under its [`Derivation::key`] and refers to the paths it was made from (GC
//! keeps them), and `verify --repair` makes it again from the key. Built wheels and bytecode travel
//! between machines (binary caches, exports): a backend may not build the same tree twice, and a
//! node that takes the built wheel from a cache runs no build code at all; bytecode is the same
//! bytes everywhere, and a node that takes it from a cache compiles nothing (compiling was
//! 38% of the PyTorch stack's cold apply's CPU). A `pyvenv.cfg` is a few bytes: each node
//! writes its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use envctl_store::{Error, Host, Job, Name, Result, StorePathName, Version};

use crate::bytecode::Unit;

/// Something envctl makes from store paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derivation {
    /// `wheel`'s `site-packages` compiled by the interpreter at `python`/`exe`.
    Bytecode {
        /// The wheel's store path.
        wheel: StorePathName,
        /// The interpreter's store path.
        python: StorePathName,
        /// The interpreter inside it (`bin/python3.11`).
        exe: String,
        /// Its `X.Y`.
        version: String,
    },
    /// The source tree `sdist` built into a wheel by `backend` (`module:object`), run by the
    /// interpreter at `python`/`exe` with each of `requires`' `site-packages` on its import path,
    /// and `backend_path` (directories of the tree) before them.
    Build {
        /// The unpacked source distribution's store path.
        sdist: StorePathName,
        /// The interpreter's store path.
        python: StorePathName,
        /// The interpreter inside it (`bin/python3.7`).
        exe: String,
        /// The build backend, `module:object`.
        backend: String,
        /// The tree's own directories the backend is imported from (pyproject's `backend-path`).
        backend_path: Vec<String>,
        /// Store paths of the wheels the backend needs.
        requires: Vec<StorePathName>,
    },
    /// A `pyvenv.cfg` for the interpreter at `python`/`exe`.
    Venv {
        /// The interpreter's store path.
        python: StorePathName,
        /// The interpreter inside it (`bin/python3.11`).
        exe: String,
        /// Its full version (`3.11.9`).
        version: String,
        /// With `bin/python` and the read-only `bin/pip`s (trees made before these existed have
        /// none, under a key without the word).
        launchers: bool,
    },
}

impl Derivation {
    /// The key it is registered under.
    pub fn key(&self) -> String {
        match self {
            Derivation::Bytecode { wheel, python, exe, version } => {
                format!("derived:bytecode {wheel} {python} {exe} {version}")
            }
            Derivation::Venv { python, exe, version, launchers: false } => {
                format!("derived:venv {python} {exe} {version}")
            }
            Derivation::Venv { python, exe, version, launchers: true } => {
                format!("derived:venv {python} {exe} {version} launchers")
            }
            Derivation::Build { sdist, python, exe, backend, backend_path, requires } => {
                let path = if backend_path.is_empty() { "-".to_owned() } else { backend_path.join(",") };
                let requires: Vec<&str> = requires.iter().map(|r| r.as_str()).collect();
                format!("derived:build {sdist} {python} {exe} {backend} {path} {}", requires.join(" "))
                    .trim_end()
                    .to_owned()
            }
        }
    }

    /// The derivation a key names (see [`Derivation::key`]).
    pub fn from_key(key: &str) -> Option<Derivation> {
        let rest = key.strip_prefix("derived:")?;
        let parts: Vec<&str> = rest.split(' ').collect();
        match parts.as_slice() {
            ["bytecode", wheel, python, exe, version] => Some(Derivation::Bytecode {
                wheel: StorePathName::parse(wheel).ok()?,
                python: StorePathName::parse(python).ok()?,
                exe: (*exe).to_owned(),
                version: (*version).to_owned(),
            }),
            ["venv", python, exe, version, launchers @ ..] => Some(Derivation::Venv {
                python: StorePathName::parse(python).ok()?,
                exe: (*exe).to_owned(),
                version: (*version).to_owned(),
                launchers: match launchers {
                    [] => false,
                    ["launchers"] => true,
                    _ => return None,
                },
            }),
            ["build", sdist, python, exe, backend, path, requires @ ..] => Some(Derivation::Build {
                sdist: StorePathName::parse(sdist).ok()?,
                python: StorePathName::parse(python).ok()?,
                exe: (*exe).to_owned(),
                backend: (*backend).to_owned(),
                backend_path: match *path {
                    "-" => Vec::new(),
                    p => p.split(',').map(str::to_owned).collect(),
                },
                requires: requires.iter().map(|r| StorePathName::parse(r).ok()).collect::<Option<_>>()?,
            }),
            _ => None,
        }
    }

    /// The store paths it is made from.
    pub fn inputs(&self) -> Vec<&StorePathName> {
        match self {
            Derivation::Bytecode { wheel, python, .. } => vec![wheel, python],
            Derivation::Venv { python, .. } => vec![python],
            Derivation::Build { sdist, python, requires, .. } => {
                [sdist, python].into_iter().chain(requires.iter()).collect()
            }
        }
    }

    /// Package name and version of the store path.
    fn label(&self, store: &dyn Host) -> Result<(Name, Version)> {
        match self {
            Derivation::Bytecode { wheel, version, .. } => {
                let package =
                    store.record(wheel.as_str())?.map(|r| r.package).unwrap_or_else(|| "wheel".into());
                Ok((Name::parse(&format!("{package}-bytecode"))?, Version::parse(&format!("py{version}"))?))
            }
            Derivation::Venv { version, .. } => Ok((Name::parse("python-venv")?, Version::parse(version)?)),
            Derivation::Build { sdist, .. } => {
                let record =
                    store.record(sdist.as_str())?.ok_or_else(|| Error::NotInStore(sdist.to_string()))?;
                Ok((Name::parse(&format!("{}-wheel", record.package))?, Version::parse(&record.version)?))
            }
        }
    }
}

impl Derivation {
    /// The store's form of it: its key, inputs, and the name and version its path gets.
    pub fn to_store(&self, store: &dyn Host) -> Result<envctl_store::Derivation> {
        let (name, version) = self.label(store)?;
        Ok(envctl_store::Derivation {
            key: self.key(),
            inputs: self.inputs().into_iter().cloned().collect(),
            name,
            version,
            travels: matches!(self, Derivation::Build { .. } | Derivation::Bytecode { .. }),
        })
    }
}

/// Writes what each job starts from, running nothing (see [`envctl_store::Layer::prepare`]): a
/// venv whole, a build's writable copy of its source tree, a wheel's mirrored `site-packages`.
pub(crate) fn prepare(store: &dyn Host, jobs: &[Job<'_>]) -> Result<()> {
    for job in jobs {
        let tree = job.tree;
        match parse(job)? {
            Derivation::Venv { python, exe, version, launchers } => {
                let bin = store.dir().join(python.as_str()).join(&exe);
                let home = bin.parent().unwrap_or(&bin).to_path_buf();
                let text = format!(
                    "home = {}\ninclude-system-site-packages = false\nversion = {version}\n",
                    home.display()
                );
                let mut f = fs_err::File::create(tree.join("pyvenv.cfg"))?;
                f.write_all(text.as_bytes())?;
                if launchers {
                    write_launchers(&home, &exe, tree)?;
                }
            }
            Derivation::Build { sdist, .. } => {
                for dir in ["src", "dist", "home"] {
                    fs_err::create_dir(job.work.join(dir))?;
                }
                copy_tree(&store.dir().join(sdist.as_str()), &job.work.join("src"))?;
            }
            Derivation::Bytecode { wheel, python, exe, .. } => {
                fs_err::create_dir(tree.join("site-packages"))?;
                bytecode_unit(store, tree, &wheel, &python, &exe, true)?;
            }
        }
    }
    Ok(())
}

/// Runs what makes each prepared job's tree (see [`envctl_store::Layer::build`]): build
/// backends one after the other, then the bytecode of every wheel side by side.
pub(crate) fn build(store: &dyn Host, jobs: &[Job<'_>]) -> Result<()> {
    // One unit per wheel: what else is compiled beside it must not change its bytecode.
    let mut units = Vec::new();
    for job in jobs {
        let tree = job.tree;
        match parse(job)? {
            Derivation::Venv { .. } => {}
            Derivation::Build { sdist, python, exe, backend, backend_path, requires } => {
                let started = std::time::Instant::now();
                let python_path: Vec<PathBuf> =
                    requires.iter().map(|r| store.dir().join(r.as_str()).join("site-packages")).collect();
                let exe = store.dir().join(python.as_str()).join(&exe);
                let record =
                    store.record(sdist.as_str())?.ok_or_else(|| Error::NotInStore(sdist.to_string()))?;
                let expected = (record.package.as_str(), record.version.as_str());
                let backend = (backend.as_str(), backend_path.as_slice());
                build_wheel(store, job.work, &exe, backend, &python_path, tree, expected)?;
                tracing::info!(sdist = %sdist, elapsed = ?started.elapsed(), "built a wheel from source");
            }
            Derivation::Bytecode { wheel, python, exe, .. } => {
                let unit = bytecode_unit(store, tree, &wheel, &python, &exe, false)?;
                units.push((unit, job.work.to_path_buf()));
            }
        }
    }
    crate::bytecode::compile(store, units)
}

fn parse(job: &Job<'_>) -> Result<Derivation> {
    let key = &job.derivation.key;
    Derivation::from_key(key).ok_or_else(|| Error::Build(format!("not a Python derivation: `{key}`")))
}

/// The compile job of a wheel's bytecode tree at `tree`: each `.py` file of the wheel's
/// `site-packages`; with `write`, the tree's mirror of it is made too (see [`mirror`]).
fn bytecode_unit(
    store: &dyn Host,
    tree: &Path,
    wheel: &StorePathName,
    python: &StorePathName,
    exe: &str,
    write: bool,
) -> Result<Unit> {
    let site = store.dir().join(wheel.as_str()).join("site-packages");
    let mut unit = Unit::new(store.dir().join(python.as_str()).join(exe), tree.to_path_buf());
    if site.is_dir() {
        mirror(&site, &tree.join("site-packages"), Path::new("site-packages"), &mut unit, write)?;
    }
    Ok(unit)
}

/// Runs a PEP 517 backend's `build_wheel`: the tree is the script's first argument (the
/// backend imports and runs there), the wheel lands in the second.
const BUILD: &str = r#"
import importlib, os, sys
src, out, spec = sys.argv[1:4]
sys.path[:0] = [os.path.join(src, p) for p in sys.argv[4:]]
os.chdir(src)
module, _, attr = spec.partition(":")
backend = importlib.import_module(module)
for part in filter(None, attr.split(".")):
    backend = getattr(backend, part)
print(backend.build_wheel(out))
"#;

/// Builds the source tree copied into `work/src` into a wheel with `exe` and installs the wheel into `tree`
/// (see [`Derivation::Build`]). The backend runs in the store's sandbox (the store's `sandbox.rs`: no
/// network, everything but its work directory read-only, nothing of it left running after it),
/// on a writable copy of the tree, with no inherited environment and a fixed `SOURCE_DATE_EPOCH`
/// so that what it stamps does not depend on the day.
#[allow(clippy::too_many_arguments)]
fn build_wheel(
    store: &dyn Host,
    work: &Path,
    exe: &Path,
    (backend, backend_path): (&str, &[String]),
    python_path: &[PathBuf],
    tree: &Path,
    expected: (&str, &str),
) -> Result<()> {
    // Made by `prepare`: the source tree's copy, where the wheel lands, the backend's home.
    let (src, dist, home) = (work.join("src"), work.join("dist"), work.join("home"));
    let joined = std::env::join_paths(python_path).map_err(std::io::Error::other)?;
    let mut command = Command::new(exe);
    command
        .args(["-B", "-c", BUILD])
        .arg(&src)
        .arg(&dist)
        .arg(backend)
        .args(backend_path)
        .current_dir(&src)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("TMPDIR", &home)
        .env("LC_ALL", "C.UTF-8")
        .env("PYTHONPATH", joined)
        .env("PYTHONNOUSERSITE", "1")
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SOURCE_DATE_EPOCH", "315532800")
        .env("PIP_NO_INDEX", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = store
        .run_confined(&mut command, work)
        .map_err(|e| Error::Build(format!("cannot run `{}`: {e}", exe.display())))?;
    let tail = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    if !out.status.success() {
        return Err(Error::Build(format!(
            "the build backend `{backend}` failed ({}):\n{}",
            out.status,
            tail(&out.stderr)
        )));
    }
    let wheels: Vec<PathBuf> = fs_err::read_dir(&dist)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    let [wheel] = wheels.as_slice() else {
        return Err(Error::Build(format!(
            "the build backend `{backend}` made {} wheels, not one",
            wheels.len()
        )));
    };
    let name = wheel.file_name().unwrap_or_default().to_string_lossy().into_owned();
    if !name.contains("-none-any.whl") {
        return Err(Error::Build(format!(
            "the build backend `{backend}` made `{name}`, a wheel for one platform: it compiled something"
        )));
    }
    crate::wheel::unpack_wheel(
        fs_err::File::open(wheel)?.into(),
        tree,
        &name,
        envctl_store::Limits::default(),
        Some(expected),
    )?;
    Ok(())
}

/// Copies the directory tree at `from` into the existing directory `to`, writable.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(from).min_depth(1) {
        let entry = entry.map_err(std::io::Error::other)?;
        let dest = to.join(entry.path().strip_prefix(from).unwrap_or(entry.path()));
        let ft = entry.file_type();
        if ft.is_dir() {
            fs_err::create_dir(&dest)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(entry.path())?, &dest)?;
        } else {
            fs_err::copy(entry.path(), &dest)?;
            use std::os::unix::fs::PermissionsExt;
            fs_err::set_permissions(&dest, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// Compiles an interpreter package's own `lib/pythonX.Y` (unpacked at `tree`, not yet in the
/// store) with the interpreter it ships, in place (the store gives the tree its modes after). The `.pyc` files are unchecked-hash ones: the store's normalized mtimes
/// would make the timestamp kind stale, and Python would compile the standard library again in
/// every session (and, run by root, write it into the store). A tree without `bin/python3`
/// or `lib/python3.*` is left as it is.
pub(crate) fn compile_interpreter(store: &dyn Host, tree: &Path) -> Result<()> {
    let exe = tree.join("bin/python3");
    let lib = fs_err::read_dir(tree.join("lib")).ok().and_then(|rd| {
        rd.flatten().map(|e| e.path()).find(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("python3"))
                && p.join("os.py").is_file()
        })
    });
    if let (true, Some(lib)) = (exe.exists(), lib) {
        // The unpacked tree is read-only like a store path: open its directories for the compiler.
        make_writable(&lib)?;
        let rel = lib.strip_prefix(tree).unwrap_or(&lib).to_path_buf();
        let mut unit = Unit::new(exe, tree.to_path_buf());
        unit.add_sources(&lib, &rel)?;
        // The work directory the tree was unpacked in is the compiler's to write.
        let work = tree.parent().unwrap_or(tree).to_path_buf();
        crate::bytecode::compile(store, vec![(unit, work)])?;
    }
    Ok(())
}

fn make_writable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_writable(&entry.path())?;
        }
    }
    Ok(())
}

/// Mirrors the wheel's `site-packages` at `src` into `dest`: a real directory for each of its
/// directories, a relative symlink for each of its files, except its own `__pycache__`
/// (compiled against mtimes the store does not keep); and a compile job for each `.py` file,
/// its bytecode written beside the links. A profile then links whole package directories of this
/// tree instead of merging the wheel's tree with its bytecode file by file. Without `write`, only
/// the compile jobs.
fn mirror(src: &Path, dest: &Path, rel: &Path, unit: &mut Unit, write: bool) -> Result<()> {
    for entry in fs_err::read_dir(src)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let name = entry.file_name();
        let (from, to, sub) = (entry.path(), dest.join(&name), rel.join(&name));
        if ft.is_dir() {
            if name == "__pycache__" {
                continue;
            }
            if write {
                fs_err::create_dir(&to)?;
            }
            mirror(&from, &to, &sub, unit, write)?;
            continue;
        }
        // Relative, through the store directory: the tree hash must not depend on where the
        // store is. `rel` is `site-packages/…`, the same in both trees.
        let up = "../".repeat(rel.components().count() + 1);
        let wheel =
            src.ancestors().nth(rel.components().count()).and_then(Path::file_name).unwrap_or_default();
        let target = Path::new(&up).join(wheel).join(&sub);
        if write {
            std::os::unix::fs::symlink(&target, &to)
                .map_err(|e| std::io::Error::new(e.kind(), format!("cannot link `{}`: {e}", to.display())))?;
        }
        if ft.is_file() && sub.extension().is_some_and(|e| e == "py") {
            unit.add(from, sub);
        }
    }
    Ok(())
}

/// What `pip` in a profile says: a profile is read-only, and how to add a package to it.
const PIP_SAYS: &str = r#"#!/bin/sh
echo 'pip: this Python is an envctl profile, which is read-only: nothing was installed or changed.' >&2
echo 'hint: add the package to the profile instead: `envctl add NAME` (or edit the profile file, then `envctl apply FILE`)' >&2
echo 'hint: `envctl list` lists what the profile has' >&2
exit 1
"#;

/// A venv's launchers in `tree/bin`, for the interpreter `exe` (`bin/python3.11`) whose `bin/` is
/// `home`: `python` (a link to the interpreter's `python3`, as venv makes one) and `pip`, `pip3`, `pip3.X` saying
/// the profile is read-only. Each only where the interpreter's own `bin/` has none, so the two
/// never collide in a profile.
fn write_launchers(home: &Path, exe: &str, tree: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bin = tree.join("bin");
    fs_err::create_dir(&bin)?;
    let has = |name: &str| std::fs::symlink_metadata(home.join(name)).is_ok();
    // To the interpreter's own `python3` (a relative link would resolve inside this tree): run
    // as the profile's `bin/python`, it finds the profile's pyvenv.cfg as `bin/python3` does.
    if !has("python") && has("python3") {
        fs_err::os::unix::fs::symlink(home.join("python3"), bin.join("python"))?;
    }
    let series = Path::new(exe).file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("python"));
    let mut pips = vec!["pip".to_owned(), "pip3".to_owned()];
    pips.extend(series.filter(|s| s.contains('.')).map(|s| format!("pip{s}")));
    for pip in pips.iter().filter(|p| !has(p)) {
        fs_err::write(bin.join(pip), PIP_SAYS)?;
        fs_err::set_permissions(bin.join(pip), std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A derivation's key is its source key in the database: respelling it would make every
    /// store compile and build everything again, and lose what caches carry.
    #[test]
    fn golden_derivation_keys_are_pinned() {
        let path = |n: &str| StorePathName::parse(&format!("{}-{n}", "0".repeat(32))).unwrap();
        let zeros = "0".repeat(32);
        let bytecode = Derivation::Bytecode {
            wheel: path("greeter-1.0"),
            python: path("python-3.11.9"),
            exe: "bin/python3.11".into(),
            version: "3.11".into(),
        };
        assert_eq!(
            bytecode.key(),
            format!("derived:bytecode {zeros}-greeter-1.0 {zeros}-python-3.11.9 bin/python3.11 3.11")
        );
        let mut venv = Derivation::Venv {
            python: path("python-3.11.9"),
            exe: "bin/python3.11".into(),
            version: "3.11.9".into(),
            launchers: false,
        };
        assert_eq!(venv.key(), format!("derived:venv {zeros}-python-3.11.9 bin/python3.11 3.11.9"));
        assert_eq!(Derivation::from_key(&venv.key()), Some(venv.clone()));
        let Derivation::Venv { launchers, .. } = &mut venv else { unreachable!() };
        *launchers = true;
        assert_eq!(venv.key(), format!("derived:venv {zeros}-python-3.11.9 bin/python3.11 3.11.9 launchers"));
        assert_eq!(Derivation::from_key(&venv.key()), Some(venv.clone()));
        let build = Derivation::Build {
            sdist: path("gast-0.2.2"),
            python: path("python-3.7.9"),
            exe: "bin/python3.7".into(),
            backend: "setuptools.build_meta:__legacy__".into(),
            backend_path: vec!["_build".into(), "tools".into()],
            requires: vec![path("setuptools-68.0.0"), path("wheel-0.41.2")],
        };
        assert_eq!(
            build.key(),
            format!(
                "derived:build {zeros}-gast-0.2.2 {zeros}-python-3.7.9 bin/python3.7 setuptools.build_meta:__legacy__ _build,tools {zeros}-setuptools-68.0.0 {zeros}-wheel-0.41.2"
            )
        );
        for d in [bytecode, venv, build] {
            assert_eq!(Derivation::from_key(&d.key()), Some(d));
        }
    }
}
