//! Progress reporting. The store never prints; it tells a [`Reporter`], and the cli decides
//! whether to draw bars.

/// Receives progress of installs. Every method has an empty default. `id` is the index of the
/// request in the batch given to the store.
pub trait Reporter: Send + Sync {
    /// A batch of `count` requests begins (each then ends with [`Reporter::finished`]).
    fn starting(&self, _count: usize) {}
    /// A download began; `size` is known when the server sent a length.
    fn download_started(&self, _id: usize, _url: &str, _size: Option<u64>) {}
    /// `bytes` more bytes arrived.
    fn download_progress(&self, _id: usize, _bytes: u64) {}
    /// The request finished (installed, found, or failed).
    fn finished(&self, _id: usize) {}
    /// An attempt failed in a way worth trying again; the store waits `delay` and retries.
    fn retrying(&self, _id: usize, _error: &crate::Error, _attempt: u32, _delay: std::time::Duration) {}
}

/// A reporter that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReporter;

impl Reporter for NoReporter {}
