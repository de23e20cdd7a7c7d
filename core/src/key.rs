//! The source key: the canonical text that names what one source unpacks to (the archive's sha256,
//! the package's name and version, the archive format, every unpack option, and whether an
//! interpreter's standard library is compiled after). The store finds a path again by it, and a
//! binary cache names its pointer after it and signs it, so its encoding is a persisted format.
//!
//! Two encodings, each pinned by a golden test:
//!
//! - **2** (written): `2 ` and then one compact JSON object whose fields come in a fixed order,
//!   unset options left out: `2 {"sha256":"…","name":"cuda-cudart","version":"12.4.127",
//!   "format":"tar.xz","strip-components":1,"move":{"LICENSE":"…"}}`. JSON's escaping makes it
//!   unambiguous whatever a path holds; a new option is a new field, left out when unset, so a key
//!   made without it stays the same.
//! - **1** (read, and asked for beside 2 so that stores and caches made before 2 still answer): the
//!   hand-made `SHA NAME VERSION FORMAT strip=N subdir=DIR[ root=R][ move=A>B;C>D][ bytecode=…]`,
//!   which a space in a path, or `;` or `>` in a move, made ambiguous; such a spec has no version 1
//!   key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Format, Sha256, Unpack};

/// Version 1's marker of a compiled interpreter, as written since compiling was ordered.
const BYTECODE_V1: &str = " bytecode=interpreter-ordered";
/// Version 1's marker of trees compiled before the order was fixed (a worker pool): read back,
/// never written (the same source compiled the old way is another key).
const BYTECODE_V1_POOL: &str = " bytecode=interpreter";
/// Version 2's value of `bytecode`.
const BYTECODE_ORDERED: &str = "interpreter-ordered";

/// What a source key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceKey {
    /// The archive's sha256.
    pub sha256: Sha256,
    /// The package name, as the store names it.
    pub name: String,
    /// The package version, as the store names it.
    pub version: String,
    /// The archive format (told from the file name when the spec gives none).
    pub format: Format,
    /// The unpack options (`unpack.format` is not part of the key: `format` is).
    pub unpack: Unpack,
    /// An interpreter whose standard library is compiled once unpacked.
    pub bytecode: bool,
}

/// Version 2's JSON object; the field order is the encoding's.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct V2 {
    sha256: String,
    name: String,
    version: String,
    format: Format,
    #[serde(default, skip_serializing_if = "is_zero")]
    strip_components: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subdir: Option<String>,
    #[serde(default, rename = "move", skip_serializing_if = "BTreeMap::is_empty")]
    moves: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytecode: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SourceKey {
    /// The key as written now (version 2).
    pub fn encode(&self) -> String {
        let v2 = V2 {
            sha256: self.sha256.to_string(),
            name: self.name.clone(),
            version: self.version.clone(),
            format: self.format,
            strip_components: self.unpack.strip_components,
            subdir: self.unpack.subdir.clone(),
            moves: self.unpack.moves.clone(),
            root: self.unpack.root.clone(),
            bytecode: self.bytecode.then(|| BYTECODE_ORDERED.to_owned()),
        };
        format!("2 {}", serde_json::to_string(&v2).expect("a key serializes"))
    }

    /// The same key in version 1, which stores and caches made before version 2 hold; `None` when
    /// version 1 cannot say it unambiguously.
    pub fn encode_v1(&self) -> Option<String> {
        let u = &self.unpack;
        let plain = |s: &str| !s.is_empty() && !s.contains([' ', ';', '>', '=']);
        let clean = [&self.name, &self.version].iter().all(|s| plain(s))
            && u.subdir.as_deref().is_none_or(plain)
            && u.root.as_deref().is_none_or(plain)
            && u.moves.iter().all(|(f, t)| plain(f) && plain(t));
        if !clean {
            return None;
        }
        let mut key = format!(
            "{} {} {} {} strip={} subdir={}",
            self.sha256,
            self.name,
            self.version,
            self.format.name(),
            u.strip_components,
            u.subdir.as_deref().unwrap_or("")
        );
        if let Some(root) = &u.root {
            key.push_str(&format!(" root={root}"));
        }
        if !u.moves.is_empty() {
            let moves: Vec<String> = u.moves.iter().map(|(f, t)| format!("{f}>{t}")).collect();
            key.push_str(&format!(" move={}", moves.join(";")));
        }
        if self.bytecode {
            key.push_str(BYTECODE_V1);
        }
        Some(key)
    }

    /// Reads a key of either version.
    pub fn decode(key: &str) -> Option<SourceKey> {
        match key.strip_prefix("2 ") {
            Some(json) => Self::decode_v2(json),
            None => Self::decode_v1(key),
        }
    }

    fn decode_v2(json: &str) -> Option<SourceKey> {
        let v: V2 = serde_json::from_str(json).ok()?;
        let bytecode = match v.bytecode.as_deref() {
            None => false,
            Some(BYTECODE_ORDERED) => true,
            Some(_) => return None,
        };
        Some(SourceKey {
            sha256: Sha256::parse(&v.sha256).ok()?,
            name: v.name,
            version: v.version,
            format: v.format,
            unpack: Unpack {
                format: Some(v.format),
                strip_components: v.strip_components,
                subdir: v.subdir,
                moves: v.moves,
                root: v.root,
            },
            bytecode,
        })
    }

    fn decode_v1(key: &str) -> Option<SourceKey> {
        // The optional parts come last, in the order `encode_v1` appends them.
        let (key, bytecode) =
            match key.strip_suffix(BYTECODE_V1).or_else(|| key.strip_suffix(BYTECODE_V1_POOL)) {
                Some(k) => (k, true),
                None => (key, false),
            };
        let (key, moves) = match key.rsplit_once(" move=") {
            Some((k, m)) => (
                k,
                m.split(';')
                    .filter_map(|p| p.split_once('>'))
                    .map(|(f, t)| (f.to_owned(), t.to_owned()))
                    .collect(),
            ),
            None => (key, BTreeMap::new()),
        };
        let (key, root) = match key.rsplit_once(" root=") {
            Some((k, r)) => (k, Some(r.to_owned())),
            None => (key, None),
        };
        let mut parts = key.splitn(6, ' ');
        let sha256 = Sha256::parse(parts.next()?).ok()?;
        let name = parts.next()?.to_owned();
        let version = parts.next()?.to_owned();
        let format = Format::parse(parts.next()?).ok()?;
        let strip_components = parts.next()?.strip_prefix("strip=")?.parse().ok()?;
        let subdir = parts.next()?.strip_prefix("subdir=")?;
        Some(SourceKey {
            sha256,
            name,
            version,
            format,
            unpack: Unpack {
                format: Some(format),
                strip_components,
                subdir: (!subdir.is_empty()).then(|| subdir.to_owned()),
                moves,
                root,
            },
            bytecode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(unpack: Unpack, bytecode: bool) -> SourceKey {
        SourceKey {
            sha256: Sha256::parse(&"ab".repeat(32)).unwrap(),
            name: "cuda-cudart".into(),
            version: "12.4.127".into(),
            format: Format::TarXz,
            unpack: Unpack { format: Some(Format::TarXz), ..unpack },
            bytecode,
        }
    }

    fn moves(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect()
    }

    /// Both encodings are persisted (the store's database, cache pointers and signatures):
    /// respelling either re-keys every store and cache silently.
    #[test]
    fn golden_keys_are_pinned() {
        let sha = "ab".repeat(32);
        let plain = key(Unpack::default(), false);
        assert_eq!(
            plain.encode(),
            format!(r#"2 {{"sha256":"{sha}","name":"cuda-cudart","version":"12.4.127","format":"tar.xz"}}"#)
        );
        assert_eq!(plain.encode_v1().unwrap(), format!("{sha} cuda-cudart 12.4.127 tar.xz strip=0 subdir="));
        let all = key(
            Unpack {
                strip_components: 1,
                subdir: Some("opt".into()),
                moves: moves(&[("LICENSE", "share/l/LICENSE"), ("a", "b/a")]),
                root: Some("python/install".into()),
                ..Unpack::default()
            },
            true,
        );
        assert_eq!(
            all.encode(),
            format!(
                r#"2 {{"sha256":"{sha}","name":"cuda-cudart","version":"12.4.127","format":"tar.xz","strip-components":1,"subdir":"opt","move":{{"LICENSE":"share/l/LICENSE","a":"b/a"}},"root":"python/install","bytecode":"interpreter-ordered"}}"#
            )
        );
        assert_eq!(
            all.encode_v1().unwrap(),
            format!(
                "{sha} cuda-cudart 12.4.127 tar.xz strip=1 subdir=opt root=python/install \
                 move=LICENSE>share/l/LICENSE;a>b/a bytecode=interpreter-ordered"
            )
        );
    }

    #[test]
    fn a_key_of_either_version_reads_back_as_what_made_it() {
        for (unpack, bytecode) in [
            (Unpack::default(), false),
            (Unpack { root: Some("python/install".into()), ..Unpack::default() }, true),
            (Unpack { moves: moves(&[("LICENSE", "share/licenses/x/LICENSE")]), ..Unpack::default() }, false),
            (
                Unpack {
                    strip_components: 2,
                    subdir: Some("opt".into()),
                    root: Some("a/b".into()),
                    moves: moves(&[("LICENSE", "l/L"), ("v.json", "s/v")]),
                    ..Unpack::default()
                },
                false,
            ),
        ] {
            let k = key(unpack, bytecode);
            assert_eq!(SourceKey::decode(&k.encode()).as_ref(), Some(&k));
            assert_eq!(SourceKey::decode(&k.encode_v1().unwrap()).as_ref(), Some(&k));
        }
    }

    #[test]
    fn what_version_1_could_not_say_has_only_a_version_2_key() {
        let spaced = key(Unpack { subdir: Some("my dir".into()), ..Unpack::default() }, false);
        assert_eq!(spaced.encode_v1(), None);
        assert_eq!(SourceKey::decode(&spaced.encode()).unwrap(), spaced);
        let arrow = key(Unpack { moves: moves(&[("a>b", "c;d")]), ..Unpack::default() }, false);
        assert_eq!(arrow.encode_v1(), None);
        assert_eq!(SourceKey::decode(&arrow.encode()).unwrap(), arrow);
    }

    #[test]
    fn the_pool_compiled_marker_still_reads_and_unknown_versions_do_not() {
        let old = format!(
            "{} python 3.12.1 tar.gz strip=0 subdir= root=python/install bytecode=interpreter",
            "ab".repeat(32)
        );
        let k = SourceKey::decode(&old).unwrap();
        assert!(k.bytecode);
        assert_eq!(k.unpack.root.as_deref(), Some("python/install"));
        assert_eq!(SourceKey::decode("3 {}"), None);
        assert_eq!(SourceKey::decode(r#"2 {"sha256":"ab","name":"x"}"#), None);
    }
}
