//! How a source's archive becomes a package tree: its format and the options that map its entries
//! (the unpack spec). A recipe's source, a lock's source, the recipe cache and the store's install
//! request all embed this one [`Unpack`]; adding an option is one field here, one line of the
//! source key (`key.rs`) and one place in the store's unpacker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// An archive format, or a source distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Uncompressed tar.
    Tar,
    /// gzip-compressed tar.
    TarGz,
    /// xz-compressed tar.
    TarXz,
    /// zstd-compressed tar.
    TarZst,
    /// bzip2-compressed tar.
    TarBz2,
    /// zip.
    Zip,
    /// A Python wheel (a zip).
    Wheel,
    /// A conda package, format v2 (`.conda`): a zip holding `pkg-*.tar.zst` (the payload, which is
    /// installed) and `info-*.tar.zst` (metadata, which is not).
    Conda,
    /// A conda package, format v1 (`.tar.bz2`): a bzip2 tar whose `info/` is left out.
    CondaV1,
    /// A Python source distribution (a `.tar.gz` or `.zip` by its file name): what a recipe or a
    /// lock says of a source a wheel is built from. The store is asked for its archive format.
    Sdist,
}

/// The URL of the empty source (an empty tar archive, see the store's fetcher).
pub const EMPTY_URL: &str = "empty:";

impl Format {
    const NAMES: &[(&str, Format)] = &[
        ("tar", Format::Tar),
        ("tar.gz", Format::TarGz),
        ("tar.xz", Format::TarXz),
        ("tar.zst", Format::TarZst),
        ("tar.bz2", Format::TarBz2),
        ("zip", Format::Zip),
        ("wheel", Format::Wheel),
        ("conda", Format::Conda),
        ("conda-v1", Format::CondaV1),
        ("sdist", Format::Sdist),
    ];

    /// Parses a format name as recipes, locks and `--format` spell it (`tar.zst`, `zip`, `wheel`,
    /// `whl`, …).
    pub fn parse(s: &str) -> Result<Format, Invalid> {
        let s = if s == "whl" { "wheel" } else { s };
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, f)| *f).ok_or_else(|| Invalid {
            what: "archive format",
            value: s.to_owned(),
            rule: "expected one of tar, tar.gz, tar.xz, tar.zst, tar.bz2, zip, wheel, conda, conda-v1, sdist",
        })
    }

    /// Every name `parse` accepts, for messages.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::NAMES.iter().map(|(n, _)| *n)
    }

    /// Tells the archive format from a file name or URL (its last path segment, query stripped).
    pub fn from_file_name(url: &str) -> Option<Format> {
        if url == EMPTY_URL {
            return Some(Format::Tar);
        }
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        let suffixes: &[(&str, Format)] = &[
            (".tar.gz", Format::TarGz),
            (".tgz", Format::TarGz),
            (".tar.xz", Format::TarXz),
            (".txz", Format::TarXz),
            (".tar.zst", Format::TarZst),
            (".tzst", Format::TarZst),
            (".tar.bz2", Format::TarBz2),
            (".tbz2", Format::TarBz2),
            (".tar", Format::Tar),
            (".zip", Format::Zip),
            (".whl", Format::Wheel),
            (".conda", Format::Conda),
        ];
        suffixes.iter().find(|(s, _)| name.ends_with(s)).map(|(_, f)| *f)
    }

    /// The name as `parse` accepts it.
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// Whether the format needs random access (zip's directory sits at the end), so the download
    /// must land in a file before unpacking.
    pub fn needs_seek(self) -> bool {
        matches!(self, Format::Zip | Format::Wheel | Format::Conda)
    }
}

impl Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        let text = String::deserialize(d)?;
        Format::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How an archive's entries map into the package tree, as recipes (`[[source]]`), locks
/// (`[package.source]`) and the store's install requests all write it: TOML keys `format`,
/// `strip-components`, `subdir`, `move` and `root`, each left out when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Unpack {
    /// The format; told from the file name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Leading path components to drop from every entry; entries with no more are skipped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub strip_components: u32,
    /// A relative directory of the package tree where the contents land
    /// (`lib/python3.7/site-packages` for a wheel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdir: Option<String>,
    /// Entries to put elsewhere, `from` → `to`, both relative to the package tree after
    /// `strip-components`: an entry at `from`, or under it, lands at `to` instead (and outside
    /// `subdir`); the first `from` in sorted order that holds an entry wins. Keeps files every
    /// component ships (`LICENSE`) from colliding in a profile.
    #[serde(default, rename = "move", skip_serializing_if = "BTreeMap::is_empty")]
    pub moves: BTreeMap<String, String>,
    /// Only entries under this directory of the archive are kept, with it removed (before
    /// `strip-components`): a full CPython build keeps its interpreter under `python/install/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Unpack {
    /// Whether no option moves entries: a wheel is then installed by its own layout (RECORD
    /// checked) rather than unpacked as a zip.
    pub fn is_plain(&self) -> bool {
        self.strip_components == 0 && self.subdir.is_none() && self.moves.is_empty() && self.root.is_none()
    }

    /// The archive format of a source at `url`: the one given, else the file name's. A source
    /// distribution's is its file name's.
    pub fn archive_format(&self, url: &str) -> Option<Format> {
        match self.format {
            Some(Format::Sdist) | None => Format::from_file_name(url),
            Some(f) => Some(f),
        }
    }

    /// Whether a source at `url` unpacked this way is installed as a wheel (its own layout,
    /// RECORD checked), rather than unpacked as an archive.
    pub fn installs_as_wheel(&self, url: &str) -> bool {
        self.is_plain() && self.archive_format(url) == Some(Format::Wheel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_and_whl_is_a_wheel() {
        for name in Format::names() {
            assert_eq!(Format::parse(name).unwrap().name(), name);
        }
        assert_eq!(Format::parse("whl").unwrap(), Format::Wheel);
        let err = Format::parse("rar").unwrap_err().to_string();
        assert!(err.contains("`rar`") && err.contains("tar.zst"), "{err}");
    }

    #[test]
    fn the_format_comes_from_the_file_name_when_not_given() {
        let u = Unpack::default();
        assert_eq!(u.archive_format("https://x/a-1.0.tar.gz?sig=1"), Some(Format::TarGz));
        assert_eq!(u.archive_format("/w/a-1.0-py3-none-any.WHL"), Some(Format::Wheel));
        assert_eq!(u.archive_format("empty:"), Some(Format::Tar));
        assert_eq!(u.archive_format("https://x/a"), None);
        let sdist = Unpack { format: Some(Format::Sdist), ..Unpack::default() };
        assert_eq!(sdist.archive_format("gast-0.2.2.tar.gz"), Some(Format::TarGz));
        assert!(Unpack::default().installs_as_wheel("a-1-py3-none-any.whl"));
        let moved = Unpack { strip_components: 1, ..Unpack::default() };
        assert!(!moved.installs_as_wheel("a-1-py3-none-any.whl"));
    }
}
