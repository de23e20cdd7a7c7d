//! envctl's Python layer: what a wheel is and how it installs, how an interpreter's standard
//! library and a wheel's modules are compiled the same on every machine, how a profile's
//! `bin/python3` becomes a venv over the profile, and how a source distribution is built into a
//! wheel. The store knows none of this: it is handed [`Python`] as its [`envctl_store::Layer`]
//! and calls it to unpack a wheel, to finish an interpreter and to make derived paths.
//!
//! [`Installed`] is a Python in the store as a profile's interpreter, and names the derivations a
//! profile's Python layer asks of it. Beside the layer: the package index (`index://NAME/FILE` sources, read from a simple
//! repository's PEP 691 or PEP 503 pages: [`PackageIndex`], handed to the store's fetcher as a
//! resolver), wheel tags ([`WheelTags`]), what a source distribution's `pyproject.toml` asks to be
//! built with ([`BuildSystem`]), pip's configuration ([`pipconf`]), and the importer that turns
//! what pip resolves into recipes ([`import`]).

#![deny(missing_docs)]

mod bytecode;
mod derive;
pub mod import;
mod index;
mod ini;
mod installed;
pub mod interpreter;
pub mod pipconf;
mod sdist;
mod tags;
mod wheel;

use std::path::Path;

use envctl_store::{Host, Job, Limits, Result, Unpacked};

pub use derive::Derivation;
pub use index::PackageIndex;
pub use installed::Installed;
pub use sdist::{BuildSystem, is_sdist_file};
pub use tags::WheelTags;
pub use wheel::{SCRIPT_HEADER, entry_points, unpack_wheel};

/// The Python layer (see the crate docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Python;

impl Python {
    /// The layer, as a store's options hold it.
    pub fn layer() -> std::sync::Arc<dyn envctl_store::Layer> {
        std::sync::Arc::new(Python)
    }

    /// The resolver of `index://` sources, as a store's fetch options hold it.
    pub fn package_index() -> std::sync::Arc<dyn envctl_store::Resolver> {
        std::sync::Arc::new(PackageIndex)
    }
}

impl envctl_store::Layer for Python {
    fn unpack_package(
        &self,
        file: std::fs::File,
        tree: &Path,
        label: &str,
        limits: Limits,
        expected: Option<(&str, &str)>,
    ) -> Result<Unpacked> {
        unpack_wheel(file, tree, label, limits, expected)
    }

    fn finish_interpreter(&self, store: &dyn Host, tree: &Path) -> Result<()> {
        derive::compile_interpreter(store, tree)
    }

    fn derivation(&self, store: &dyn Host, key: &str) -> Result<Option<envctl_store::Derivation>> {
        Derivation::from_key(key).map(|d| d.to_store(store)).transpose()
    }

    fn prepare(&self, store: &dyn Host, jobs: &[Job<'_>]) -> Result<()> {
        derive::prepare(store, jobs)
    }

    fn build(&self, store: &dyn Host, jobs: &[Job<'_>]) -> Result<()> {
        derive::build(store, jobs)
    }
}
