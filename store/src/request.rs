//! What an install asks for and what it gives back, and the source key that names what a source
//! unpacks to.

use std::path::PathBuf;

use envctl_core::SourceKey;

use crate::db::PathRecord;
use crate::unpack::{Format, Unpack};
use envctl_core::{Name, Sha256, StorePathName, Version};

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
    /// How its archive is unpacked.
    pub unpack: Unpack,
    /// The package is a Python interpreter: once unpacked, its own `lib/pythonX.Y` is compiled to
    /// bytecode by it (the layer's `finish_interpreter`), so sessions find valid bytecode for the
    /// standard library and never write any.
    pub bytecode: bool,
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
    /// The archive format: the request's, else its URL's file name's (a source distribution's is
    /// its file name's).
    pub fn format(&self) -> Option<Format> {
        self.unpack.archive_format(&self.url)
    }

    /// What the store records this request's tree under, for archive format `format`.
    pub fn key(&self, format: Format) -> SourceKey {
        SourceKey {
            sha256: self.sha256,
            name: self.name.as_str().to_owned(),
            version: self.version.as_str().to_owned(),
            format,
            unpack: self.unpack.clone(),
            bytecode: self.bytecode,
        }
    }

    /// The keys a store path is found again by (see `envctl_core::SourceKey`): the one written
    /// now first, then the same key as stores and caches made before it hold.
    pub fn source_keys(&self, format: Format) -> Vec<String> {
        let key = self.key(format);
        std::iter::once(key.encode()).chain(key.encode_v1()).collect()
    }

    /// The install request a source key of either version was made from, with `url`.
    pub fn from_source_key(key: &str, url: &str) -> Option<InstallRequest> {
        let key = SourceKey::decode(key)?;
        Some(InstallRequest {
            url: url.to_owned(),
            sha256: key.sha256,
            name: Name::parse(&key.name).ok()?,
            version: Version::parse(&key.version).ok()?,
            unpack: Unpack { format: Some(key.format), ..key.unpack },
            bytecode: key.bytecode,
            references: Vec::new(),
            store_path: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(unpack: Unpack, bytecode: bool) -> InstallRequest {
        InstallRequest {
            url: "https://example.org/x.tar.xz".into(),
            sha256: Sha256::parse(&"ab".repeat(32)).unwrap(),
            name: Name::parse("cuda-cudart").unwrap(),
            version: Version::parse("12.4.127").unwrap(),
            unpack,
            bytecode,
            references: Vec::new(),
            store_path: None,
        }
    }

    #[test]
    fn a_source_key_of_either_version_reads_back_as_the_request_it_was_made_from() {
        let moves = |p: &[(&str, &str)]| p.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
        for (root, moves) in [
            (None, moves(&[])),
            (Some("python/install".to_owned()), moves(&[])),
            (None, moves(&[("LICENSE", "share/licenses/x/LICENSE")])),
            (Some("a/b".to_owned()), moves(&[("LICENSE", "l/L"), ("v.json", "s/v")])),
        ] {
            let bytecode = root.is_some();
            let unpack = Unpack {
                format: Some(Format::TarXz),
                strip_components: 1,
                subdir: Some("opt".into()),
                moves,
                root,
            };
            let request = request(unpack, bytecode);
            let keys = request.source_keys(Format::TarXz);
            assert_eq!(keys.len(), 2, "{keys:?}");
            for key in &keys {
                let back = InstallRequest::from_source_key(key, &request.url).unwrap();
                assert_eq!((&back.unpack, back.bytecode), (&request.unpack, request.bytecode), "{key}");
                assert_eq!(
                    (back.sha256, back.name, back.version),
                    (request.sha256, request.name.clone(), request.version.clone())
                );
            }
        }
    }

    /// The second key is what stores made before key version 2 recorded for the same request:
    /// they must keep finding their paths (the encodings themselves are pinned in envctl-core).
    #[test]
    fn the_version_1_key_is_what_older_stores_recorded() {
        let sha = "ab".repeat(32);
        let plain = request(Unpack::default(), false).source_keys(Format::TarXz);
        assert!(plain[0].starts_with("2 {"), "{}", plain[0]);
        assert_eq!(plain[1], format!("{sha} cuda-cudart 12.4.127 tar.xz strip=0 subdir="));
        let all = Unpack {
            format: Some(Format::TarXz),
            strip_components: 2,
            subdir: Some("opt/x".into()),
            moves: [("LICENSE", "share/l/LICENSE"), ("a", "b/a")].map(|(f, t)| (f.into(), t.into())).into(),
            root: Some("python/install".into()),
        };
        assert_eq!(
            request(all, true).source_keys(Format::TarXz)[1],
            format!(
                "{sha} cuda-cudart 12.4.127 tar.xz strip=2 subdir=opt/x root=python/install move=LICENSE>share/l/LICENSE;a>b/a bytecode=interpreter-ordered"
            )
        );
        // Keys of trees the old compiler made still read back.
        let old = format!("{sha} python 3.11.9 tar.zst strip=0 subdir= bytecode=interpreter");
        assert!(InstallRequest::from_source_key(&old, "u").unwrap().bytecode);
    }
}
