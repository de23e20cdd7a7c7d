//! The download pipeline: fetch a source (each location in turn, retrying transient failures),
//! hash it as it streams and unpack it on the fly.
//!
//! The source is read on its own thread and handed to the unpacker in chunks through a bounded
//! channel, so the network, sha256 and the unpacker (decompression, writing, blake3) overlap on
//! two cores while memory stays at a few MiB per install.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sha2::Digest;

use crate::error::{Error, Result};
use crate::fetch::Location;
use crate::reporter::Reporter;
use crate::request::InstallRequest;
use crate::store::Store;
use crate::tempdir::TempDir;
use crate::unpack::{self, Format, Unpacked};
use envctl_core::Sha256;

/// Bytes handed from the download thread to the unpacker at a time.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between them: bounds memory at about 2 MiB per install.
const CHANNEL_DEPTH: usize = 8;

impl Store {
    /// Tries each location of the source, retrying transient failures with backoff. Returns the
    /// unpacked tree, where it is, the URL it came from and the archive's size.
    pub(crate) fn fetch_and_unpack(
        &self,
        id: usize,
        request: &InstallRequest,
        format: Format,
        work: &TempDir,
        reporter: &dyn Reporter,
    ) -> Result<(Unpacked, PathBuf, String, u64)> {
        let locations = self.fetcher.locations(&request.url)?;
        let options = self.fetcher.options();
        let mut failures: Vec<Error> = Vec::new();
        for location in &locations {
            let mut attempt = 0;
            loop {
                let tree_dir = work.fresh("tree")?;
                match self.attempt(id, location, request, format, work, &tree_dir, reporter) {
                    Ok((mut unpacked, size)) => {
                        if request.bytecode {
                            unpacked.tree = self.finish_interpreter(&tree_dir)?;
                        }
                        return Ok((unpacked, tree_dir, location.to_string(), size));
                    }
                    // The store's own disk refused the tree: every location would meet it.
                    Err(e) if e.is_out_of_room() => return Err(e),
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
                        | Error::UntrustedServer { .. }
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
    ) -> Result<(Unpacked, u64)> {
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
                // The archive's size is checked below with the digest, from the stream's end.
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
                let ((), size) = check(end, copied, request, &label)?;
                let file = fs_err::File::open(&archive)?.into_parts().0;
                let unpacked = if format == Format::Conda {
                    unpack::unpack_conda(file, tree_dir, &label, &request.unpack, limits)
                } else if request.unpack.installs_as_wheel(&request.url) {
                    let expected = (request.name.as_str(), request.version.as_str());
                    self.layer("a wheel")?.unpack_package(file, tree_dir, &label, limits, Some(expected))
                } else {
                    unpack::unpack_zip(file, tree_dir, &label, format, &request.unpack, limits)
                };
                return unpacked.map(|u| (u, size));
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

/// Combines the end of the stream with what the consumer made of it, and the stream's size.
fn check<T>(
    end: std::io::Result<(Sha256, u64)>,
    consumed: Result<T>,
    request: &InstallRequest,
    label: &str,
) -> Result<(T, u64)> {
    match end {
        Err(e) => Err(Error::Transport { url: label.to_owned(), message: e.to_string() }),
        Ok((actual, size)) if actual != request.sha256 => Err(Error::HashMismatch {
            url: label.to_owned(),
            expected: request.sha256.to_string(),
            actual: actual.to_string(),
            size,
        }),
        Ok((_, size)) => consumed.map(|c| (c, size)),
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
        // `InstallRequest::format` gives a source distribution's archive format; a key naming
        // `sdist` itself (edited by hand) has no archive to decode.
        Format::Sdist => {
            return Err(std::io::Error::other("`sdist` is not an archive format: name its tar.gz or zip"));
        }
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
