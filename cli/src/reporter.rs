//! Progress bars for store work, drawn only on a terminal and never under `-v` or `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws one bar per download.
pub struct Bars {
    multi: MultiProgress,
    /// Whether bars are drawn (a terminal, no `-q`, no `-v`).
    drawn: bool,
    bars: Mutex<HashMap<usize, ProgressBar>>,
}

impl Bars {
    /// Bars on stderr when it is a terminal and `enabled`; invisible otherwise.
    pub fn new(enabled: bool) -> Bars {
        let drawn = enabled && std::io::stderr().is_terminal();
        let target = if drawn { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Bars { multi: MultiProgress::with_draw_target(target), drawn, bars: Mutex::new(HashMap::new()) }
    }
}

impl Bars {
    /// Bars unless the command line asks for quiet (`-q`) or logs (`-v`), which bars would garble.
    pub fn for_cli(cli: &crate::args::Cli) -> Bars {
        Bars::new(!cli.quiet && cli.verbose == 0)
    }
}

impl envctl_store::Reporter for Bars {
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
    }

    fn finished(&self, id: usize) {
        let removed = self.bars.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Some(bar) = removed {
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
