//! When each process holding GPU memory last computed, so that memory held by a process that no
//! longer does anything (a notebook kernel left open over the weekend) can be named and reclaimed.
//!
//! NVML says who ran kernels in its last few seconds of samples, not for how long nobody has; so
//! each look at the GPUs (`envctl gpus`, and the daemon once a minute) is recorded in
//! `gpus/activity.json`: for each process (GPU, pid and start time, so a recycled pid is another
//! process) when it was first seen and when it was last seen computing. A process's idle time is
//! from then (or from when it was first seen) to now. Where NVML keeps no per-process samples
//! (older GPUs), a process counts as computing while its GPU's utilization is above zero.

use std::collections::BTreeMap;
use std::path::Path;

use super::nvml::DeviceInfo;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Record {
    /// `UUID/pid/start` → what was seen.
    processes: BTreeMap<String, Seen>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Seen {
    first_seen: i64,
    last_busy: Option<i64>,
}

/// Records this sample and returns each process's idle seconds, by GPU UUID and pid. The record
/// is kept where this user may write it; otherwise the sample counts for this call alone.
pub fn record(dir: &Path, devices: &[DeviceInfo], now: i64) -> BTreeMap<(String, u32), i64> {
    let path = dir.join("activity.json");
    let lock = std::fs::create_dir_all(dir)
        .ok()
        .and_then(|()| envctl_store::FileLock::exclusive(&dir.join("activity.lock")).ok());
    let mut record: Record =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let mut kept = BTreeMap::new();
    let mut idle = BTreeMap::new();
    for d in devices {
        for &(pid, _) in &d.processes {
            let key = format!("{}/{pid}/{}", d.uuid, super::start_time(pid).unwrap_or(0));
            let busy = match &d.busy {
                Some(busy) => busy.iter().any(|(p, _)| *p == pid),
                None => d.utilization > 0,
            };
            let mut seen = record.processes.remove(&key).unwrap_or(Seen { first_seen: now, last_busy: None });
            seen.first_seen = seen.first_seen.min(now);
            if busy {
                seen.last_busy = Some(now);
            }
            idle.insert((d.uuid.clone(), pid), (now - seen.last_busy.unwrap_or(seen.first_seen)).max(0));
            kept.insert(key, seen);
        }
    }
    // Processes gone since the last look are forgotten.
    record.processes = kept;
    if lock.is_some()
        && let Ok(text) = serde_json::to_vec_pretty(&record)
    {
        let _ = envctl_store::write_atomically(&path, |f| Ok(std::io::Write::write_all(f, &text)?));
    }
    idle
}
