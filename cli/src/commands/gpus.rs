//! `envctl gpus`: each GPU, who holds its memory (user, envctl profile and generation, lease),
//! and the processes that hold memory without computing; `envctl gpus reclaim` ends those.

use envctl_ops::gpus::{self, GpuProcess, Nvml, Snapshot};

use super::Status;
use crate::args::{GpusArgs, GpusCommand, ReclaimArgs};
use crate::error::{Failure, Result};
use crate::printer;
use crate::settings::Settings;

pub fn run(args: &GpusArgs, settings: &Settings) -> Result<Status> {
    let snapshot = look(settings)?;
    match &args.command {
        Some(GpusCommand::Reclaim(r)) => reclaim(r, &snapshot),
        None if args.idle => idle(args, &snapshot),
        None if args.fits => fits(args, &snapshot, settings),
        None => list(args, &snapshot, &gpus::policy::warned(&settings.home)),
    }
}

/// Each GPU and the bundled stacks it runs, with NVML's driver as the machine's.
fn fits(args: &GpusArgs, s: &Snapshot, settings: &Settings) -> Result<Status> {
    let mut facts = crate::system::facts(None, settings.system())?;
    if let Some(v) = s.driver.as_deref().and_then(|d| envctl_recipes::Version::parse(d).ok()) {
        facts.driver = Some(v);
        facts.origin.insert("driver", "NVML".into());
    }
    if let Some(v) = s.cuda.as_deref().and_then(|c| envctl_recipes::Version::parse(c).ok()) {
        facts.cuda = Some(v);
        facts.origin.insert("cuda", "NVML".into());
    }
    let repo = settings.repository()?;
    let mut rows = Vec::new();
    for g in &s.gpus {
        let d = &g.device;
        let found = gpus::fits::fits(&repo, &facts, d.compute_capability);
        if !args.json {
            let cc =
                d.compute_capability.map(|(a, b)| format!("compute {a}.{b}")).unwrap_or("compute ?".into());
            printer::data(&format!(
                "GPU {}  {}  {cc}, driver {}",
                d.index,
                d.name,
                s.driver.as_deref().unwrap_or("?")
            ));
            for line in fit_lines(&found) {
                printer::data(&format!("    {line}"));
            }
        }
        rows.push(serde_json::json!({ "gpu": d.index, "uuid": d.uuid, "fits": found }));
    }
    if args.json {
        printer::json(&rows);
    }
    Ok(Status::Success)
}

/// `runs: a, b` and `not: c (why)` lines for a GPU.
pub(super) fn fit_lines(found: &[gpus::fits::Fit]) -> Vec<String> {
    let names = |checked: bool| -> Vec<&str> {
        found
            .iter()
            .filter(|f| f.why_not.is_none() && f.compute_checked == checked)
            .map(|f| f.stack.as_str())
            .collect()
    };
    let (runs, unchecked) = (names(true), names(false));
    let mut lines = vec![format!(
        "runs: {}",
        if runs.is_empty() { "none of the bundled stacks".to_owned() } else { runs.join(", ") }
    )];
    if !unchecked.is_empty() {
        lines.push(format!(
            "driver and CUDA fit, compute capability not recorded for them: {}",
            unchecked.join(", ")
        ));
    }
    for f in found {
        if let Some(why) = &f.why_not {
            lines.push(format!("not:  {} ({why})", f.stack));
        }
    }
    lines
}

/// The GPUs of a session that asked for `count` (`--gpus`): inside a scheduler's job, the ones
/// it gave (nothing leased); otherwise a lease of `count` GPUs nobody else holds, named in
/// `env`'s `CUDA_VISIBLE_DEVICES` by UUID. The lease is the caller's to hand to the program.
pub(super) fn for_session(
    count: usize,
    wait: bool,
    profile: &str,
    settings: &Settings,
    base: &std::collections::BTreeMap<String, String>,
    env: &mut std::collections::BTreeMap<String, String>,
) -> Result<Option<Held>> {
    if let Some(given) = base.get("CUDA_VISIBLE_DEVICES").filter(|v| !v.trim().is_empty()) {
        let n = given.split(',').filter(|g| !g.trim().is_empty()).count();
        if n < count {
            return Err(Failure::new(
                format!("cannot give the session {count} GPU(s)"),
                format!("the scheduler gave this job {n} (CUDA_VISIBLE_DEVICES={given})"),
            )
            .hint("ask the scheduler for more (Slurm: --gres=gpu:N), or ask envctl for fewer"));
        }
        printer::status(&format!(
            "using the GPUs the scheduler gave (CUDA_VISIBLE_DEVICES={given}); leasing none"
        ));
        return Ok(None);
    }
    let hint = |f: Failure| match wait {
        true => f,
        false => f.hint("wait in line for them with --wait; `envctl gpus` shows who holds what"),
    };
    let (held, uuids) = match settings.daemon() {
        // A shared machine: the daemon holds the lease between users, while this connection is
        // open.
        Some(daemon) => {
            if wait {
                printer::status(&format!("waiting in the daemon's line for {count} GPU(s)"));
            }
            let (conn, uuids) =
                envctl_ops::daemon::client::lease_gpus(settings, &daemon, count, wait, profile)
                    .map_err(hint)?;
            (Held::Daemon(conn), uuids)
        }
        None => {
            let nvml = Nvml::load().map_err(|e| Failure::new(format!("cannot lease {count} GPU(s)"), e))?;
            let holder = gpus::lease::Holder::this_process(profile);
            let lease = gpus::lease::acquire(
                &nvml,
                &gpus::dir(&settings.home),
                count,
                wait,
                &holder,
                &mut |why| printer::status(why),
                &|| false,
            )
            .map_err(|e| hint(Failure::new(format!("cannot lease {count} GPU(s)"), e)))?;
            let uuids = lease.uuids.clone();
            (Held::Lease(lease), uuids)
        }
    };
    printer::status(&format!("leased {} for `{profile}` (CUDA_VISIBLE_DEVICES)", uuids.join(", ")));
    env.insert("CUDA_VISIBLE_DEVICES".into(), uuids.join(","));
    Ok(Some(held))
}

/// A session's GPUs: a lease of its own, or the daemon's connection that holds one.
pub(super) enum Held {
    Lease(gpus::lease::Lease),
    Daemon(std::os::unix::net::UnixStream),
}

impl Held {
    /// Hands the lease to the program about to be executed: it ends when that program does.
    pub(super) fn keep_across_exec(self) -> std::io::Result<()> {
        match self {
            Held::Lease(lease) => {
                lease.inherit_across_exec()?;
                std::mem::forget(lease);
            }
            Held::Daemon(conn) => {
                envctl_store::keep_across_exec(&conn)?;
                // Open until the program ends.
                std::mem::forget(conn);
            }
        }
        Ok(())
    }
}

/// Loads NVML and looks at the GPUs, or says plainly that there is no driver.
fn look(settings: &Settings) -> Result<Snapshot> {
    let nvml = Nvml::load().map_err(|e| {
        Failure::new("cannot look at the GPUs", e)
            .hint("on a GPU machine, install NVIDIA's driver (it ships libnvidia-ml.so.1); `envctl doctor` says what this machine has")
    })?;
    gpus::snapshot(&nvml, &settings.home).map_err(|e| Failure::new("cannot look at the GPUs", e))
}

fn list(args: &GpusArgs, s: &Snapshot, warned: &[gpus::policy::Warned]) -> Result<Status> {
    if args.json {
        printer::json(s);
        return Ok(Status::Success);
    }
    printer::info(&format!(
        "driver {} (CUDA {}), {} GPU(s)",
        s.driver.as_deref().unwrap_or("?"),
        s.cuda.as_deref().unwrap_or("?"),
        s.gpus.len()
    ));
    for g in &s.gpus {
        let d = &g.device;
        let cc = d.compute_capability.map(|(a, b)| format!(", compute {a}.{b}")).unwrap_or_default();
        printer::data(&format!(
            "GPU {}  {}  {}{cc}  {} / {} MiB  {}%",
            d.index,
            d.uuid,
            d.name,
            d.memory_used >> 20,
            d.memory_total >> 20,
            d.utilization
        ));
        if let Some(l) = &g.lease {
            printer::data(&format!(
                "    leased by {} (pid {}, profile `{}`) for {}",
                l.user,
                l.pid,
                l.profile,
                age(gpus::now() - l.since)
            ));
        }
        for p in &g.held_by {
            let ends = warned
                .iter()
                .find(|w| w.pid == p.pid)
                .map(|w| {
                    format!("  to be ended at {} (the daemon's idle policy)", printer::timestamp(w.ends_at))
                })
                .unwrap_or_default();
            printer::data(&format!("    {}{ends}", process_line(p)));
        }
    }
    Ok(Status::Success)
}

fn process_line(p: &GpuProcess) -> String {
    let session = match (&p.profile, &p.generation) {
        (Some(profile), Some(g)) => {
            format!(
                "  envctl `{profile}` ({})",
                std::path::Path::new(g).file_name().unwrap_or_default().display()
            )
        }
        (Some(profile), None) => format!("  envctl `{profile}`"),
        _ => String::new(),
    };
    let idle = p.idle_for.filter(|t| *t >= 60).map(|t| format!("  idle {}", age(t))).unwrap_or_default();
    format!("pid {}  {}  {}  {} MiB{session}{idle}", p.pid, p.user, p.command, p.memory >> 20)
}

fn idle(args: &GpusArgs, s: &Snapshot) -> Result<Status> {
    let idle_for = envctl_ops::generations::parse_age(&args.idle_for)?;
    let found = gpus::idle(s, idle_for);
    if args.json {
        let rows: Vec<_> = found
            .iter()
            .map(|(g, p)| serde_json::json!({ "gpu": g.device.index, "uuid": g.device.uuid, "process": p }))
            .collect();
        printer::json(&rows);
        return Ok(Status::Success);
    }
    if found.is_empty() {
        printer::info(&format!("no process has held GPU memory without computing for {}", args.idle_for));
    }
    for (g, p) in found {
        let started = p.started.map(|t| format!("  started {}", printer::timestamp(t))).unwrap_or_default();
        printer::data(&format!("GPU {}  {}{started}", g.device.index, process_line(p)));
    }
    Ok(Status::Success)
}

fn reclaim(args: &ReclaimArgs, s: &Snapshot) -> Result<Status> {
    let idle_for = envctl_ops::generations::parse_age(&args.idle_for)?;
    let found = gpus::idle(s, idle_for);
    if found.is_empty() {
        printer::info(&format!(
            "nothing to reclaim: no process has held GPU memory idle for {}",
            args.idle_for
        ));
        return Ok(Status::Success);
    }
    let mut failed = false;
    for (g, p) in found {
        let what = format!("pid {} ({}, {} MiB on GPU {})", p.pid, p.user, p.memory >> 20, g.device.index);
        if args.dry_run {
            printer::data(&format!("would end {what}"));
            continue;
        }
        match gpus::end(p, std::time::Duration::from_secs(10)) {
            Ok(()) => printer::data(&format!("ended {what}")),
            Err(why) => {
                failed = true;
                printer::info(&format!("left {what}: {why}"));
            }
        }
    }
    if failed {
        return Err(Failure::new("some idle processes were left running", "they are other users' processes")
            .hint("ask their owners, or an administrator (root may end any)"));
    }
    Ok(Status::Success)
}

/// `3h 5m`, `12m`, `40s`.
fn age(secs: i64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{}s", s.max(0)),
    }
}
