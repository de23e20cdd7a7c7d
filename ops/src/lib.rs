#![deny(missing_docs)]
//! envctl's use cases, between the command line and the library crates: what `apply`, `lock`,
//! `shell` and the rest do, as functions that take values and return values. The binary parses,
//! calls these and renders; a daemon can call the same functions. Nothing here prints.
//!
//! - [`apply`]: a profile file planned ([`apply::Plan`]) and carried out;
//! - [`generations`]: rolling back and deleting generations;
//! - [`gpus`]: the machine's GPUs, who holds them, leases for sessions, idle memory;
//! - [`daemon`]: a store several users share, served by one process (and its clients);
//! - [`settings`]: where the home, the configuration and the recipes are for one invocation;
//! - [`system`]: this machine's facts (driver, CUDA, GPUs, glibc, arch), detected or given;
//! - [`resolution`]: a profile file resolved against the recipes into a lock;
//! - [`lock`], [`graph`]: `lock` and `outdated` as values, and the dependency graph `why` and
//!   `graph` show;
//! - [`manifest`]: what a generation records (`.envctl/manifest.toml`);
//! - [`python`], [`sdist`]: the Python layer of a generation, and source builds (the rest of
//!   Python, pip's configuration included, is envctl-python's);
//! - [`profiles`], [`users`]: whose a profile is (a user's, a team's) and who is asking;
//! - [`error`]: failures that say what envctl was doing, why, and what to do.

pub mod apply;
pub mod daemon;
pub mod error;
pub mod generations;
pub mod gpus;
pub mod graph;
pub mod lock;
pub mod manifest;
pub mod profiles;
pub mod python;
pub mod request;
pub mod resolution;
pub mod sdist;
pub mod settings;
pub mod system;
pub mod users;

pub use settings::{Invocation, Settings};
