//! Package names.

use std::fmt;

/// A package name: `[a-z0-9][a-z0-9._-]*`, at most 100 characters. Virtual packages (system
/// facts) are named by the solver, never by recipes, so a recipe cannot fake one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName(std::sync::Arc<str>);

impl PackageName {
    /// Checks the rules.
    pub fn parse(s: &str) -> Result<PackageName, String> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 100
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
        if ok {
            Ok(PackageName(s.into()))
        } else {
            Err(format!(
                "invalid package name `{s}`: use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit"
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for PackageName {
    fn borrow(&self) -> &str {
        &self.0
    }
}
