//! What the store asks of a language layer: the store keeps, fetches, unpacks and names trees;
//! a layer (envctl-python) knows what a package of its language is. The store is handed one
//! when it is opened ([`crate::StoreOptions::layer`]) and calls it for three things it cannot do
//! itself:
//!
//! - unpack a package archive of the layer's own kind (a wheel: a request whose
//!   [`Unpack::installs_as_wheel`](crate::Unpack::installs_as_wheel) holds);
//! - finish an interpreter's tree after unpacking, before it is named
//!   ([`InstallRequest::bytecode`](crate::InstallRequest::bytecode));
//! - make [`Derivation`]s: trees made from other store paths by running something, keyed by what
//!   they are made from.
//!
//! The layer sees the store only as a [`Host`]: it writes only where it is told (a job's work
//! directory, the tree being finished) and runs programs through [`Host::run_confined`], the
//! store's sandbox; the store names, registers, flushes and repairs what it makes exactly as it
//! does a fetched path. A store opened without a layer refuses what needs one, naming it.

use std::path::Path;
use std::process::{Command, Output};

use crate::db::PathRecord;
use crate::error::Result;
use crate::unpack::{Limits, Unpacked};
use envctl_core::{Name, StorePathName, Version};

/// The store as a layer sees it (the store implements it).
pub trait Host: Sync {
    /// The store directory: a valid path `NAME` is `dir()/NAME`.
    fn dir(&self) -> &Path;
    /// The database record of the store path `name`, if it is valid.
    fn record(&self, name: &str) -> Result<Option<PathRecord>>;
    /// Runs a program (a build backend, a bytecode compiler) in the store's sandbox with `work`
    /// its only writable directory, and collects its output (see `sandbox.rs`). `work` is one the
    /// store gave the layer ([`Job::work`], or an interpreter tree's parent).
    fn run_confined(&self, command: &mut Command, work: &Path) -> Result<Output>;
}

/// A language layer (see the module docs).
pub trait Layer: Send + Sync + std::fmt::Debug {
    /// Unpacks the package archive `file` into the empty directory `tree`, as the layer's
    /// installer would (a wheel's schemes, its RECORD checked). `label` names the archive in
    /// errors; `expected` is the package name and version the recipe says it is.
    fn unpack_package(
        &self,
        file: std::fs::File,
        tree: &Path,
        label: &str,
        limits: Limits,
        expected: Option<(&str, &str)>,
    ) -> Result<Unpacked>;

    /// Finishes an interpreter's unpacked tree in place (compiles its standard library). The
    /// tree's parent is the only other directory it may write; the store normalizes and scans
    /// the tree afterwards.
    fn finish_interpreter(&self, store: &dyn Host, tree: &Path) -> Result<()>;

    /// The derivation a registered `derived:` key names, when it is one of this layer's (what
    /// `verify --repair` makes again); `Ok(None)` otherwise.
    fn derivation(&self, store: &dyn Host, key: &str) -> Result<Option<Derivation>>;

    /// Writes what each job's making starts from (into its `work` and `tree`), running nothing.
    /// Every input of every job is a valid store path.
    fn prepare(&self, store: &dyn Host, jobs: &[Job<'_>]) -> Result<()>;

    /// Makes each prepared job's tree, its programs run through [`Host::run_confined`]. For a
    /// root caller the work directories now belong to the sandbox's user (`nobody`): a program
    /// run confined may write them, and what the layer writes itself it writes as root.
    fn build(&self, store: &dyn Host, jobs: &[Job<'_>]) -> Result<()>;
}

/// A tree made from store paths by a [`Layer`], registered under its key as a fetched path is
/// under its source key, referring to its inputs (GC keeps them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    /// The key it is registered under and found again by: starts with `derived:`, and says
    /// everything its tree depends on.
    pub key: String,
    /// The store paths it is made from.
    pub inputs: Vec<StorePathName>,
    /// The package name its store path has.
    pub name: Name,
    /// The version its store path has.
    pub version: Version,
    /// Whether binary caches carry it, and a cache's copy is taken before making one: a tree
    /// that making again may not reproduce (a wheel a build backend made), or one that costs more
    /// to make than to fetch (bytecode).
    pub travels: bool,
}

/// One derivation to make.
#[derive(Debug)]
pub struct Job<'a> {
    /// What to make.
    pub derivation: &'a Derivation,
    /// A fresh directory of its own, writable, for whatever making it needs (lent to the
    /// sandbox's user while the layer builds; see [`Layer::build`]).
    pub work: &'a Path,
    /// The empty directory its tree goes in (inside `work`).
    pub tree: &'a Path,
}
