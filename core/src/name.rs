//! Package names, and the one PEP 503 normalization every crate uses.

use std::fmt;

/// A package name, normalized as PEP 503 says: lowercase, each run of `.`, `_` and `-` one `-`
/// (`Typing_Extensions` and `typing.extensions` are `typing-extensions`). Written with ASCII
/// letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 100 characters.
/// Virtual packages (system facts) are named by the solver, never by recipes, so a recipe cannot
/// fake one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName(std::sync::Arc<str>);

impl PackageName {
    /// Checks the rules and normalizes.
    pub fn parse(s: &str) -> Result<PackageName, String> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 100
            && b[0].is_ascii_alphanumeric()
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if !ok {
            return Err(format!(
                "invalid package name `{s}`: use letters, digits, `.`, `_` and `-`, starting with a letter or digit"
            ));
        }
        Ok(PackageName(normalized_name(s).into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// PEP 503's normalized form of a distribution name: lowercase, each run of `-`, `_` and `.` one
/// `-` (`Typing_Extensions` → `typing-extensions`).
pub fn normalized_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::PackageName;

    #[test]
    fn names_normalize_as_pep_503_says() {
        for (written, normal) in [
            ("Typing_Extensions", "typing-extensions"),
            ("typing.extensions", "typing-extensions"),
            ("zope__.interface", "zope-interface"),
            ("nvidia-cudnn-cu12", "nvidia-cudnn-cu12"),
            ("PyYAML", "pyyaml"),
        ] {
            assert_eq!(PackageName::parse(written).unwrap().as_str(), normal);
        }
        assert!(PackageName::parse("_x").is_err());
        assert!(PackageName::parse("a b").is_err());
        assert!(PackageName::parse("").is_err());
    }
}
