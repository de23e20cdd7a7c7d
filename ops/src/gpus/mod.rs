//! The GPUs of a machine several teams share: who holds which GPU and how much of its memory,
//! which envctl session (profile, generation) a process runs, leases that give a session GPUs
//! nobody else holds, and memory held by processes that no longer compute.
//!
//! - [`nvml`]: the driver's management library, loaded at run time;
//! - [`lease`]: leases, a lock file per GPU held by the session for as long as it lives;
//! - [`activity`]: when each process last computed, for `--idle` and `reclaim`.

pub mod activity;
pub mod fits;
pub mod lease;
pub mod nvml;
pub mod policy;

use std::path::{Path, PathBuf};

pub use nvml::{DeviceInfo, NoDriver, Nvml};

/// One process holding memory on a GPU, as envctl sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GpuProcess {
    /// Its pid.
    pub pid: u32,
    /// GPU memory it holds, bytes.
    pub memory: u64,
    /// Its owner (a name where the user database has one, else the uid).
    pub user: String,
    /// Its uid, when /proc says.
    pub uid: Option<u32>,
    /// When it started, Unix seconds, when /proc says.
    pub started: Option<i64>,
    /// Its command line's first word.
    pub command: String,
    /// The envctl profile it runs in, when it is a session this user may look into.
    pub profile: Option<String>,
    /// That session's generation.
    pub generation: Option<String>,
    /// Seconds since it last ran a kernel (see [`activity`]).
    pub idle_for: Option<i64>,
}

/// One GPU and what holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Gpu {
    /// What NVML says of it.
    #[serde(flatten)]
    pub device: DeviceInfo,
    /// Its processes.
    #[serde(rename = "holders")]
    pub held_by: Vec<GpuProcess>,
    /// The session that leases it, if one does.
    pub lease: Option<lease::Holder>,
}

/// The machine's GPUs now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    /// The driver's version.
    pub driver: Option<String>,
    /// The highest CUDA version it runs (`12.4`).
    pub cuda: Option<String>,
    /// Each GPU.
    pub gpus: Vec<Gpu>,
}

/// What envctl takes as now, Unix seconds: `ENVCTL_NOW` when set (tests, replays), else the clock.
pub fn now() -> i64 {
    if let Some(t) = std::env::var("ENVCTL_NOW").ok().and_then(|v| v.trim().parse().ok()) {
        return t;
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Where a home keeps its leases and activity record.
pub fn dir(home: &Path) -> PathBuf {
    home.join("gpus")
}

/// Reads the GPUs, their processes and leases, and records this sample of who computes
/// (`home`'s activity record, when this user may write it).
pub fn snapshot(nvml: &Nvml, home: &Path) -> Result<Snapshot, String> {
    let devices = nvml.devices()?;
    let now = now();
    let idle = activity::record(&dir(home), &devices, now);
    let leases = lease::holders(&dir(home));
    let gpus = devices
        .into_iter()
        .map(|device| {
            let held_by = device
                .processes
                .iter()
                .map(|&(pid, memory)| {
                    let mut p = process(pid, memory);
                    p.idle_for = idle.get(&(device.uuid.clone(), pid)).copied();
                    p
                })
                .collect();
            let lease = leases.get(&device.uuid).cloned();
            Gpu { device, held_by, lease }
        })
        .collect();
    let cuda = nvml.cuda_driver_version().map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10));
    Ok(Snapshot { driver: nvml.driver_version(), cuda, gpus })
}

/// What /proc says of `pid`.
fn process(pid: u32, memory: u64) -> GpuProcess {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let uid = std::fs::read_to_string(proc.join("status")).ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
    });
    let user = match uid {
        Some(uid) => crate::users::user_name(uid).unwrap_or_else(|| uid.to_string()),
        None => "?".into(),
    };
    let command = std::fs::read(proc.join("cmdline"))
        .ok()
        .and_then(|c| c.split(|b| *b == 0).next().map(|w| String::from_utf8_lossy(w).into_owned()))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "?".into());
    // A session's variables, where this user may read them (its own processes; root any).
    let environ = std::fs::read(proc.join("environ")).unwrap_or_default();
    let var = |name: &str| {
        environ.split(|b| *b == 0).find_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.strip_prefix(&format!("{name}=")).map(str::to_owned)
        })
    };
    GpuProcess {
        pid,
        memory,
        user,
        uid,
        started: started(&proc),
        command,
        profile: var("ENVCTL_PROFILE"),
        generation: var("ENVCTL_GENERATION"),
        idle_for: None,
    }
}

/// When the process at `proc` started, Unix seconds: its start in clock ticks after boot
/// (`stat`'s 22nd field) plus the boot time (`/proc/stat`'s `btime`).
fn started(proc: &Path) -> Option<i64> {
    let stat = std::fs::read_to_string(proc.join("stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: i64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = rustix::param::clock_ticks_per_second().max(1) as i64;
    Some(boot + ticks / hz)
}

/// `pid`'s start time, as [`GpuProcess::started`] reads it: with the pid, it names one process
/// (a recycled pid starts later).
pub fn start_time(pid: u32) -> Option<i64> {
    started(&PathBuf::from(format!("/proc/{pid}")))
}

/// The processes of `snapshot` that hold GPU memory and have not computed for `idle_for`
/// seconds or more.
pub fn idle(snapshot: &Snapshot, idle_for: i64) -> Vec<(&Gpu, &GpuProcess)> {
    let mut out = Vec::new();
    for gpu in &snapshot.gpus {
        for p in &gpu.held_by {
            if p.idle_for.is_some_and(|t| t >= idle_for) {
                out.push((gpu, p));
            }
        }
    }
    out
}

/// Ends `p` (SIGTERM, then SIGKILL after `grace` if it is still there), or says why not: only
/// its owner (and root) may.
pub fn end(p: &GpuProcess, grace: std::time::Duration) -> Result<(), String> {
    use rustix::process::{Pid, Signal, kill_process};
    let Some(pid) = i32::try_from(p.pid).ok().and_then(Pid::from_raw) else {
        return Err(format!("cannot signal pid {}: not a process id", p.pid));
    };
    let same = || p.started.is_none() || start_time(p.pid) == p.started;
    if !same() {
        return Ok(());
    }
    match kill_process(pid, Signal::TERM) {
        Ok(()) => {}
        Err(rustix::io::Errno::PERM) => return Err(format!("pid {} is {}'s, not yours", p.pid, p.user)),
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => return Err(format!("cannot signal pid {}: {e}", p.pid)),
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if !alive(p.pid) || !same() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = kill_process(pid, Signal::KILL);
    Ok(())
}

/// Whether `pid` runs: it exists and is not a zombie (ended, waiting for its parent to read it).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    state.is_some_and(|s| s != "Z" && s != "X")
}
