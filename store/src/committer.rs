//! Trees that wait for their flush. An `apply`'s install workers hand each finished tree to one
//! committer thread and go on to the next download at once, so the disk writes one package while
//! the cores unpack the next: a worker used to wait for its own flush (a `syncfs` that also waited
//! for every tree the other workers were writing) before it could start anything else.
//!
//! The committer takes whatever has gathered, flushes it together (one `syncfs` covers every tree
//! finished before it started; see `flush.rs`), then moves each tree into place and registers it
//! (`Store::commit_flushed`), the same commit point as before: nothing is registered before it is
//! on disk. Each tree's source lock is held until then, so a second process installing the same
//! source waits and then finds it. The committer never takes a source lock, so holding several
//! (one per tree waiting) cannot deadlock two applies of overlapping closures: every tree waiting
//! is committed without waiting for anyone's source lock.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};

use envctl_core::StorePathName;

use crate::db::SourceRecord;
use crate::error::Result;
use crate::lock::FileLock;
use crate::reporter::Reporter;
use crate::request::Installed;
use crate::store::Store;
use crate::tempdir::TempDir;
use crate::tree::{TreeHash, TreeStats};

/// A finished tree waiting for its flush and commit.
pub(crate) struct Pending {
    /// The request's index (reports and results are by it).
    pub(crate) id: usize,
    pub(crate) work: TempDir,
    pub(crate) tree_dir: PathBuf,
    pub(crate) name: StorePathName,
    pub(crate) tree_hash: TreeHash,
    pub(crate) stats: TreeStats,
    pub(crate) package: (String, String),
    /// The source keys it answers, each with its source: the first is registered with the path,
    /// the others right after.
    pub(crate) sources: Vec<(String, SourceRecord)>,
    pub(crate) references: Vec<String>,
    pub(crate) skipped: Vec<String>,
    pub(crate) archive_size: Option<u64>,
    /// The binary cache it came from, when one gave it.
    pub(crate) cache: Option<String>,
    /// The source's lock, released once the tree is registered (or has failed); none for a path
    /// received from a cache outside an install.
    pub(crate) _source_lock: Option<FileLock>,
}

/// What an install leaves: done, or a tree for the committer.
pub(crate) enum Prepared {
    Done(Installed),
    Pending(Pending),
}

impl Store {
    /// Moves a flushed tree into place and registers it, with each of its sources.
    pub(crate) fn commit_pending(&self, p: Pending) -> Result<Installed> {
        let mut sources = p.sources.iter();
        let first = sources.next();
        let (dest, record) = self.commit_flushed(
            &p.work,
            &p.tree_dir,
            &p.name,
            &p.tree_hash,
            p.stats,
            p.package,
            first.map(|(k, s)| (k.as_str(), s)),
            &p.references,
        )?;
        let mut db = self.db();
        for (key, source) in sources {
            db.register(&record, Some((key, source)), &[])?;
        }
        drop(db);
        tracing::debug!(path = %dest.display(), files = p.stats.files, bytes = p.stats.size, "installed");
        Ok(Installed {
            path: dest,
            record,
            fetched: true,
            skipped: p.skipped,
            cache: p.cache,
            archive_size: p.archive_size,
        })
    }

    /// Flushes (when the store flushes) and commits one pending tree on this thread.
    pub(crate) fn finish_pending(&self, p: Pending) -> Result<Installed> {
        if self.options.fsync {
            crate::flush::flush_tree(&p.tree_dir, p.stats.size, p.stats.files)?;
        }
        self.commit_pending(p)
    }

    /// The installed path of `prepared`, committing it here when it is pending.
    pub(crate) fn finish(&self, prepared: Prepared) -> Result<Installed> {
        match prepared {
            Prepared::Done(installed) => Ok(installed),
            Prepared::Pending(p) => self.finish_pending(p),
        }
    }

    /// Flushes (when the store flushes) and commits every tree of `batch`; one result per tree,
    /// with its id. When flushing them together fails, each is flushed on its own, so an error
    /// names the tree it belongs to.
    fn flush_and_commit(&self, batch: Vec<Pending>) -> Vec<(usize, Result<Installed>)> {
        let together = !self.options.fsync || {
            let trees: Vec<_> =
                batch.iter().map(|p| (p.tree_dir.as_path(), p.stats.size, p.stats.files)).collect();
            crate::flush::flush_trees(&trees).is_ok()
        };
        batch
            .into_iter()
            .map(|p| {
                let id = p.id;
                let flushed = match together {
                    true => Ok(()),
                    false => crate::flush::flush_tree(&p.tree_dir, p.stats.size, p.stats.files).map(|_| ()),
                };
                (id, flushed.and_then(|()| self.commit_pending(p)))
            })
            .collect()
    }

    /// Runs `work`, which sends finished trees to the committer, on this thread while the
    /// committer flushes and commits them on another; returns what `work` returned and the
    /// committed results, each with its request's id. `reporter` is told `finished` as each is
    /// committed.
    pub(crate) fn with_committer<R>(
        &self,
        reporter: &dyn Reporter,
        work: impl FnOnce(&Sender<Pending>) -> R,
    ) -> (R, Vec<(usize, Result<Installed>)>) {
        let (tx, rx) = channel::<Pending>();
        std::thread::scope(|s| {
            let committer = s.spawn(move || self.commit_all(rx, reporter));
            let out = work(&tx);
            drop(tx);
            (out, committer.join().expect("the committer does not panic"))
        })
    }

    fn commit_all(&self, rx: Receiver<Pending>, reporter: &dyn Reporter) -> Vec<(usize, Result<Installed>)> {
        let mut results = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            for (id, result) in self.flush_and_commit(batch) {
                reporter.finished(id);
                results.push((id, result));
            }
        }
        results
    }
}
