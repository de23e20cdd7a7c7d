//! Work shared out over the machine's cores: one queue of items, taken in order by one thread
//! per core, so that putting the largest first keeps every core busy to the end.

use crate::error::Result;

/// Runs `work` on every item, shared out over the machine's cores in order, and gathers what the
/// calls push. The first error wins (the others still finish their item).
pub fn on_every_core<I: Sync, T: Send>(
    items: &[I],
    work: impl Fn(&I, &mut Vec<T>) -> Result<()> + Sync,
) -> Result<Vec<T>> {
    on_threads(std::thread::available_parallelism().map_or(2, |n| n.get()), items, work)
}

/// [`on_every_core`] with `threads` threads: more than the cores for work that mostly waits on
/// the disk.
pub fn on_threads<I: Sync, T: Send>(
    threads: usize,
    items: &[I],
    work: impl Fn(&I, &mut Vec<T>) -> Result<()> + Sync,
) -> Result<Vec<T>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = threads.max(1).min(items.len().max(1));
    let results: Vec<Result<Vec<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        if let Err(e) = work(item, &mut out) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}
