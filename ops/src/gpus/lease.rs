//! GPU leases: a session asks for N GPUs and gets N that no other lease holds and whose memory is
//! free enough, named by UUID in `CUDA_VISIBLE_DEVICES`, for exactly as long as it lives.
//!
//! A lease is an exclusive `flock` on `gpus/<UUID>.lock`, taken by `envctl run`/`shell` and kept
//! across `exec` by the program it runs: the kernel releases it when the last process holding the
//! descriptor ends, however it ends (SIGKILL included), so no lease outlives its session and none
//! needs cleaning up. `gpus/<UUID>.holder` says who holds it (pid, user, profile, since), for
//! `envctl gpus` and for the messages of those who wait.
//!
//! Waiting (`--wait`) is first come, first served: each waiter takes a numbered ticket
//! (`gpus/queue/<number>-<pid>`, locked by its owner) and only the oldest live ticket tries to
//! lease; a waiter that dies leaves a ticket nobody holds, which the next waiter removes.
//!
//! Inside a scheduler's job (`CUDA_VISIBLE_DEVICES` already set, as Slurm sets it for `--gres`),
//! the scheduler has decided: envctl takes what it was given and leases nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use envctl_store::FileLock;

use super::nvml::{DeviceInfo, Nvml};

/// At most this part of a GPU's memory may be in use for it to be leased.
pub const MAX_USED: f64 = 0.10;

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// The session's process.
    pub pid: u32,
    /// Its user.
    pub user: String,
    /// Its profile.
    pub profile: String,
    /// Since when, Unix seconds.
    pub since: i64,
}

/// GPUs held for a session. Dropped (in the daemon, when the session's connection closes), it
/// ends: the locks go and so do the holder files, which users who may not probe the daemon's
/// locks read. A session's own lease is never dropped: it ends with the program it was handed to.
#[derive(Debug)]
pub struct Lease {
    locks: Vec<FileLock>,
    dir: PathBuf,
    /// The GPUs' UUIDs, in the order CUDA will number them.
    pub uuids: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        for uuid in &self.uuids {
            let _ = std::fs::remove_file(self.dir.join(format!("{uuid}.holder")));
        }
    }
}

impl Lease {
    /// The value of `CUDA_VISIBLE_DEVICES` that shows the session its GPUs and no other.
    pub fn visible_devices(&self) -> String {
        self.uuids.join(",")
    }

    /// Lets the locks survive `exec`: the program run (and its children) hold the lease.
    pub fn inherit_across_exec(&self) -> std::io::Result<()> {
        self.locks.iter().try_for_each(envctl_store::FileLock::keep_across_exec)
    }
}

/// The GPUs a scheduler gave this process (`CUDA_VISIBLE_DEVICES`, non-empty), if one did.
pub fn scheduled() -> Option<String> {
    std::env::var("CUDA_VISIBLE_DEVICES").ok().filter(|v| !v.trim().is_empty())
}

impl Holder {
    /// This process, for `profile`'s session.
    pub fn this_process(profile: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            user: crate::users::User::current().name,
            profile: profile.to_owned(),
            since: super::now(),
        }
    }
}

/// Leases `count` GPUs for `holder`'s session, in `dir` (`<home>/gpus`). Without `wait`, fails
/// at once when they are not free, saying who holds what; with it, waits its turn, telling
/// `waiting` (once) why, until it has them or `cancelled` says the asker is gone.
pub fn acquire(
    nvml: &Nvml,
    dir: &Path,
    count: usize,
    wait: bool,
    holder: &Holder,
    waiting: &mut dyn FnMut(&str),
    cancelled: &dyn Fn() -> bool,
) -> Result<Lease, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    let holder = holder.clone();
    if !wait {
        let devices = nvml.devices()?;
        check_count(&devices, count)?;
        return take(dir, &devices, count, &holder).ok_or_else(|| busy(dir, &devices, count));
    }
    let ticket = Ticket::take(&dir.join("queue"))?;
    let mut told = false;
    loop {
        if ticket.first()? {
            let devices = nvml.devices()?;
            check_count(&devices, count)?;
            if let Some(lease) = take(dir, &devices, count, &holder) {
                drop(ticket);
                return Ok(lease);
            }
            if cancelled() {
                return Err("the session that asked is gone".into());
            }
            if !told {
                waiting(&busy(dir, &devices, count));
                told = true;
            }
        } else if !told {
            waiting(&format!("waiting for {count} GPU(s): others asked first"));
            told = true;
        }
        if cancelled() {
            return Err("the session that asked is gone".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn check_count(devices: &[DeviceInfo], count: usize) -> Result<(), String> {
    if count > devices.len() {
        return Err(format!("asked for {count} GPU(s) and this machine has {}", devices.len()));
    }
    Ok(())
}

/// Takes `count` free GPUs (the least used first), or none.
fn take(dir: &Path, devices: &[DeviceInfo], count: usize, holder: &Holder) -> Option<Lease> {
    let mut free: Vec<&DeviceInfo> = devices.iter().filter(|d| free_enough(d)).collect();
    free.sort_by_key(|d| (d.memory_used, d.index));
    let mut locks = Vec::new();
    let mut uuids = Vec::new();
    for d in free {
        if locks.len() == count {
            break;
        }
        // A look by `envctl gpus` holds a free lock for an instant: try once more.
        let path = dir.join(format!("{}.lock", d.uuid));
        let lock = FileLock::try_exclusive(&path).ok().flatten().or_else(|| {
            std::thread::sleep(Duration::from_millis(20));
            FileLock::try_exclusive(&path).ok().flatten()
        });
        if let Some(lock) = lock {
            let text = serde_json::to_vec(holder).unwrap_or_default();
            let _ = std::fs::write(dir.join(format!("{}.holder", d.uuid)), text);
            locks.push(lock);
            uuids.push(d.uuid.clone());
        }
    }
    (locks.len() == count).then(|| Lease { locks, dir: dir.to_path_buf(), uuids })
}

fn free_enough(d: &DeviceInfo) -> bool {
    d.memory_total > 0 && (d.memory_used as f64) <= MAX_USED * d.memory_total as f64
}

/// Why `count` GPUs cannot be leased now: each GPU and who holds it.
fn busy(dir: &Path, devices: &[DeviceInfo], count: usize) -> String {
    let holders = holders(dir);
    let mut why = Vec::new();
    for d in devices {
        let state = match holders.get(&d.uuid) {
            Some(h) => format!("leased by {} (pid {}, profile `{}`)", h.user, h.pid, h.profile),
            None if !free_enough(d) => format!(
                "{} of {} MiB in use by {} process(es)",
                d.memory_used >> 20,
                d.memory_total >> 20,
                d.processes.len()
            ),
            None => "free".into(),
        };
        why.push(format!("GPU {} ({}): {state}", d.index, d.uuid));
    }
    format!("{count} GPU(s) are not free now:\n    {}", why.join("\n    "))
}

/// The live leases in `dir`, by GPU UUID.
pub fn holders(dir: &Path) -> BTreeMap<String, Holder> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(uuid) = name.strip_suffix(".lock") else { continue };
        // Free when we can take it (and we let go at once); held otherwise. Who may not open
        // another user's lock (the daemon's) cannot tell: its holder file, which the daemon
        // removes when the lease ends, says.
        if let Ok(Some(_)) = FileLock::try_exclusive(&entry.path()) {
            continue;
        }
        let holder = std::fs::read(dir.join(format!("{uuid}.holder")))
            .ok()
            .and_then(|b| serde_json::from_slice::<Holder>(&b).ok());
        if let Some(holder) = holder {
            out.insert(uuid.to_owned(), holder);
        }
    }
    out
}

/// A place in the queue of those waiting for GPUs, held (locked) by its owner.
struct Ticket {
    path: PathBuf,
    _lock: FileLock,
}

impl Ticket {
    fn take(queue: &Path) -> Result<Ticket, String> {
        let err = |e: std::io::Error| format!("cannot queue for GPUs in `{}`: {e}", queue.display());
        std::fs::create_dir_all(queue).map_err(err)?;
        let _counter = FileLock::exclusive(&queue.join(".counter.lock")).map_err(err)?;
        let counter = queue.join(".next");
        let n: u64 = std::fs::read_to_string(&counter).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        std::fs::write(&counter, format!("{}\n", n + 1)).map_err(err)?;
        let path = queue.join(format!("{n:020}-{}", std::process::id()));
        let lock = FileLock::exclusive(&path).map_err(err)?;
        Ok(Ticket { path, _lock: lock })
    }

    /// Whether this is the oldest live ticket; dead ones before it are removed.
    fn first(&self) -> Result<bool, String> {
        let queue = self.path.parent().unwrap_or(&self.path);
        let mut tickets: Vec<PathBuf> = std::fs::read_dir(queue)
            .map_err(|e| format!("cannot read `{}`: {e}", queue.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
            .collect();
        tickets.sort();
        for t in tickets {
            if t == self.path {
                return Ok(true);
            }
            if !matches!(FileLock::try_exclusive(&t), Ok(Some(_))) {
                return Ok(false);
            }
            // Its owner is gone, or is between making it and locking it: look again where no
            // ticket is being made.
            let _counter = FileLock::exclusive(&queue.join(".counter.lock")).map_err(|e| e.to_string())?;
            if matches!(FileLock::try_exclusive(&t), Ok(Some(_))) {
                let _ = std::fs::remove_file(&t);
            } else {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
