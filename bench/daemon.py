#!/usr/bin/env python3
"""The shared store's cost (issue: many users): the same work through `envctl daemon` and in a
single-user home, alternated in one run, medians reported.

  python3 bench/daemon.py [ROUNDS]     (default 5; builds envctl and fixture-serve --release)

  * a cold apply of the 60-package synthetic corpus (180,000 files, archives served on loopback:
    a daemon fetches nothing from a path a client names) into an empty store, through a daemon
    (started beforehand, untimed) against the same apply in a single-user home; goal <= 1.1x;
  * `envctl run P -- true`, which through a daemon asks it to hold the session's GC root; goal:
    no difference beyond noise.

Old homes are moved aside, never deleted between runs (BENCHMARKING.md); everything is deleted at
the end. Writes bench/out/daemon.md.
"""
import os, shutil, socket, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import QUIET, ROOT, corpus, fresh_work, sh

OUT = os.path.join(ROOT, "bench", "out")
WORK = os.path.join(OUT, "daemon-work")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
PKGS = 60
RUNS = 100


def timed(args, env):
    t = time.perf_counter()
    subprocess.run(args, check=True, env=env, **QUIET)
    return time.perf_counter() - t


def wait_for(path):
    for _ in range(1000):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"no daemon on {path}")


def main():
    sh("cargo", "build", "--release", "-q", "-p", "envctl", "-p", "envctl-testkit", "--bin", "envctl", "--bin",
       "fixture-serve", cwd=ROOT)
    envctl = os.path.join(ROOT, "target", "release", "envctl")
    src, repo, _, env = fresh_work(WORK)
    archives = corpus(PKGS, src, repo, WORK)
    aside = os.path.join(WORK, "aside")
    os.makedirs(aside)
    # Moved aside, not deleted: files created right after a mass deletion are slow here
    # (BENCHMARKING.md), and the first round would pay for it.
    os.rename(src, os.path.join(aside, "src"))
    server = subprocess.Popen([os.path.join(ROOT, "target", "release", "fixture-serve"), *archives],
                              stdout=subprocess.PIPE)
    base = server.stdout.readline().decode().strip()
    for name in os.listdir(repo):
        p = os.path.join(repo, name)
        text = open(p).read()
        for a in archives:
            text = text.replace(f"file://{a}", f"{base}/{os.path.basename(a)}")
        open(p, "w").write(text)
    profile = os.path.join(WORK, "p.toml")
    with open(profile, "w") as f:
        f.write("[packages]\n" + "".join(f'pkg{p:03d} = "1"\n' for p in range(PKGS)))
    single, shared, run_single, run_shared = [], [], [], []
    for r in range(ROUNDS):
        # A single-user home.
        home = os.path.join(WORK, "single")
        e = dict(env, ENVCTL_HOME=home)
        lock = profile.replace(".toml", ".lock")
        if os.path.exists(lock):
            os.remove(lock)
        subprocess.run(["sync"])
        single.append(timed([envctl, "apply", profile], e))
        for _ in range(RUNS):
            run_single.append(timed([envctl, "run", "p", "--", "true"], e))
        os.rename(home, os.path.join(aside, f"single{r}"))

        # The same through a daemon serving a fresh home.
        home = os.path.join(WORK, "system")
        sock = os.path.join(WORK, f"daemon{r}.sock")
        config = os.path.join(WORK, "daemon.toml")
        with open(config, "w") as f:
            f.write(f'[daemon]\nsocket = "{sock}"\n')
        daemon = subprocess.Popen([envctl, "daemon"], env=dict(env, ENVCTL_HOME=home, ENVCTL_CONFIG=config), **QUIET)
        wait_for(sock)
        e = dict(env, ENVCTL_HOME=home)
        if os.path.exists(lock):
            os.remove(lock)
        subprocess.run(["sync"])
        shared.append(timed([envctl, "apply", profile], e))
        for _ in range(RUNS):
            run_shared.append(timed([envctl, "run", "p", "--", "true"], e))
        daemon.kill()
        daemon.wait()
        os.rename(home, os.path.join(aside, f"system{r}"))
        print(f"round {r}: apply {single[-1]:.2f} s single, {shared[-1]:.2f} s through the daemon", flush=True)
    server.kill()

    med = statistics.median
    ms = lambda xs: med(xs) * 1000
    lines = [
        "# The shared store's cost (bench/daemon.py)",
        "",
        f"{ROUNDS} rounds alternated (single-user, then through a daemon on a fresh home); {PKGS} packages,",
        f"archives served on loopback; `run` {RUNS} times per round per arm. Medians.",
        "",
        "| what | single-user | through the daemon | ratio |",
        "| --- | --- | --- | --- |",
        f"| cold apply of {PKGS} packages | {med(single):.2f} s | {med(shared):.2f} s | {med(shared) / med(single):.2f}x |",
        f"| `run P -- true` | {ms(run_single):.2f} ms | {ms(run_shared):.2f} ms | {ms(run_shared) / ms(run_single):.2f}x |",
        "",
        "Rounds (apply, s): single " + ", ".join(f"{x:.2f}" for x in single)
        + "; daemon " + ", ".join(f"{x:.2f}" for x in shared),
    ]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "daemon.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
