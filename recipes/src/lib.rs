//! envctl's data model: versions and requirements, recipes, repositories, profile files, lock
//! files and system facts, with their parsers. No network and no store: pure data and files.

#![deny(missing_docs)]

mod cache;
mod env;
mod error;
pub mod import;
mod lock;
mod profile;
mod recipe;
mod repo;
mod suggest;
mod system;
mod url_path;
mod version;
mod write;

pub use env::{SEARCH_VARIABLES, compose as compose_env, expand as expand_env, is_variable_name};
pub use envctl_core::PackageName;
pub use error::{Error, Result};
pub use lock::{Built, LOCK_VERSION, LockFile, LockedPackage, LockedSource};
pub use profile::{ProfileFile, Requested, check_profile_name};
pub use recipe::{Recipe, Source, SystemRequirements};
pub use repo::Repository;
pub use suggest::nearest;
pub use system::{CUDA_DRIVER_TABLE, SystemFacts, SystemOverrides, cuda_for_driver};
pub use version::{Bound, Clause, Interval, Level, ParseError, Requirement, Segment, Suffix, Tail, Version};
pub use write::Comments;
