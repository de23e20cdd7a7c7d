//! The Python layer of a generation: wheels mounted at the profile Python's `site-packages`,
//! their bytecode compiled by that Python, and a `pyvenv.cfg` that makes the profile's
//! `bin/python3` a virtual environment over the profile.
//!
//! A wheel's store path does not depend on the Python version (see envctl-python's `wheel.rs`). For
//! the profile's Python (the package named `python`) a derived path mirrors the wheel's
//! `site-packages` with bytecode compiled (see envctl-python's `derive.rs`); the farm puts that at
//! `lib/pythonX.Y/site-packages`, and the rest of the wheel (`bin/`, `include/`, data) where it is.
//!
//! What is Python here is envctl-python's: where an installed interpreter is and which
//! derivations it makes ([`envctl_python::Installed`]), how a source tree builds
//! ([`envctl_python::BuildSystem`]). This module reads the lock: which packages are wheels or
//! source distributions, their priorities, the build the lock recorded.

use std::collections::BTreeMap;
use std::path::Path;

use envctl_python::{BuildSystem, Derivation, Installed};
use envctl_recipes::{Built, LockFile, LockedPackage};
use envctl_store::{FarmInput, Installer, StorePathName};

use crate::error::{Failure, Result, StoreContext};

/// Whether a locked package is a wheel installed by its own layout (the store decides).
pub fn is_wheel(p: &LockedPackage) -> bool {
    crate::request::install_request(p).is_some_and(|r| r.unpack.installs_as_wheel(&r.url))
}

/// The profile's Python (the package named `python`), installed.
fn interpreter(store_dir: &Path, lock: &LockFile) -> Result<Option<Installed>> {
    let Some(python) = lock.get("python") else { return Ok(None) };
    let name = python.store_path.as_deref().unwrap_or_default();
    Installed::find(store_dir, name, &python.version).map(Some).map_err(|why| {
        Failure::new(format!("cannot use python {} as the profile's Python", python.version), why)
    })
}

/// Adds the Python layer to `inputs` (one per locked package, in lock order): remaps each
/// wheel's `site-packages`, and appends the bytecode and `pyvenv.cfg` paths, made as needed.
/// Sessions still get `PYTHONPATH` (DESIGN.md), naming the same `site-packages`; the virtual
/// environment is what runs their `.pth` files and sets `sys.prefix`.
///
/// A wheel built from a source distribution is checked against the lock's `built` record: the
/// first build is recorded there, and a later one (here or on another machine) that gives another
/// tree is refused, naming both; `lock_path` names the lock in that message.
pub fn add_layer(
    installer: &Installer,
    store_dir: &Path,
    lock: &mut LockFile,
    lock_path: &Path,
    inputs: &mut Vec<FarmInput>,
) -> Result<()> {
    let mut built: BTreeMap<usize, String> = BTreeMap::new();
    let sdists: Vec<usize> =
        (0..lock.packages.len()).filter(|&i| crate::request::is_sdist(&lock.packages[i])).collect();
    let mut wheels: Vec<usize> = (0..lock.packages.len()).filter(|&i| is_wheel(&lock.packages[i])).collect();
    let Some(python) = interpreter(store_dir, lock)? else {
        if let Some(&i) = wheels.first().or(sdists.first()) {
            let p = &lock.packages[i];
            return Err(Failure::new(
                format!("cannot install {} {}", p.name, p.version),
                "it is a Python wheel and the profile has no package named `python`",
            )
            .hint("add `python = \"3.11\"` (or the version it needs) to the profile's [packages]"));
        }
        return Ok(());
    };
    // Source distributions become wheels first; from then on each is a wheel like the others.
    if !sdists.is_empty() {
        let builds =
            sdists.iter().map(|&i| build_of(store_dir, lock, i, &python)).collect::<Result<Vec<_>>>()?;
        let promised: Vec<Option<StorePathName>> = sdists
            .iter()
            .map(|&i| lock.packages[i].built.as_ref().and_then(|b| StorePathName::parse(&b.store_path).ok()))
            .collect();
        let made_all = installer.derive_all_expecting(&for_store(installer, &builds)?, &promised);
        for ((made, &i), build) in made_all.into_iter().zip(&sdists).zip(&builds) {
            let p = &lock.packages[i];
            let made = made.map_err(|e| {
                Failure::new(
                    format!(
                        "cannot build {} {} from source with python {}",
                        p.name, p.version, python.version
                    ),
                    e,
                )
                .hint(format!("the build was `{}`", build.key()))
            })?;
            check_built(&mut lock.packages[i], &made.record, lock_path)?;
            inputs[i].path = made.path.clone();
            built.insert(i, made.record.name.clone());
        }
        wheels.extend(&sdists);
        wheels.sort();
    }
    let remap: BTreeMap<String, String> = [("site-packages".to_owned(), python.site_packages())].into();
    let mut derivations = vec![python.venv()];
    // The wheel's own site-packages is left out: its bytecode path mirrors it, links and all.
    let hidden: BTreeMap<String, String> = [("site-packages".to_owned(), String::new())].into();
    for &i in &wheels {
        inputs[i].remap = hidden.clone();
        let wheel = built.get(&i).map(String::as_str);
        let wheel = wheel.unwrap_or(lock.packages[i].store_path.as_deref().unwrap_or_default());
        let wheel = StorePathName::parse(wheel).map_err(|e| Failure::new("cannot compile bytecode", e))?;
        derivations.push(python.bytecode(wheel));
    }
    // Bytecode a binary cache has is taken from it rather than compiled again.
    let results = installer.derive_all_expecting(&for_store(installer, &derivations)?, &[]);
    let names = std::iter::once("python (pyvenv.cfg)".to_owned())
        .chain(wheels.iter().map(|&i| lock.packages[i].name.clone()));
    // A wheel's priority carries over to its site-packages. The venv's launchers give way to
    // anything a package ships (the `pip` wheel's own `bin/pip`).
    let owners: Vec<i64> =
        std::iter::once(i64::MIN).chain(wheels.iter().map(|&i| inputs[i].priority)).collect();
    for (((made, derivation), name), owner) in results.into_iter().zip(&derivations).zip(names).zip(owners) {
        let made = made.context(|| match derivation {
            Derivation::Venv { .. } => "cannot make the profile's pyvenv.cfg".to_owned(),
            _ => format!("cannot compile {name} for python {}", python.version),
        })?;
        inputs.push(FarmInput {
            name,
            path: made.path,
            priority: owner,
            remap: if matches!(derivation, Derivation::Venv { .. }) {
                BTreeMap::new()
            } else {
                remap.clone()
            },
            real_dirs: Vec::new(),
        });
    }
    Ok(())
}

/// The store's form of each derivation (its key, inputs, name and version).
fn for_store(installer: &Installer, derivations: &[Derivation]) -> Result<Vec<envctl_store::Derivation>> {
    derivations
        .iter()
        .map(|d| d.to_store(installer.store()).context(|| format!("cannot prepare `{}`", d.key())))
        .collect()
}

/// Records the wheel `p` was built into, or refuses one that is not the wheel the lock records.
fn check_built(p: &mut LockedPackage, made: &envctl_store::PathRecord, lock_path: &Path) -> Result<()> {
    match &p.built {
        Some(promised) if promised.tree_hash != made.tree_hash => Err(Failure::new(
            format!("refusing the lock `{}`", lock_path.display()),
            format!(
                "package `{} {}` was built from source into tree `{}` (`{}`); the lock says `{}` (`{}`), the build it first recorded",
                p.name, p.version, made.tree_hash, made.name, promised.tree_hash, promised.store_path
            ),
        )
        .hint("its build does not give the same tree twice (a backend that stamps the time or the machine into the wheel)")
        .hint("take the recorded build from a binary cache: `envctl cache push` it where it was built, and list that cache under [[caches]] here")
        .hint(format!(
            "or accept this machine's build: `envctl lock {} --update {}`, then apply again",
            lock_path.with_extension("toml").display(),
            p.name
        ))),
        _ => {
            p.built = Some(Built { store_path: made.name.clone(), tree_hash: made.tree_hash.clone() });
            Ok(())
        }
    }
}

/// How the source distribution at `lock.packages[i]` is built: by the backend its tree names,
/// with the wheels among its locked dependencies (its build requirements, which its recipe
/// lists with the rest) on the backend's import path.
fn build_of(store_dir: &Path, lock: &LockFile, i: usize, python: &Installed) -> Result<Derivation> {
    let p = &lock.packages[i];
    let fail = |why: String| Failure::new(format!("cannot build {} {} from source", p.name, p.version), why);
    let sdist = p.store_path.as_deref().unwrap_or_default();
    let build = BuildSystem::of_tree(&store_dir.join(sdist)).map_err(fail)?;
    let mut requires = Vec::new();
    for dep in &p.dependencies {
        let Some(d) = lock.get(dep) else { continue };
        if crate::request::is_sdist(d) {
            return Err(fail(format!(
                "it depends on {dep}, itself built from source; build requirements must be wheels"
            )));
        }
        if is_wheel(d) {
            let path = d.store_path.as_deref().unwrap_or_default();
            requires.push(StorePathName::parse(path).map_err(|e| fail(e.to_string()))?);
        }
    }
    Ok(python.build(StorePathName::parse(sdist).map_err(|e| fail(e.to_string()))?, build, requires))
}
