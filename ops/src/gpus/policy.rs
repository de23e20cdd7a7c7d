//! The daemon's idle policy (`gpu-idle-limit`, `gpu-idle-warning` in `[daemon]`): a process that
//! has held GPU memory without computing for the limit is ended, after its owner was warned the
//! warning's length before: on the terminal it runs on (if it has one), in the daemon's log, and
//! in `envctl gpus` (a notice in `gpus/warned.json` with when it will end). A process that
//! computes again before then is left alone, and its warning forgotten.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::{GpuProcess, Snapshot};
use crate::error::{Failure, Result};
use crate::settings::DaemonConfig;

/// The policy, with the warnings given so far (by GPU, pid and start time).
pub struct IdlePolicy {
    limit: i64,
    warning: i64,
    warned: BTreeMap<String, Warned>,
}

/// A warning given: to whom, and when the process will be ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Warned {
    /// The process.
    pub pid: u32,
    /// Its owner.
    pub user: String,
    /// When it will be ended, Unix seconds.
    pub ends_at: i64,
}

impl IdlePolicy {
    /// The configuration's policy, if it sets a limit.
    pub fn from_config(c: &DaemonConfig) -> Result<Option<IdlePolicy>> {
        let Some(limit) = &c.gpu_idle_limit else { return Ok(None) };
        let limit = crate::generations::parse_age(limit)
            .map_err(|f| f.context_for("invalid `gpu-idle-limit` in [daemon]"))?;
        let warning = crate::generations::parse_age(&c.gpu_idle_warning)
            .map_err(|f| f.context_for("invalid `gpu-idle-warning` in [daemon]"))?;
        if warning >= limit {
            return Err(Failure::new(
                "invalid idle policy in [daemon]",
                format!("the warning ({}) must come before the limit ({})", c.gpu_idle_warning, limit),
            ));
        }
        Ok(Some(IdlePolicy { limit, warning, warned: BTreeMap::new() }))
    }

    /// Warns about and ends what this look at the GPUs finds idle.
    pub fn apply(&mut self, snapshot: &Snapshot, home: &Path) {
        let now = super::now();
        let mut still = BTreeMap::new();
        for gpu in &snapshot.gpus {
            for p in &gpu.held_by {
                let Some(idle) = p.idle_for else { continue };
                let key = format!("{}/{}/{}", gpu.device.uuid, p.pid, p.started.unwrap_or(0));
                if idle < self.limit - self.warning {
                    continue;
                }
                let warned = match self.warned.remove(&key) {
                    Some(w) => w,
                    None => {
                        let ends_at = now + (self.limit - idle).max(self.warning);
                        warn(p, gpu.device.index, ends_at - now);
                        Warned { pid: p.pid, user: p.user.clone(), ends_at }
                    }
                };
                if now >= warned.ends_at {
                    tracing::warn!(pid = p.pid, user = %p.user, gpu = gpu.device.index, "ending an idle process");
                    if let Err(e) = super::end(p, std::time::Duration::from_secs(10)) {
                        tracing::warn!(pid = p.pid, "cannot end it: {e}");
                    }
                    continue;
                }
                still.insert(key, warned);
            }
        }
        self.warned = still;
        // For `envctl gpus`, which everyone may run.
        let path = super::dir(home).join("warned.json");
        let notices: Vec<&Warned> = self.warned.values().collect();
        if let Ok(text) = serde_json::to_vec_pretty(&notices) {
            let _ = envctl_store::write_atomically(&path, |f| Ok(f.write_all(&text)?));
        }
    }
}

/// Tells `p`'s owner that it will be ended in `secs`: on its terminal if it has one, and in the
/// daemon's log.
fn warn(p: &GpuProcess, gpu: u32, secs: i64) {
    let text = format!(
        "\r\nenvctl: process {} ({}) has held {} MiB on GPU {gpu} without computing; it will be ended in {} min unless it computes again\r\n",
        p.pid,
        p.command,
        p.memory >> 20,
        (secs + 59) / 60
    );
    tracing::warn!(pid = p.pid, user = %p.user, gpu, "warned: an idle process will be ended in {secs} s");
    for fd in [2, 1, 0] {
        let link = std::fs::read_link(format!("/proc/{}/fd/{fd}", p.pid)).unwrap_or_default();
        let tty = link.to_string_lossy();
        if tty.starts_with("/dev/pts/") || tty.starts_with("/dev/tty") {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&*tty) {
                let _ = f.write_all(text.as_bytes());
            }
            break;
        }
    }
}

/// The warnings the daemon gave, for `envctl gpus` (any user may read them).
pub fn warned(home: &Path) -> Vec<Warned> {
    std::fs::read(super::dir(home).join("warned.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
