//! What an install asks for and what it gives back, and the source key that names what a source
//! unpacks to.

use std::path::PathBuf;

use crate::db::PathRecord;
use crate::path::{Name, Sha256, StorePathName, Version};
use crate::unpack::{Format, UnpackOptions};

/// How an interpreter's own standard library was compiled, as its source key says: in the
/// fixed order of envctl-python's `bytecode.rs`, the same on every machine. The same source under
/// another way of compiling is another key, so a store holding a tree the old compiler made
/// compiles it again instead of handing it to a lock made elsewhere.
const BYTECODE_KEY: &str = " bytecode=interpreter-ordered";
/// The key of trees compiled before the order was fixed (a worker pool): read back, never
/// written.
const BYTECODE_KEY_V1: &str = " bytecode=interpreter";

/// What to install: one artifact, how to unpack it, and what to call it.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// Where it comes from (`https://…`, `file://…`, a path, `mirror://NAME/…`).
    pub url: String,
    /// The sha256 it must have.
    pub sha256: Sha256,
    /// Package name.
    pub name: Name,
    /// Package version.
    pub version: Version,
    /// Unpack options.
    pub unpack: UnpackOptions,
    /// Store paths this one refers to (registered as references; they must be valid).
    pub references: Vec<StorePathName>,
    /// The store path it unpacks to, when known (a lock that was applied once says): binary
    /// caches are asked for it by this name.
    pub store_path: Option<StorePathName>,
}

/// The result of an install.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The store path's full path on disk.
    pub path: PathBuf,
    /// Its database record.
    pub record: PathRecord,
    /// False when the store already had it and nothing was fetched.
    pub fetched: bool,
    /// Archive entries skipped on purpose (device nodes, fifos).
    pub skipped: Vec<String>,
    /// The binary cache it came from, when one gave it.
    pub cache: Option<String>,
    /// The size of the source archive, when this install fetched it from the source.
    pub archive_size: Option<u64>,
}

impl Installed {
    /// A path the store already had, or made itself (a generation, a derived path): nothing was
    /// fetched for it.
    pub(crate) fn present(path: PathBuf, record: PathRecord) -> Installed {
        Installed { path, record, fetched: false, skipped: Vec::new(), cache: None, archive_size: None }
    }
}

impl InstallRequest {
    /// The key the store records what this request unpacks to under (the archive's sha256, the
    /// name, the version, the format and every unpack option): a store path is found again by it,
    /// and a binary cache's pointer is named after it.
    pub fn source_key(&self, format: Format) -> String {
        let request = self;
        let mut key = format!(
            "{} {} {} {} strip={} subdir={}",
            request.sha256,
            request.name.as_str(),
            request.version.as_str(),
            format.name(),
            request.unpack.strip_components,
            request.unpack.subdir.as_deref().unwrap_or("")
        );
        // Only when set, so keys recorded before these options existed stay the same.
        if let Some(root) = &request.unpack.root {
            key.push_str(&format!(" root={root}"));
        }
        if !request.unpack.moves.is_empty() {
            let moves: Vec<String> = request.unpack.moves.iter().map(|(f, t)| format!("{f}>{t}")).collect();
            key.push_str(&format!(" move={}", moves.join(";")));
        }
        if request.unpack.bytecode {
            key.push_str(BYTECODE_KEY);
        }
        key
    }

    /// The install request a source key was made from (see [`InstallRequest::source_key`]),
    /// with `url`.
    pub fn from_source_key(key: &str, url: &str) -> Option<InstallRequest> {
        // The optional parts come last, in the order `source_key` appends them.
        let (key, bytecode) =
            match key.strip_suffix(BYTECODE_KEY).or_else(|| key.strip_suffix(BYTECODE_KEY_V1)) {
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
            None => (key, Vec::new()),
        };
        let (key, root) = match key.rsplit_once(" root=") {
            Some((k, r)) => (k, Some(r.to_owned())),
            None => (key, None),
        };
        let mut parts = key.splitn(6, ' ');
        let sha256 = Sha256::parse(parts.next()?).ok()?;
        let name = Name::parse(parts.next()?).ok()?;
        let version = Version::parse(parts.next()?).ok()?;
        let format = Format::parse(parts.next()?).ok()?;
        let strip_components = parts.next()?.strip_prefix("strip=")?.parse().ok()?;
        let subdir = parts.next()?.strip_prefix("subdir=")?;
        Some(InstallRequest {
            url: url.to_owned(),
            sha256,
            name,
            version,
            unpack: UnpackOptions {
                format: Some(format),
                strip_components,
                subdir: (!subdir.is_empty()).then(|| subdir.to_owned()),
                moves,
                root,
                bytecode,
            },
            references: Vec::new(),
            store_path: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_key_reads_back_as_the_request_it_was_made_from() {
        for (root, moves) in [
            (None, vec![]),
            (Some("python/install".to_owned()), vec![]),
            (None, vec![("LICENSE".to_owned(), "share/licenses/x/LICENSE".to_owned())]),
            (
                Some("a/b".to_owned()),
                vec![("LICENSE".to_owned(), "l/L".to_owned()), ("v.json".to_owned(), "s/v".to_owned())],
            ),
        ] {
            let request = InstallRequest {
                url: "https://example.org/x.tar.xz".into(),
                sha256: Sha256::parse(&"ab".repeat(32)).unwrap(),
                name: Name::parse("cuda-cudart").unwrap(),
                version: Version::parse("12.4.127").unwrap(),
                unpack: UnpackOptions {
                    format: Some(Format::TarXz),
                    strip_components: 1,
                    subdir: Some("opt".into()),
                    moves,
                    bytecode: root.is_some(),
                    root,
                },
                references: Vec::new(),
                store_path: None,
            };
            let key = request.source_key(Format::TarXz);
            let back = InstallRequest::from_source_key(&key, &request.url).unwrap();
            assert_eq!(back.unpack, request.unpack, "{key}");
            assert_eq!(
                (back.sha256, back.name, back.version),
                (request.sha256, request.name, request.version)
            );
        }
    }

    /// A source key is the database's key for what a source unpacks to, and a cache pointer's
    /// name: reordering or respelling it would re-key every existing store and cache silently.
    #[test]
    fn golden_source_keys_are_pinned() {
        let request = |unpack: UnpackOptions| InstallRequest {
            url: "https://example.org/x.tar.xz".into(),
            sha256: Sha256::parse(&"ab".repeat(32)).unwrap(),
            name: Name::parse("cuda-cudart").unwrap(),
            version: Version::parse("12.4.127").unwrap(),
            unpack,
            references: Vec::new(),
            store_path: None,
        };
        let sha = "ab".repeat(32);
        let plain = request(UnpackOptions::default()).source_key(Format::TarXz);
        assert_eq!(plain, format!("{sha} cuda-cudart 12.4.127 tar.xz strip=0 subdir="));
        let all = UnpackOptions {
            format: Some(Format::TarXz),
            strip_components: 2,
            subdir: Some("opt/x".into()),
            moves: vec![("LICENSE".into(), "share/l/LICENSE".into()), ("a".into(), "b/a".into())],
            root: Some("python/install".into()),
            bytecode: true,
        };
        assert_eq!(
            request(all).source_key(Format::TarXz),
            format!(
                "{sha} cuda-cudart 12.4.127 tar.xz strip=2 subdir=opt/x root=python/install move=LICENSE>share/l/LICENSE;a>b/a bytecode=interpreter-ordered"
            )
        );
        // Keys of trees the old compiler made still read back.
        let old = format!("{sha} python 3.11.9 tar.zst strip=0 subdir= bytecode=interpreter");
        assert!(InstallRequest::from_source_key(&old, "u").unwrap().unpack.bytecode);
    }
}
