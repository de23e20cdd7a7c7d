//! Store path names (`<hash>-<name>-<version>`) and the names and versions they are spelled
//! with.
//!
//! The only way to get one is to parse it or to derive it with checks, so code holding a
//! [`StorePathName`] knows it cannot name anything outside the store. A store [`Name`] is how a
//! path spells what it holds (a package as its recipe writes it, a profile, `python-venv`); a
//! package's identity, compared across recipes, indexes and locks, is a
//! [`PackageName`](crate::PackageName).

use crate::Invalid;

type Result<T> = std::result::Result<T, Invalid>;

/// Nix's base32 alphabet: digits and lowercase letters without `e`, `o`, `u`, `t`, so that a hash
/// never spells a word by accident.
const BASE32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Length of the hash part of a store path: 160 bits in base32.
pub const HASH_PART_LEN: usize = 32;

fn base32(bytes: &[u8; 20]) -> String {
    let mut out = String::with_capacity(HASH_PART_LEN);
    let mut acc: u64 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
}

/// The hash part of a store path: blake3 over the fields (each followed by a NUL) and the tree
/// hash, first 160 bits, in base32.
fn hash_part(fields: &[&[u8]], tree: &[u8; 32]) -> String {
    let mut hasher = blake3::Hasher::new();
    for f in fields {
        hasher.update(f);
        hasher.update(b"\0");
    }
    hasher.update(tree);
    let mut first = [0u8; 20];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..20]);
    base32(&first)
}

/// A package name: `[a-z0-9][a-z0-9._-]*`, at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Checks `s` against the rules.
    pub fn parse(s: &str) -> Result<Name> {
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 100
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(|&c| is_name_char(c));
        if ok {
            Ok(Name(s.to_owned()))
        } else {
            Err(Invalid {
                what: "package name",
                value: s.to_owned(),
                rule: "use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit",
            })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A version as the store sees it: `[A-Za-z0-9][A-Za-z0-9.+_-]*`, at most 100 characters. The
/// store does not order versions; the recipes crate does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(String);

impl Version {
    /// Checks `s` against the rules.
    pub fn parse(s: &str) -> Result<Version> {
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 100
            && bytes[0].is_ascii_alphanumeric()
            && bytes.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'_' | b'-'));
        if ok {
            Ok(Version(s.to_owned()))
        } else {
            Err(Invalid {
                what: "version",
                value: s.to_owned(),
                rule: "use letters, digits, `.`, `+`, `_` and `-`, starting with a letter or digit",
            })
        }
    }

    /// The version as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The file name of a store path: `<hash>-<name>-<version>`, with the hash derived from the tree
/// hash, the name and the version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePathName(String);

impl StorePathName {
    /// Derives the store path name of a tree, given its tree hash.
    pub fn derive(name: &Name, version: &Version, tree: &[u8; 32]) -> StorePathName {
        let hash = hash_part(
            &[b"envctl-store-path-v1", name.as_str().as_bytes(), version.as_str().as_bytes()],
            tree,
        );
        StorePathName(format!("{hash}-{}-{}", name.as_str(), version.as_str()))
    }

    /// Derives the store path name of a profile generation: `<hash>-profile-<profile>`.
    pub fn derive_generation(profile: &Name, tree: &[u8; 32]) -> StorePathName {
        let hash = hash_part(&[b"envctl-generation-v1", profile.as_str().as_bytes()], tree);
        StorePathName(format!("{hash}-profile-{}", profile.as_str()))
    }

    /// Parses a store path's file name, or a path whose last component is one. Checks the shape
    /// only; whether it is valid in a store is the database's question.
    pub fn parse(s: &str) -> Result<StorePathName> {
        let base = s.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let bad = || Invalid {
            what: "store path",
            value: s.to_owned(),
            rule: "expected `<32-character hash>-<name>-<version>`",
        };
        let (hash, rest) = base.split_at_checked(HASH_PART_LEN).ok_or_else(bad)?;
        if !hash.bytes().all(|c| BASE32.contains(&c)) || !rest.starts_with('-') || rest.len() < 4 {
            return Err(bad());
        }
        if rest[1..].bytes().any(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'_' | b'-'))) {
            return Err(bad());
        }
        Ok(StorePathName(base.to_owned()))
    }

    /// The 32-character hash part.
    pub fn hash_part(&self) -> &str {
        &self.0[..HASH_PART_LEN]
    }

    /// The whole file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StorePathName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_recipe_rules() {
        for ok in ["tensorflow", "cuda-cudart", "libcublas", "python3.7", "0ad"] {
            Name::parse(ok).unwrap();
        }
        for bad in ["", "TensorFlow", "-x", ".x", "a/b", "a b", "ü"] {
            assert!(Name::parse(bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["", "../x", "1.0/2", " 1"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn store_path_names_are_derived_and_parse_back() {
        let name = Name::parse("cuda-cudart").unwrap();
        let version = Version::parse("11.8.89").unwrap();
        let p = StorePathName::derive(&name, &version, &[7; 32]);
        assert!(p.as_str().ends_with("-cuda-cudart-11.8.89"));
        assert_eq!(p.hash_part().len(), 32);
        assert_eq!(StorePathName::parse(&format!("/x/store/{p}")).unwrap(), p);
        assert_ne!(p, StorePathName::derive(&name, &Version::parse("11.8.90").unwrap(), &[7; 32]));
        assert!(StorePathName::parse("../../etc/passwd").is_err());
        assert!(StorePathName::parse("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x-1").is_err());
    }

    #[test]
    fn store_path_names_are_pinned() {
        // Every store path on every machine depends on these derivations (documented in
        // docs/reference/store-layout.md); a change here must be deliberate.
        let p = StorePathName::derive(
            &Name::parse("cuda-cudart").unwrap(),
            &Version::parse("11.8.89").unwrap(),
            &[7; 32],
        );
        assert_eq!(p.as_str(), "ljacknji43wjayps6fjhfy2rfn83p3cf-cuda-cudart-11.8.89");
        let g = StorePathName::derive_generation(&Name::parse("vision").unwrap(), &[9; 32]);
        assert_eq!(g.as_str(), "3fvrraq9am1zyfpksz46lxknmdfvzhbc-profile-vision");
    }
}
