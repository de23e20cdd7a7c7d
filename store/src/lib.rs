//! envctl's content-addressed store: all of envctl's disk and network I/O.
//!
//! Artifacts (CUDA component tarballs, cuDNN archives, framework wheels) are fetched once,
//! verified against the sha256 their recipe states, unpacked with every archive treated as
//! hostile, and kept read-only under `store/<hash>-<name>-<version>`, where the hash is derived
//! from the unpacked tree's canonical hash, the name and the version. A SQLite database records
//! which paths are valid, what source each came from and what refers to what.
//!
//! The store knows nothing of recipes or versions beyond the plain values it is handed, and
//! nothing of Python: what a wheel is, and how an interpreter or a derived path is made, it asks
//! of the [`Layer`] it is opened with (envctl-python).

#![deny(missing_docs)]

mod caches;
mod committer;
mod db;
mod derive;
mod download;
mod elf;
mod error;
mod farm;
mod fetch;
mod flush;
mod gc;
mod generation;
mod install;
mod journal;
mod keys;
mod layer;
mod lock;
mod optimise;
pub mod parallel;
mod profile;
mod repair;
mod reporter;
mod request;
mod sandbox;
mod store;
mod sweep;
mod sys;
mod tempdir;
mod transfer;
mod tree;
mod unpack;
mod verify;

pub use caches::{Cache, Caches, PushReport};
pub use db::{PathRecord, SCHEMA_VERSION, SourceRecord};
pub use envctl_core::{Name, Sha256, StorePathName, Version};
pub use error::{Error, Result};
pub use farm::FarmInput;
pub use fetch::{EMPTY_URL, FetchOptions, Fetcher, Location, Opened, Resolver, Resolvers, mirror_name};
pub use gc::{GcReport, TempRoot};
pub use install::Installer;
pub use keys::{PublicKey, SecretKey};
pub use layer::{Derivation, Host, Job, Layer};
pub use lock::{FileLock, Holder, WaitPolicy, Waiting, keep_across_exec, set_wait_policy};
pub use optimise::OptimiseReport;
pub use profile::{Generation, ProfileLock, Profiles, check_profile_name};
pub use reporter::{NoReporter, Reporter};
pub use request::{InstallRequest, Installed};
pub use sandbox::Sandbox;
pub use store::{LAYOUT_VERSION, PathInfo, Store, StoreOptions};
pub use sys::{Mapped, MappedReader};
pub use tempdir::remove_tree;
pub use transfer::{ArchiveInfo, ObjectSource, PathObject, write_atomically};
pub use tree::{Node, TreeHash, TreeStats, scan};
pub use unpack::{Format, Limits, Unpack, Unpacked, Unpacker, check_local_name, unpack_tar, unpack_zip};
pub use verify::{Corruption, Damage, VerifyReport};
