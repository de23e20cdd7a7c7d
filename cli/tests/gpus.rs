//! `envctl gpus` and GPU leases against a stand-in NVML (a small library the test support
//! compiles, loaded through the library path as the real one is): who holds which GPU, leases that
//! end with their session (SIGKILL included), waiting in line, a scheduler's GPUs taken as given,
//! idle memory found with a clock the test sets, and reclaimed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Run;
use common::fixture::Fixture;

const A100: &str = "GPU-a100-0000-0000-0000-000000000000";
const T4: &str = "GPU-t4-1111-1111-1111-111111111111";

struct Gpus {
    f: Fixture,
    libs: PathBuf,
    state: PathBuf,
}

impl Gpus {
    /// Two GPUs, nothing on them, and the profile `p` applied.
    fn new() -> Gpus {
        let f = Fixture::new();
        let libs = envctl_testkit::nvml::build(f.sb.dir.path());
        let state = f.sb.path("nvml.txt");
        let profile = f.profile("p", "[packages]\nhello = \"1\"\n");
        f.run(&["apply", &profile]).ok();
        let g = Gpus { f, libs, state };
        g.set(&[]);
        g
    }

    /// The GPUs' state: both GPUs idle, and `procs` (GPU index, pid, MiB, SM %).
    fn set(&self, procs: &[(u32, u32, u64, u32)]) {
        let mut text = format!(
            "driver 550.54.14\ncuda 12040\ngpu {A100} 8.0 40960 0 NVIDIA A100-SXM4-40GB\ngpu {T4} 7.5 15360 0 Tesla T4\n"
        );
        for (gpu, pid, mib, sm) in procs {
            text.push_str(&format!("proc {gpu} {pid} {mib} {sm}\n"));
        }
        std::fs::write(&self.state, text).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.f.sb.command(args);
        c.env("LD_LIBRARY_PATH", &self.libs).env("ENVCTL_TEST_NVML", &self.state);
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().unwrap())
    }

    /// A session with `--gpus` args that prints CUDA_VISIBLE_DEVICES and stays; gives it and the
    /// value it printed.
    fn holding(&self, lease: &[&str]) -> (Child, String) {
        let mut args = vec!["run"];
        args.extend_from_slice(lease);
        args.extend_from_slice(&["p", "--", "sh", "-c", "echo \"$CUDA_VISIBLE_DEVICES\"; exec sleep 60"]);
        let mut child = self.command(&args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        (child, line.trim().to_owned())
    }
}

fn sleeper() -> Child {
    Command::new("sleep").arg("300").spawn().unwrap()
}

fn end(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn gpus_lists_each_gpu_and_who_holds_it_with_their_session() {
    let g = Gpus::new();
    let (session, _) = g.holding(&[]);
    let other = sleeper();
    g.set(&[(0, session.id(), 20480, 80), (1, other.id(), 512, 0)]);
    let out = g.run(&["gpus"]).success();
    let text = out.stdout;
    assert!(
        text.contains(&format!("GPU 0  {A100}  NVIDIA A100-SXM4-40GB, compute 8.0  20480 / 40960 MiB")),
        "{text}"
    );
    assert!(text.contains(&format!("GPU 1  {T4}  Tesla T4, compute 7.5  512 / 15360 MiB")), "{text}");
    let me = envctl_ops::users::User::current().name;
    assert!(text.contains(&format!("pid {}  {me}  sleep  20480 MiB  envctl `p` (", session.id())), "{text}");
    assert!(text.contains(&format!("pid {}  {me}  sleep  512 MiB\n", other.id())), "{text}");
    assert!(out.stderr.contains("driver 550.54.14 (CUDA 12.4), 2 GPU(s)"), "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&g.run(&["gpus", "--json"]).success().stdout).unwrap();
    assert_eq!(json["gpus"][0]["uuid"], A100);
    assert_eq!(json["gpus"][0]["holders"][0]["profile"], "p");
    assert_eq!(json["gpus"][1]["compute_capability"], serde_json::json!([7, 5]));
    end(session);
    end(other);

    // No driver: said plainly.
    let err = Run::from(g.f.sb.command(&["gpus"]).output().unwrap()).failed().to_owned();
    assert!(err.contains("no NVIDIA driver here") && err.contains("libnvidia-ml.so.1"), "{err}");
}

#[test]
fn a_lease_gives_free_gpus_by_uuid_and_ends_with_its_session_even_killed() {
    let g = Gpus::new();
    // The A100 is the less used one, so it goes first.
    let (first, visible) = g.holding(&["--gpus", "1"]);
    assert_eq!(visible, A100);
    let listed = g.run(&["gpus"]).success().stdout;
    assert!(
        listed.contains(&format!(
            "leased by {} (pid {}, profile `p`)",
            envctl_ops::users::User::current().name,
            first.id()
        )),
        "{listed}"
    );
    // Two are not free now: the message says who holds what.
    let err = g.run(&["run", "--gpus", "2", "p", "--", "true"]).failed().to_owned();
    assert!(err.contains(&format!("GPU 0 ({A100}): leased by")) && err.contains("--wait"), "{err}");
    let (second, visible) = g.holding(&["--gpus", "1"]);
    assert_eq!(visible, T4);
    // A GPU whose memory another process holds is not free either.
    end(second);
    let squatter = sleeper();
    g.set(&[(1, squatter.id(), 8192, 0)]);
    let err = g.run(&["run", "--gpus", "1", "p", "--", "true"]).failed().to_owned();
    assert!(err.contains(&format!("GPU 1 ({T4}): 8192 of 15360 MiB in use by 1 process(es)")), "{err}");
    g.set(&[]);
    end(squatter);
    // Killed with SIGKILL: its lease ends with it.
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    let out = g.run(&["run", "--gpus", "2", "p", "--", "printenv", "CUDA_VISIBLE_DEVICES"]).success();
    assert_eq!(out.stdout.trim(), format!("{A100},{T4}"));
    assert!(g.run(&["run", "--gpus", "3", "p", "--", "true"]).failed().contains("this machine has 2"));
}

#[test]
fn waiting_sessions_get_the_gpus_in_the_order_they_asked() {
    let g = Gpus::new();
    let (holder, _) = g.holding(&["--gpus", "2"]);
    let order = g.f.sb.path("order");
    // Each waiter's messages go to a file, read while it waits.
    let waiter = |name: &str| {
        let script = format!("echo {name} >> '{}'; sleep 0.3", order.display());
        let log = std::fs::File::create(g.f.sb.path(&format!("{name}.log"))).unwrap();
        g.command(&["run", "--gpus", "2", "--wait", "p", "--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let said = |name: &str| std::fs::read_to_string(g.f.sb.path(&format!("{name}.log"))).unwrap_or_default();
    let until_said = |name: &str, what: &str| {
        let start = Instant::now();
        while !said(name).contains(what) {
            assert!(start.elapsed() < Duration::from_secs(20), "{name} did not say `{what}`: {}", said(name));
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let queue = g.f.sb.path("envctl/gpus/queue");
    let tickets = || {
        std::fs::read_dir(&queue)
            .map(|d| d.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count())
            .unwrap_or(0)
    };
    let until = |n: usize| {
        let start = Instant::now();
        while tickets() < n {
            assert!(start.elapsed() < Duration::from_secs(20), "the waiters did not queue");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let b = waiter("B");
    until(1);
    until_said("B", "2 GPU(s) are not free now");
    let c = waiter("C");
    until(2);
    until_said("C", "others asked first");
    end(holder);
    assert!(common::wait(b).code == 0 && common::wait(c).code == 0);
    assert!(said("B").contains(&format!("GPU 0 ({A100}): leased by")), "{}", said("B"));
    assert_eq!(std::fs::read_to_string(&order).unwrap(), "B\nC\n");
    assert_eq!(tickets(), 0, "no ticket is left behind");
}

#[test]
fn inside_a_schedulers_job_the_gpus_it_gave_are_taken_and_none_leased() {
    let g = Gpus::new();
    let mut c = g.command(&["run", "--gpus", "1", "p", "--", "printenv", "CUDA_VISIBLE_DEVICES"]);
    c.env("CUDA_VISIBLE_DEVICES", "1").env("SLURM_JOB_ID", "42");
    let out = Run::from(c.output().unwrap()).success();
    assert_eq!(out.stdout.trim(), "1");
    assert!(
        out.stderr.contains("using the GPUs the scheduler gave (CUDA_VISIBLE_DEVICES=1); leasing none"),
        "{}",
        out.stderr
    );
    assert!(!g.f.sb.path(&format!("envctl/gpus/{A100}.lock")).exists(), "nothing leased");
    let mut c = g.command(&["run", "--gpus", "2", "p", "--", "true"]);
    c.env("CUDA_VISIBLE_DEVICES", "1");
    let err = Run::from(c.output().unwrap()).failed().to_owned();
    assert!(err.contains("the scheduler gave this job 1 (CUDA_VISIBLE_DEVICES=1)"), "{err}");
}

#[test]
fn memory_held_without_computing_is_found_by_the_clock_and_reclaimed() {
    let g = Gpus::new();
    let (idle, busy) = (sleeper(), sleeper());
    g.set(&[(0, idle.id(), 30000, 0), (0, busy.id(), 4096, 60)]);
    let at = |t: i64, args: &[&str]| {
        let mut c = g.command(args);
        c.env("ENVCTL_NOW", t.to_string());
        Run::from(c.output().unwrap())
    };
    let t0 = 1_800_000_000;
    // First seen now: nobody has been idle for 30 minutes yet.
    assert_eq!(at(t0, &["gpus", "--idle", "--for", "30m"]).success().stdout, "");
    let listed = at(t0 + 31 * 60, &["gpus", "--idle", "--for", "30m"]).success().stdout;
    assert!(
        listed.starts_with(&format!("GPU 0  pid {}  ", idle.id())) && listed.contains("idle 31m"),
        "{listed}"
    );
    assert!(!listed.contains(&format!("pid {} ", busy.id())), "{listed}");
    assert_eq!(at(t0 + 31 * 60, &["gpus", "--idle", "--for", "1h"]).success().stdout, "");
    let dry = at(t0 + 32 * 60, &["gpus", "reclaim", "--for", "30m", "--dry-run"]).success().stdout;
    assert!(dry.starts_with(&format!("would end pid {} ", idle.id())), "{dry}");
    let done = at(t0 + 33 * 60, &["gpus", "reclaim", "--for", "30m"]).success().stdout;
    assert!(done.starts_with(&format!("ended pid {} ", idle.id())), "{done}");
    let mut idle = idle;
    let status = idle.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGTERM));
    let mut busy = busy;
    assert!(busy.try_wait().unwrap().is_none(), "the busy process runs on");
    end(busy);
}

#[test]
fn each_gpu_says_which_bundled_stacks_its_compute_capability_and_the_driver_run() {
    let g = Gpus::new();
    std::fs::write(
        &g.state,
        "driver 535.104.05\ncuda 12020\ngpu GPU-1080 6.1 8192 0 NVIDIA GeForce GTX 1080\ngpu GPU-k80 3.7 12288 0 Tesla K80\n",
    )
    .unwrap();
    let out = g.run(&["gpus", "--fits"]).success().stdout;
    let (pascal, kepler) = out.split_once("GPU 1").unwrap();
    // Measured from the wheels (bench/fatbin-archs.py): both carry machine code from sm_50 up.
    assert!(
        pascal.contains("compute 6.1, driver 535.104.05\n    runs: tensorflow-2.15, torch-2.8\n"),
        "{out}"
    );
    assert!(kepler.contains("runs: none of the bundled stacks"), "{out}");
    assert!(kepler.contains("not:  torch-2.8 (") && kepler.contains("compute capability >=5.0"), "{out}");
    // What the recipes do not record is said, not claimed.
    assert!(kepler.contains("compute capability not recorded for them: tensorflow-2.21, torch-2.3"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&g.run(&["gpus", "--fits", "--json"]).success().stdout).unwrap();
    let torch =
        json[1]["fits"].as_array().unwrap().iter().find(|f| f["stack"] == "torch-2.8").unwrap().clone();
    assert_eq!(torch["compute_checked"], true);
    assert!(torch["why_not"].as_str().unwrap().contains(">=5.0"));
}
