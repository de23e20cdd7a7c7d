//! Errors of the data model: each names the file and, where it can, the line and the key.

use std::path::PathBuf;

/// A recipe, profile or lock file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("`{path}`: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// toml's message, which carries line, column and the offending text.
        message: String,
    },
    /// A value breaks its rules.
    #[error("`{path}` line {line}, `{key}`: {message}")]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The key, dotted (`dependencies.cudnn`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Result with the recipes crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}
