//! The vocabulary every envctl crate shares, defined once: a package name as PEP 503 normalizes
//! it, a sha256 digest, a store path's name, how a source's archive is unpacked (its format and options) and the source
//! key that names what it unpacks to. A leaf crate: the recipes, the store and the Python layer
//! all embed these, and none of them defines its own.

mod key;
mod name;
mod path;
mod sha256;
mod unpack;

pub use key::SourceKey;
pub use name::{PackageName, normalized_name};
pub use path::{HASH_PART_LEN, Name, StorePathName, Version};
pub use sha256::Sha256;
pub use unpack::{EMPTY_URL, Format, Unpack};

/// A value that breaks its rule: what it is, the value, and the rule (the store and the recipes
/// each turn this into an error of their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What kind of value (`sha256`).
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid {} `{}`: {}", self.what, self.value, self.rule)
    }
}

impl std::error::Error for Invalid {}
