//! Work shared out over threads: one queue of items, taken in order by a fixed number of
//! threads, so that putting the largest first keeps every thread busy to the end. Every parallel
//! loop in envctl is one of these (installs, downloads' sizes, a wheel's files, bytecode shards,
//! verify, optimise, flushes, deletions, pushes).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::Result;

/// The machine's cores (2 when it cannot say).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs `work(state, i, &items[i])` for every item on at most `threads` threads, each with its
/// own `state` (made by `init` on that thread), and gives each item's result in order. Once a
/// result satisfies `stop`, no thread takes another item: those left are `None`.
pub fn map_on_threads<I: Sync, S, R: Send>(
    threads: usize,
    items: &[I],
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize, &I) -> R + Sync,
    stop: impl Fn(&R) -> bool + Sync,
) -> Vec<Option<R>> {
    let next = AtomicUsize::new(0);
    let stopped = AtomicBool::new(false);
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let workers = threads.max(1).min(items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut state = init();
                while !stopped.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(&mut state, i, item);
                    if stop(&result) {
                        stopped.store(true, Ordering::Relaxed);
                    }
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                }
            });
        }
    });
    results.into_iter().map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).collect()
}

/// Runs `work` on every item, shared out over the machine's cores in order, and gathers what the
/// calls push. The first error wins (the others still finish their item).
pub fn on_every_core<I: Sync, T: Send>(
    items: &[I],
    work: impl Fn(&I, &mut Vec<T>) -> Result<()> + Sync,
) -> Result<Vec<T>> {
    on_threads(cores(), items, work)
}

/// [`on_every_core`] with `threads` threads: more than the cores for work that mostly waits on
/// the disk.
pub fn on_threads<I: Sync, T: Send>(
    threads: usize,
    items: &[I],
    work: impl Fn(&I, &mut Vec<T>) -> Result<()> + Sync,
) -> Result<Vec<T>> {
    let pushed = map_on_threads(
        threads,
        items,
        || (),
        |_, _, item| {
            let mut out = Vec::new();
            work(item, &mut out).map(|()| out)
        },
        Result::is_err,
    );
    let mut all = Vec::new();
    for r in pushed.into_iter().flatten() {
        all.extend(r?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_done_once_in_order_and_a_stop_leaves_the_rest() {
        let items: Vec<u32> = (0..100).collect();
        let made = std::sync::atomic::AtomicUsize::new(0);
        let out = map_on_threads(
            3,
            &items,
            || made.fetch_add(1, Ordering::Relaxed),
            |_, i, x| (i as u32, x * 2),
            |_| false,
        );
        assert_eq!(out, items.iter().map(|&x| Some((x, x * 2))).collect::<Vec<_>>());
        assert_eq!(made.load(Ordering::Relaxed), 3, "one state a thread");
        // One thread: nothing after the item that stops is taken.
        let out = map_on_threads(1, &items, || (), |_, _, &x| x, |&x| x == 10);
        assert_eq!(out.iter().flatten().count(), 11);
        assert!(out[11..].iter().all(Option::is_none));
        let err = on_threads(2, &items, |&x, out: &mut Vec<u32>| {
            if x == 50 {
                return Err(crate::error::Error::Build("fifty".into()));
            }
            out.push(x);
            Ok(())
        });
        assert!(err.unwrap_err().to_string().contains("fifty"));
    }
}
