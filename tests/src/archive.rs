//! Builds archives for tests, in every format the store reads, from one list of entries. Paths are
//! written into headers verbatim, so a test can make the hostile archives (absolute paths, `..`,
//! links out of the tree) that the `tar` crate's safe setters refuse to write.

use std::io::Write;

/// One archive entry.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A regular file with contents and mode.
    File { path: String, data: Vec<u8>, mode: u32 },
    /// A directory.
    Dir { path: String },
    /// A symbolic link.
    Symlink { path: String, target: String },
    /// A hard link to an earlier entry (tar only).
    HardLink { path: String, target: String },
    /// A fifo (tar only).
    Fifo { path: String },
    /// A regular file whose header claims `size` bytes of zeros, streamed without being held in
    /// memory: the shape of a decompression bomb (tar only).
    Zeros { path: String, size: u64 },
}

impl Entry {
    /// A regular file, mode 0644.
    pub fn file(path: &str, data: impl Into<Vec<u8>>) -> Entry {
        Entry::File { path: path.into(), data: data.into(), mode: 0o644 }
    }

    /// A regular file with the given mode.
    pub fn file_mode(path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Entry {
        Entry::File { path: path.into(), data: data.into(), mode }
    }

    /// A directory.
    pub fn dir(path: &str) -> Entry {
        Entry::Dir { path: path.into() }
    }

    /// A symlink.
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink { path: path.into(), target: target.into() }
    }

    /// A hard link.
    pub fn hard_link(path: &str, target: &str) -> Entry {
        Entry::HardLink { path: path.into(), target: target.into() }
    }
}

/// A list of entries that can be packed in any format.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    entries: Vec<Entry>,
}

fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let name = path.as_bytes();
    assert!(name.len() < 100, "test paths fit the tar header");
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h
}

fn set_link(h: &mut tar::Header, target: &str) {
    let t = target.as_bytes();
    assert!(t.len() < 100, "test link targets fit the tar header");
    h.as_gnu_mut().unwrap().linkname[..t.len()].copy_from_slice(t);
}

struct Zeros(u64);

impl std::io::Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        buf[..n].fill(0);
        self.0 -= n as u64;
        Ok(n)
    }
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds an entry.
    pub fn with(mut self, entry: Entry) -> Archive {
        self.entries.push(entry);
        self
    }

    /// Writes the archive as tar into `out`.
    pub fn write_tar<W: Write>(&self, out: W) -> W {
        let mut b = tar::Builder::new(out);
        for e in &self.entries {
            match e {
                Entry::File { path, data, mode } => {
                    let mut h = header(path, tar::EntryType::Regular, data.len() as u64, *mode);
                    h.set_cksum();
                    b.append(&h, data.as_slice()).unwrap();
                }
                Entry::Dir { path } => {
                    let mut h = header(path, tar::EntryType::Directory, 0, 0o755);
                    h.set_cksum();
                    b.append(&h, std::io::empty()).unwrap();
                }
                Entry::Symlink { path, target } => {
                    let mut h = header(path, tar::EntryType::Symlink, 0, 0o777);
                    set_link(&mut h, target);
                    h.set_cksum();
                    b.append(&h, std::io::empty()).unwrap();
                }
                Entry::HardLink { path, target } => {
                    let mut h = header(path, tar::EntryType::Link, 0, 0o644);
                    set_link(&mut h, target);
                    h.set_cksum();
                    b.append(&h, std::io::empty()).unwrap();
                }
                Entry::Fifo { path } => {
                    let mut h = header(path, tar::EntryType::Fifo, 0, 0o644);
                    h.set_cksum();
                    b.append(&h, std::io::empty()).unwrap();
                }
                Entry::Zeros { path, size } => {
                    let mut h = header(path, tar::EntryType::Regular, *size, 0o644);
                    h.set_cksum();
                    b.append(&h, Zeros(*size)).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// Plain tar.
    pub fn tar(&self) -> Vec<u8> {
        self.write_tar(Vec::new())
    }

    /// tar.gz.
    pub fn tar_gz(&self) -> Vec<u8> {
        self.write_tar(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()))
            .finish()
            .unwrap()
    }

    /// tar.xz.
    pub fn tar_xz(&self) -> Vec<u8> {
        self.write_tar(xz2::write::XzEncoder::new(Vec::new(), 1)).finish().unwrap()
    }

    /// tar.zst.
    pub fn tar_zst(&self) -> Vec<u8> {
        self.write_tar(zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap()).finish().unwrap()
    }

    /// tar.bz2.
    pub fn tar_bz2(&self) -> Vec<u8> {
        self.write_tar(bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast())).finish().unwrap()
    }

    /// zip (also a wheel). Hard links, fifos and zero streams are tar-only.
    pub fn zip(&self) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for e in &self.entries {
            match e {
                Entry::File { path, data, mode } => {
                    let o = zip::write::SimpleFileOptions::default()
                        .compression_method(zip::CompressionMethod::Deflated)
                        .unix_permissions(*mode);
                    z.start_file(path.as_str(), o).unwrap();
                    z.write_all(data).unwrap();
                }
                Entry::Dir { path } => {
                    z.add_directory(path.as_str(), zip::write::SimpleFileOptions::default()).unwrap();
                }
                Entry::Symlink { path, target } => {
                    z.add_symlink(path.as_str(), target.as_str(), zip::write::SimpleFileOptions::default())
                        .unwrap();
                }
                other => panic!("zip fixtures cannot hold {other:?}"),
            }
        }
        z.finish().unwrap().into_inner()
    }
}
