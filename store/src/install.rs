//! The download pipeline: fetch a source (each location in turn, retrying transient failures),
//! hash it as it streams, unpack it on the fly, and commit the tree (see `Store::commit`).
//!
//! The source is read on its own thread and handed to the unpacker in chunks through a bounded
//! channel, so the network, sha256 and the unpacker (decompression, writing, blake3) overlap on
//! two cores while memory stays at a few MiB per install.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sha2::Digest;

use crate::db::{PathRecord, SourceRecord};
use crate::error::{Error, Result};
use crate::fetch::Location;
use crate::lock::FileLock;
use crate::path::{Name, Sha256, StorePathName, Version};
use crate::reporter::Reporter;
use crate::store::Store;
use crate::tempdir::TempDir;
use crate::unpack::{self, Format, UnpackOptions, Unpacked};

/// Bytes handed from the download thread to the unpacker at a time.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between them: bounds memory at about 2 MiB per install.
const CHANNEL_DEPTH: usize = 8;

/// How an interpreter's own standard library was compiled, as its source key says: by
/// `bytecode.rs`'s fixed order, the same on every machine. The same source under another way of
/// compiling is another key, so a store holding a tree the old compiler made compiles it again
/// instead of handing it to a lock made elsewhere.
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
}

impl Store {
    /// Installs one artifact, or finds it installed. Reports under id 0.
    pub fn install(&self, request: &InstallRequest, reporter: &dyn Reporter) -> Result<Installed> {
        let result = self.install_one(0, request, reporter);
        reporter.finished(0);
        result
    }

    /// Installs several artifacts, at most `jobs` at a time; one result per request, in order.
    pub fn install_all(
        &self,
        requests: &[InstallRequest],
        reporter: &dyn Reporter,
    ) -> Vec<Result<Installed>> {
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Result<Installed>>>> =
            requests.iter().map(|_| Mutex::new(None)).collect();
        let workers = self.options.jobs.clamp(1, requests.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(request) = requests.get(i) else { break };
                        let result = self.install_one(i, request, reporter);
                        reporter.finished(i);
                        *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .expect("every request was taken by a worker")
            })
            .collect()
    }

    pub(crate) fn source_key(request: &InstallRequest, format: Format) -> String {
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

    /// The install request a source key was made from (see [`Store::source_key`]), with `url`.
    pub(crate) fn request_from_key(key: &str, url: &str) -> Option<InstallRequest> {
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

    fn found(&self, record: PathRecord) -> Option<Installed> {
        let path = self.dir.join(&record.name);
        path.is_dir().then_some(Installed { path, record, fetched: false, skipped: Vec::new(), cache: None })
    }

    /// The installed path for a request, if the store has it; fetches nothing.
    pub fn find(&self, request: &InstallRequest) -> Result<Option<Installed>> {
        let format = match request.unpack.format {
            Some(f) => f,
            None => match Format::from_file_name(&request.url) {
                Some(f) => f,
                None => return Ok(None),
            },
        };
        Ok(self.db().path_for_source(&Self::source_key(request, format))?.and_then(|r| self.found(r)))
    }

    fn install_one(&self, id: usize, request: &InstallRequest, reporter: &dyn Reporter) -> Result<Installed> {
        let format = match request.unpack.format {
            Some(f) => f,
            None => Format::from_file_name(&request.url)
                .ok_or_else(|| Error::UnknownFormat(request.url.clone()))?,
        };
        let key = Self::source_key(request, format);
        {
            // References must be valid before any work is done; registration checks them again.
            let db = self.db();
            for reference in &request.references {
                if db.get(reference.as_str())?.is_none() {
                    return Err(Error::NotInStore(reference.to_string()));
                }
            }
        }
        let recorded = self.db().path_for_source(&key)?;
        if let Some(found) = recorded.and_then(|r| self.found(r)) {
            return Ok(found);
        }
        let locks = self.dir.join(".envctl/locks");
        let _source_lock = FileLock::exclusive(
            &locks.join(format!("{}.lock", &blake3::hash(key.as_bytes()).to_hex()[..32])),
        )?;
        // Another process may have installed it while we waited for the lock.
        let recorded = self.db().path_for_source(&key)?;
        if let Some(found) = recorded.and_then(|r| self.found(r)) {
            return Ok(found);
        }

        if !self.caches.is_empty()
            && let Some(installed) = self.ask_caches(request, &key, reporter)
        {
            return Ok(installed);
        }
        let work = TempDir::new(&self.dir.join(".tmp"))?;
        let (unpacked, tree_dir, url) = self.fetch_and_unpack(id, request, format, &work, reporter)?;
        let tree_hash = unpacked.tree.tree_hash();
        let stats = unpacked.tree.stats();
        let name = StorePathName::derive(&request.name, &request.version, &tree_hash);
        let package = (request.name.as_str().to_owned(), request.version.as_str().to_owned());
        let source = SourceRecord { sha256: request.sha256.to_string(), url };
        let references: Vec<String> = request.references.iter().map(|r| r.to_string()).collect();
        let (dest, record) = self.commit(
            &work,
            &tree_dir,
            &name,
            &tree_hash,
            stats,
            package,
            Some((&key, &source)),
            &references,
        )?;
        tracing::debug!(path = %dest.display(), files = stats.files, bytes = stats.size, "installed");
        Ok(Installed { path: dest, record, fetched: true, skipped: unpacked.skipped, cache: None })
    }

    /// Tries each location of the source, retrying transient failures with backoff. Returns the
    /// unpacked tree, where it is, and the URL it came from.
    pub(crate) fn fetch_and_unpack(
        &self,
        id: usize,
        request: &InstallRequest,
        format: Format,
        work: &TempDir,
        reporter: &dyn Reporter,
    ) -> Result<(Unpacked, PathBuf, String)> {
        let locations = self.fetcher.locations(&request.url)?;
        let options = self.fetcher.options();
        let mut failures: Vec<Error> = Vec::new();
        for location in &locations {
            let mut attempt = 0;
            loop {
                let tree_dir = work.fresh("tree")?;
                match self.attempt(id, location, request, format, work, &tree_dir, reporter) {
                    Ok(mut unpacked) => {
                        if request.unpack.bytecode {
                            unpacked.tree = crate::derive::compile_interpreter(self, &tree_dir)?;
                        }
                        return Ok((unpacked, tree_dir, location.to_string()));
                    }
                    Err(e) if e.should_retry() && attempt < options.retries => {
                        let delay = options.backoff * 2u32.saturating_pow(attempt);
                        reporter.retrying(id, &e, attempt + 1, delay);
                        // The reporter tells the user; this is for `-vv`.
                        tracing::debug!(error = %e, attempt = attempt + 1, "retrying after {delay:?}");
                        std::thread::sleep(delay);
                        attempt += 1;
                    }
                    // This location failed; another may serve the right bytes.
                    Err(
                        e @ (Error::HttpStatus { .. }
                        | Error::Transport { .. }
                        | Error::Redirect { .. }
                        | Error::HashMismatch { .. }
                        | Error::Io(_)),
                    ) => {
                        failures.push(e);
                        break;
                    }
                    // The bytes had the stated sha256, so every location serves this archive.
                    Err(e) => return Err(e),
                }
            }
        }
        if failures.len() == 1 {
            return Err(failures.pop().expect("one failure"));
        }
        Err(Error::AllLocationsFailed {
            url: request.url.clone(),
            errors: failures.iter().map(|e| e.to_string()).collect(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        id: usize,
        location: &Location,
        request: &InstallRequest,
        format: Format,
        work: &TempDir,
        tree_dir: &Path,
        reporter: &dyn Reporter,
    ) -> Result<Unpacked> {
        let opened = self.fetcher.open(location)?;
        let label = location.to_string();
        reporter.download_started(id, &label, opened.size);
        let limits = self.options.limits;
        std::thread::scope(|s| {
            let (tx, rx) = sync_channel(CHANNEL_DEPTH);
            // Read chunks go back to the download thread to be filled again.
            let (back, spare) = sync_channel(CHANNEL_DEPTH + 1);
            let reader = opened.reader;
            s.spawn(move || pump(reader, tx, spare, reporter, id));
            let mut chunks = ChunkReader { rx, back, chunk: Vec::new(), pos: 0, end: None };

            let unpacked = if format.needs_seek() {
                // Zip needs its central directory first: land the file, check it, then open it.
                let archive = work.path.join("download");
                let copied = (|| -> Result<()> {
                    let mut file = fs_err::File::create(&archive)?;
                    // A chunk at a time: io::copy's 8 KiB would cost a write(2) each.
                    loop {
                        let chunk = chunks.fill_buf()?;
                        if chunk.is_empty() {
                            break;
                        }
                        file.write_all(chunk)?;
                        let n = chunk.len();
                        chunks.consume(n);
                    }
                    file.flush()?;
                    Ok(())
                })();
                let end = chunks.finish();
                check(end, copied, request, &label)?;
                let file = fs_err::File::open(&archive)?.into_parts().0;
                if format == Format::Conda {
                    return unpack::unpack_conda(file, tree_dir, &label, &request.unpack, limits);
                }
                if request.unpack.installs_as_wheel(&request.url) {
                    let expected = (request.name.as_str(), request.version.as_str());
                    return crate::wheel::unpack_wheel(file, tree_dir, &label, limits, Some(expected));
                }
                return unpack::unpack_zip(file, tree_dir, &label, format, &request.unpack, limits);
            } else {
                match decoder(format, &mut chunks) {
                    Ok(reader) => {
                        unpack::unpack_tar(reader, tree_dir, &label, format, &request.unpack, limits)
                    }
                    Err(e) => Err(Error::Archive {
                        archive: label.clone(),
                        format: format.name().into(),
                        source: e,
                    }),
                }
            };
            // Whatever the unpacker made of it, read to the end: the digest covers every byte,
            // and a wrong digest explains a broken archive better than the archive's error does.
            let end = chunks.finish();
            check(end, unpacked, request, &label)
        })
    }
}

/// Combines the end of the stream with what the consumer made of it.
fn check<T>(
    end: std::io::Result<(Sha256, u64)>,
    consumed: Result<T>,
    request: &InstallRequest,
    label: &str,
) -> Result<T> {
    match end {
        Err(e) => Err(Error::Transport { url: label.to_owned(), message: e.to_string() }),
        Ok((actual, size)) if actual != request.sha256 => Err(Error::HashMismatch {
            url: label.to_owned(),
            expected: request.sha256.to_string(),
            actual: actual.to_string(),
            size,
        }),
        Ok(_) => consumed,
    }
}

fn decoder<'r>(format: Format, r: &'r mut ChunkReader) -> std::io::Result<Box<dyn Read + 'r>> {
    Ok(match format {
        Format::Tar => Box::new(r),
        Format::TarGz => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Format::TarXz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        Format::TarBz2 | Format::CondaV1 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Format::TarZst => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
            // Accept archives made with `zstd --long` (windows up to 2 GiB).
            d.window_log_max(31)?;
            Box::new(d)
        }
        Format::Zip | Format::Wheel | Format::Conda => unreachable!("zip formats are unpacked from a file"),
    })
}

enum Msg {
    Data(Vec<u8>),
    End(Sha256, u64),
    Failed(std::io::Error),
}

/// Reads the source on its own thread, hashing as bytes pass, so that the network, sha256 and the
/// unpacker (decompression, writing, blake3) overlap on two cores. Chunks the unpacker has read
/// come back on `spare` and are filled again: the download allocates only the few in flight.
fn pump(
    mut reader: Box<dyn Read + Send>,
    tx: SyncSender<Msg>,
    spare: Receiver<Vec<u8>>,
    reporter: &dyn Reporter,
    id: usize,
) {
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    loop {
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        let failed = loop {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break None,
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        break None;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        if filled > 0 {
            buf.truncate(filled);
            hasher.update(&buf);
            size += filled as u64;
            reporter.download_progress(id, filled as u64);
            if tx.send(Msg::Data(buf)).is_err() {
                return;
            }
        }
        if let Some(e) = failed {
            let _ = tx.send(Msg::Failed(e));
            return;
        }
        if filled < CHUNK {
            let _ = tx.send(Msg::End(Sha256(hasher.finalize().into()), size));
            return;
        }
    }
}

struct ChunkReader {
    rx: Receiver<Msg>,
    back: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    end: Option<std::io::Result<(Sha256, u64)>>,
}

impl ChunkReader {
    /// Reads to the end of the stream and returns its digest and size, or the transport's error.
    fn finish(&mut self) -> std::io::Result<(Sha256, u64)> {
        while self.end.is_none() {
            self.pos = self.chunk.len();
            let _ = self.fill_buf();
        }
        match self.end.take().expect("loop ran until the end") {
            Ok(v) => Ok(v),
            Err(e) => Err(e),
        }
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.chunk.len() && self.end.is_none() {
            match self.rx.recv() {
                Ok(Msg::Data(d)) => {
                    let read = std::mem::replace(&mut self.chunk, d);
                    // A full return channel or a finished download: the chunk is dropped.
                    let _ = self.back.try_send(read);
                    self.pos = 0;
                }
                Ok(Msg::End(sha, size)) => self.end = Some(Ok((sha, size))),
                Ok(Msg::Failed(e)) => {
                    let message = e.to_string();
                    self.end = Some(Err(e));
                    return Err(std::io::Error::other(message));
                }
                Err(_) => {
                    self.end = Some(Err(std::io::Error::other("the download thread stopped")));
                }
            }
        }
        if let Some(Err(e)) = &self.end {
            return Err(std::io::Error::other(e.to_string()));
        }
        Ok(&self.chunk[self.pos.min(self.chunk.len())..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
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
            let key = Store::source_key(&request, Format::TarXz);
            let back = Store::request_from_key(&key, &request.url).unwrap();
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
        let plain = Store::source_key(&request(UnpackOptions::default()), Format::TarXz);
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
            Store::source_key(&request(all), Format::TarXz),
            format!(
                "{sha} cuda-cudart 12.4.127 tar.xz strip=2 subdir=opt/x root=python/install move=LICENSE>share/l/LICENSE;a>b/a bytecode=interpreter-ordered"
            )
        );
        // Keys of trees the old compiler made still read back.
        let old = format!("{sha} python 3.11.9 tar.zst strip=0 subdir= bytecode=interpreter");
        assert!(Store::request_from_key(&old, "u").unwrap().unpack.bytecode);
    }
}
