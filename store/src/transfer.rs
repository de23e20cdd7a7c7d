//! Store paths that travel between machines: the objects a binary cache or an exported closure
//! holds, how they are written, and how they are received.
//!
//! Per store path, two objects: `NAME.json`, its [`PathObject`] (name, package, version, tree
//! hash, size, references, the sources it answers, the archive's sha256, signatures), and
//! `NAME.tar.zst`, a deterministic archive of its tree (entries sorted, owner 0, a fixed mtime,
//! modes by the executable bit). A receiver trusts nothing it has not checked: the signature must be
//! by a trusted key and cover the object's name, tree hash, size, references and sources; the
//! name must be the one the store derives from the package, version and tree hash; the archive
//! is fetched through the same pipeline as any source (its sha256 checked while streaming, every
//! entry checked while unpacking); and the unpacked tree must have the signed tree hash. Only
//! then is it committed and registered, as any install is.
//!
//! Packages travel, and wheels built from source distributions (a build need not give the same
//! tree twice, so the first build is what a lock promises): generations and the other derived
//! paths (bytecode, `pyvenv.cfg`) are rebuilt by each machine from the packages,
//! deterministically, and name the store's own directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::committer::{Pending, Prepared};
use crate::error::{Error, Result};
use crate::keys::{PublicKey, SecretKey, fingerprint, trusted_by};
use crate::reporter::Reporter;
use crate::request::{InstallRequest, Installed};
use crate::store::Store;
use crate::tempdir::TempDir;
use crate::unpack::{Format, Unpack};
use envctl_core::{Name, Sha256, StorePathName, Version};

/// The object format this build writes.
pub const OBJECT_FORMAT: u32 = 1;

/// A store path's metadata object (`NAME.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathObject {
    /// The object format ([`OBJECT_FORMAT`]).
    pub format: u32,
    /// The store path's file name.
    pub name: String,
    /// Package name.
    pub package: String,
    /// Package version.
    pub version: String,
    /// Canonical tree hash (hex).
    pub tree_hash: String,
    /// Bytes in regular files.
    pub size: u64,
    /// Regular files and symlinks.
    pub files: u64,
    /// Store paths it refers to.
    pub references: Vec<String>,
    /// The sources this path answers: `(key, sha256, url)` as the store records them.
    pub sources: Vec<ObjectSource>,
    /// The archive object beside it.
    pub archive: ArchiveInfo,
    /// `NAME:BASE64` signatures of [`PathObject::fingerprint`].
    pub signatures: Vec<String>,
}

/// A source a path answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSource {
    /// The store's source key.
    pub key: String,
    /// The artifact's sha256.
    pub sha256: String,
    /// Where it was first fetched from.
    pub url: String,
}

/// The archive of a path's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveInfo {
    /// Its file name beside the object (`NAME.tar.zst`).
    pub file: String,
    /// Its sha256.
    pub sha256: String,
    /// Its length.
    pub size: u64,
}

impl PathObject {
    /// What its signatures sign.
    pub fn fingerprint(&self) -> Vec<u8> {
        let keys: Vec<String> = self.sources.iter().map(|s| s.key.clone()).collect();
        fingerprint(&self.name, &self.tree_hash, self.size, &self.references, &keys)
    }

    /// Parses an object, naming `origin` in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<PathObject> {
        let object: PathObject = serde_json::from_slice(bytes).map_err(|e| Error::Untrusted {
            name: origin.to_owned(),
            why: format!("not a path object: {e}"),
        })?;
        if object.format > OBJECT_FORMAT {
            return Err(Error::Untrusted {
                name: object.name,
                why: format!("object format {} is newer than this envctl understands", object.format),
            });
        }
        Ok(object)
    }

    /// Checks everything that can be checked before fetching the archive: a trusted signature,
    /// and a name that is the one its package, version and tree hash give.
    pub fn check(&self, trusted: &[PublicKey]) -> Result<()> {
        let untrusted = |why: String| Error::Untrusted { name: self.name.clone(), why };
        if trusted.is_empty() {
            return Err(untrusted(
                "no key is trusted: add one to `trusted-keys` in the configuration".into(),
            ));
        }
        if trusted_by(trusted, &self.fingerprint(), &self.signatures).is_none() {
            let by: Vec<&str> =
                self.signatures.iter().filter_map(|s| s.split_once(':').map(|(n, _)| n)).collect();
            return Err(untrusted(if by.is_empty() {
                "it is not signed".into()
            } else {
                format!("no trusted key verifies its signature (signed by {})", by.join(", "))
            }));
        }
        let tree = crate::tree::TreeHash(
            hex_32(&self.tree_hash)
                .ok_or_else(|| untrusted(format!("`{}` is not a tree hash", self.tree_hash)))?,
        );
        let derived =
            StorePathName::derive(&Name::parse(&self.package)?, &Version::parse(&self.version)?, &tree.0);
        if derived.as_str() != self.name {
            return Err(untrusted(format!(
                "its package, version and tree hash give the store path `{derived}`, not `{}`",
                self.name
            )));
        }
        Ok(())
    }
}

fn hex_32(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

impl Store {
    /// The paths of `roots`' closure that travel (packages, and derived paths their layer says
    /// travel: built wheels, bytecode; not generations), each after the paths it refers to.
    pub fn transferable_closure(&self, roots: &[String]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, bool)> = roots.iter().rev().map(|r| (r.clone(), false)).collect();
        while let Some((name, expanded)) = stack.pop() {
            if expanded {
                if self.is_package(&name)? {
                    order.push(name);
                }
                continue;
            }
            if !seen.insert(name.clone()) {
                continue;
            }
            if self.db().get(&name)?.is_none() {
                return Err(Error::NotInStore(name));
            }
            stack.push((name.clone(), true));
            for r in self.references_of(&name)?.into_iter().rev() {
                if !seen.contains(&r) {
                    stack.push((r, false));
                }
            }
        }
        Ok(order)
    }

    /// Whether a path travels: installed from a source, or derived by a derivation its layer
    /// says travels (a wheel built from source, bytecode); not a generation, nor what each
    /// machine makes for itself (a `pyvenv.cfg`).
    fn is_package(&self, name: &str) -> Result<bool> {
        let (sources, generation) = {
            let db = self.db();
            (db.keyed_sources(name)?, db.build_of(name)?.is_some())
        };
        if generation || sources.is_empty() {
            return Ok(false);
        }
        for (key, _) in &sources {
            if key.starts_with("derived:") {
                // The layer reads the store's records: the database is not held here.
                let layer = self.layer("a derived path's push")?;
                if !layer.derivation(self, key)?.is_some_and(|d| d.travels) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The object for `name`, signed with `key`; `archive` is the sha256 and size of its archive.
    pub fn path_object(&self, name: &str, key: &SecretKey, archive: (String, u64)) -> Result<PathObject> {
        let db = self.db();
        let record = db.get(name)?.ok_or_else(|| Error::NotInStore(name.to_owned()))?;
        let mut references = db.references(name)?;
        references.sort();
        // A source recorded under a version-2 key is signed under its version-1 twin as well, so
        // that an envctl from before version 2 finds it in the cache and accepts it.
        let mut sources: Vec<ObjectSource> = Vec::new();
        for (key, s) in db.keyed_sources(name)? {
            let twin = envctl_core::SourceKey::decode(&key)
                .filter(|_| key.starts_with("2 "))
                .and_then(|k| k.encode_v1());
            for key in std::iter::once(key).chain(twin) {
                if !sources.iter().any(|o| o.key == key) {
                    sources.push(ObjectSource { key, sha256: s.sha256.clone(), url: s.url.clone() });
                }
            }
        }
        sources.sort_by(|a, b| a.key.cmp(&b.key));
        let mut object = PathObject {
            format: OBJECT_FORMAT,
            name: record.name.clone(),
            package: record.package,
            version: record.version,
            tree_hash: record.tree_hash,
            size: record.size,
            files: record.files,
            references,
            sources,
            archive: ArchiveInfo {
                file: format!("{}.tar.zst", record.name),
                sha256: archive.0,
                size: archive.1,
            },
            signatures: Vec::new(),
        };
        object.signatures.push(key.sign(&object.fingerprint()));
        Ok(object)
    }

    /// Writes the deterministic `tar.zst` of a valid path's tree to `out`; returns its sha256 and
    /// size.
    pub fn write_archive(&self, name: &str, out: impl Write) -> Result<(String, u64)> {
        use sha2::Digest;
        let dir = self.dir().join(name);
        if self.db().get(name)?.is_none() || !dir.is_dir() {
            return Err(Error::NotInStore(name.to_owned()));
        }
        let counted = Counting { inner: out, sha: sha2::Sha256::new(), size: 0 };
        let encoder = zstd::Encoder::new(counted, 3)?;
        let mut tar = tar::Builder::new(encoder);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        for entry in walkdir::WalkDir::new(&dir).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| Error::Io(e.into()))?;
            let rel = entry.path().strip_prefix(&dir).expect("walkdir stays inside its root");
            let meta = entry.path().symlink_metadata()?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = fs_err::read_link(entry.path())?;
                tar.append_link(&mut header, rel, &target)?;
            } else if ft.is_dir() {
                header.set_size(0);
                tar.append_data(&mut header, rel, std::io::empty())?;
            } else {
                let file = fs_err::File::open(entry.path())?;
                tar.append_data(&mut header, rel, file)?;
            }
        }
        let encoder = tar.into_inner()?;
        let mut counted = encoder.finish()?;
        counted.inner.flush()?;
        Ok((hex::encode(counted.sha.finalize()), counted.size))
    }

    /// Receives a path from `object` and its archive at `archive_url`, checked against `trusted`
    /// (see the module docs). A path the store already has is not fetched; it only gains the
    /// object's sources.
    pub fn receive(
        &self,
        object: &PathObject,
        archive_url: &str,
        trusted: &[PublicKey],
        reporter: &dyn Reporter,
    ) -> Result<Installed> {
        let prepared = self.receive_prepared(object, archive_url, trusted, reporter)?;
        self.finish(prepared)
    }

    /// [`Store::receive`], leaving the checked tree to be flushed and committed (committer.rs).
    pub(crate) fn receive_prepared(
        &self,
        object: &PathObject,
        archive_url: &str,
        trusted: &[PublicKey],
        reporter: &dyn Reporter,
    ) -> Result<Prepared> {
        object.check(trusted)?;
        let name = StorePathName::parse(&object.name)?;
        let sources: BTreeMap<&str, crate::db::SourceRecord> = object
            .sources
            .iter()
            .map(|s| {
                (s.key.as_str(), crate::db::SourceRecord { sha256: s.sha256.clone(), url: s.url.clone() })
            })
            .collect();
        // Bound first: a guard in the condition would live through the body, which locks the
        // database again (an import of a path the store had hung there).
        let had = self.db().get(name.as_str())?;
        if let Some(record) = had
            && self.dir().join(name.as_str()).is_dir()
        {
            let mut db = self.db();
            for (key, source) in &sources {
                db.register(&record, Some((key, source)), &[])?;
            }
            return Ok(Prepared::Done(Installed::present(self.dir().join(name.as_str()), record)));
        }
        let request = InstallRequest {
            url: archive_url.to_owned(),
            sha256: Sha256::parse(&object.archive.sha256)?,
            name: Name::parse(&object.package)?,
            version: Version::parse(&object.version)?,
            unpack: Unpack { format: Some(Format::TarZst), ..Default::default() },
            bytecode: false,
            references: object
                .references
                .iter()
                .map(|r| StorePathName::parse(r).map_err(Error::from))
                .collect::<Result<_>>()?,
            store_path: None,
        };
        for reference in &request.references {
            if self.db().get(reference.as_str())?.is_none() {
                return Err(Error::NotInStore(reference.to_string()));
            }
        }
        let work = TempDir::new(&self.dir().join(".tmp"))?;
        let (unpacked, tree_dir, _, _) =
            self.fetch_and_unpack(0, &request, Format::TarZst, &work, reporter)?;
        let tree_hash = unpacked.tree.tree_hash();
        if tree_hash.to_string() != object.tree_hash {
            return Err(Error::Untrusted {
                name: object.name.clone(),
                why: format!(
                    "its archive unpacks to tree {tree_hash}, the signed object says {}",
                    object.tree_hash
                ),
            });
        }
        let stats = unpacked.tree.stats();
        Ok(Prepared::Pending(Pending {
            id: 0,
            work,
            tree_dir,
            name,
            tree_hash,
            stats,
            package: (object.package.clone(), object.version.clone()),
            sources: sources.into_iter().map(|(k, s)| (k.to_owned(), s)).collect(),
            references: object.references.clone(),
            skipped: unpacked.skipped,
            archive_size: None,
            cache: None,
            _source_lock: None,
        }))
    }
}

/// A writer that hashes and counts what passes through.
struct Counting<W> {
    inner: W,
    sha: sha2::Sha256,
    size: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `path` through a temporary file beside it (what `write` puts there, flushed to disk)
/// and a rename, so a reader sees the whole file or none; on failure the temporary file goes.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut fs_err::File) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs_err::File::create(&tmp)?;
    let result = write(&mut file).and_then(|()| Ok(file.sync_all()?));
    drop(file);
    match result {
        Ok(()) => Ok(fs_err::rename(&tmp, path)?),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    /// A cache's `NAME.json` is read by every envctl that pulls from it, later ones included: its
    /// fields are pinned, and a change is a new OBJECT_FORMAT.
    #[test]
    fn golden_the_path_object_is_pinned() {
        let object = PathObject {
            format: OBJECT_FORMAT,
            name: "0lwxja6pyhxf37p20yvflw49mpd62gwn-hello-1.0".into(),
            package: "hello".into(),
            version: "1.0".into(),
            tree_hash: "ab".repeat(32),
            size: 10,
            files: 2,
            references: vec!["r".into()],
            sources: vec![ObjectSource {
                key: "k".into(),
                sha256: "cd".repeat(32),
                url: "https://x/h.tar.gz".into(),
            }],
            archive: ArchiveInfo {
                file: "0lwxja6pyhxf37p20yvflw49mpd62gwn-hello-1.0.tar.zst".into(),
                sha256: "ef".repeat(32),
                size: 99,
            },
            signatures: vec!["lab:c2ln".into()],
        };
        let text = String::from_utf8(serde_json::to_vec_pretty(&object).unwrap()).unwrap();
        let expected = format!(
            r#"{{
  "format": 1,
  "name": "0lwxja6pyhxf37p20yvflw49mpd62gwn-hello-1.0",
  "package": "hello",
  "version": "1.0",
  "tree_hash": "{ab}",
  "size": 10,
  "files": 2,
  "references": [
    "r"
  ],
  "sources": [
    {{
      "key": "k",
      "sha256": "{cd}",
      "url": "https://x/h.tar.gz"
    }}
  ],
  "archive": {{
    "file": "0lwxja6pyhxf37p20yvflw49mpd62gwn-hello-1.0.tar.zst",
    "sha256": "{ef}",
    "size": 99
  }},
  "signatures": [
    "lab:c2ln"
  ]
}}"#,
            ab = "ab".repeat(32),
            cd = "cd".repeat(32),
            ef = "ef".repeat(32)
        );
        assert_eq!(text, expected);
        assert_eq!(PathObject::parse(text.as_bytes(), "x").unwrap(), object);
    }
}
