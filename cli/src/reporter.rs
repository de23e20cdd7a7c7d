//! Progress bars for store work, drawn only on a terminal and never under `-v` or `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws one bar per download, under a line for the whole batch (`12/55 packages, 1.2 GiB`).
pub struct Bars {
    multi: MultiProgress,
    /// Whether bars are drawn (a terminal, no `-q`, no `-v`).
    drawn: bool,
    bars: Mutex<HashMap<usize, ProgressBar>>,
    /// The batch's line, and its counts.
    overall: Mutex<Option<ProgressBar>>,
    total: AtomicUsize,
    done: AtomicUsize,
    bytes: AtomicU64,
}

impl Bars {
    /// Bars on stderr when it is a terminal and `enabled`; invisible otherwise.
    pub fn new(enabled: bool) -> Bars {
        let drawn = enabled && std::io::stderr().is_terminal();
        let target = if drawn { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Bars {
            multi: MultiProgress::with_draw_target(target),
            drawn,
            bars: Mutex::new(HashMap::new()),
            overall: Mutex::new(None),
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    fn update_overall(&self) {
        if let Some(bar) = self.overall.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let (done, total) = (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed));
            bar.set_message(overall_message(done, total, self.bytes.load(Ordering::Relaxed)));
        }
    }
}

/// The batch's line: `12/55 packages, 1.2 GiB downloaded`.
fn overall_message(done: usize, total: usize, bytes: u64) -> String {
    let packages = if total == 1 { "package" } else { "packages" };
    match bytes {
        0 => format!("{done}/{total} {packages}"),
        b => format!("{done}/{total} {packages}, {} downloaded", crate::printer::bytes(b)),
    }
}

impl Bars {
    /// Bars unless the command line asks for quiet (`-q`) or logs (`-v`), which bars would garble.
    pub fn for_cli(cli: &crate::args::Cli) -> Bars {
        Bars::new(!cli.quiet && cli.verbose == 0)
    }
}

impl envctl_store::Reporter for Bars {
    fn starting(&self, count: usize) {
        self.total.store(count, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        // One request is its own bar; a batch gets a line above them.
        if count > 1 {
            let style =
                ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = self.multi.add(ProgressBar::new_spinner().with_style(style));
            *self.overall.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
            self.update_overall();
        }
    }

    fn download_started(&self, id: usize, url: &str, size: Option<u64>) {
        let bar = match size {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{msg:40!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        };
        let name = url.rsplit('/').next().unwrap_or(url).to_owned();
        let bar = self.multi.add(bar.with_message(name));
        let replaced = self.bars.lock().unwrap_or_else(|p| p.into_inner()).insert(id, bar);
        if let Some(old) = replaced {
            old.finish_and_clear();
        }
    }

    fn download_progress(&self, id: usize, bytes: u64) {
        if let Some(bar) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            bar.inc(bytes);
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.update_overall();
    }

    fn finished(&self, id: usize) {
        let removed = self.bars.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Some(bar) = removed {
            bar.finish_and_clear();
        }
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        self.update_overall();
        if done >= self.total.load(Ordering::Relaxed)
            && let Some(bar) = self.overall.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            bar.finish_and_clear();
        }
    }

    /// One line per retry: above the bars when they are drawn, else a plain line (not under `-q`).
    fn retrying(&self, _id: usize, error: &envctl_store::Error, attempt: u32, delay: std::time::Duration) {
        let line = format!("warning: {error}; retry {attempt} in {delay:?}");
        if self.drawn {
            let _ = self.multi.println(line);
        } else {
            crate::printer::status(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_batch_line_counts_packages_and_bytes() {
        assert_eq!(super::overall_message(0, 55, 0), "0/55 packages");
        assert_eq!(super::overall_message(12, 55, 1_288_490_189), "12/55 packages, 1.2 GiB downloaded");
        assert_eq!(super::overall_message(1, 1, 0), "1/1 package");
    }
}
