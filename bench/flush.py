#!/usr/bin/env python3
"""The flush before registration, on an idle machine and beside another program's writes
(issue: performance on both cores).

  python3 bench/flush.py [ROUNDS]            (default 5; not CI)
  ENVCTL_BASELINE=/path/to/older/envctl python3 bench/flush.py   (adds it, flush on, as an arm)

Installs, with `envctl store add` from local files into a fresh home per step: three packages of
the synthetic corpus (3,000 files of 100 B to 4 KiB each) and one of 60 files of 2 MiB. Two
situations, each step after an untimed `sync`: an idle machine, and one where another program has
just written 1 GiB it has not flushed (a training job's checkpoint). Arms, alternated: envctl as
configured (`[store] fsync = true`), the same with `fsync = false`, and the baseline if given.
Reports the medians; writes bench/out/flush.md. Everything is deleted at the end.
"""
import hashlib, os, shutil, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import QUIET, build_envctl, corpus, sh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
WORK = os.path.join(OUT, "flush-work")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def main():
    envctl = build_envctl()
    shutil.rmtree(WORK, ignore_errors=True)
    src, repo = os.path.join(WORK, "src"), os.path.join(WORK, "repo")
    os.makedirs(repo)
    small = corpus(3, src, repo, WORK)
    big_tree = os.path.join(src, "big")
    os.makedirs(big_tree)
    for i in range(60):
        with open(os.path.join(big_tree, f"lib{i}.so"), "wb") as f:
            f.write(os.urandom(2 << 20))
    big = os.path.join(WORK, "big.tar.zst")
    sh("tar", "-C", big_tree, "--zstd", "-cf", big, ".")
    shutil.rmtree(src)
    nosync = os.path.join(WORK, "nosync.toml")
    with open(nosync, "w") as f:
        f.write("[store]\nfsync = false\n")
    arms = {"flush on": [envctl], "flush off": [envctl, "--config", nosync]}
    if os.environ.get("ENVCTL_BASELINE"):
        arms["baseline, flush on"] = [os.environ["ENVCTL_BASELINE"]]
    loads = {"3 packages of 3,000 small files": small, "1 package of 60 files of 2 MiB": [big]}
    shas = {a: hashlib.sha256(open(a, "rb").read()).hexdigest() for a in small + [big]}
    trash = os.path.join(WORK, "trash")
    os.makedirs(trash)
    times = {}
    checkpoint = os.path.join(WORK, "checkpoint")
    for r in range(ROUNDS):
        for busy in (False, True):
            for load, archives in loads.items():
                names = list(arms)
                for arm in names[r % len(names):] + names[:r % len(names)]:
                    home = os.path.join(WORK, "home")
                    if os.path.exists(home):
                        # Moved aside, deleted at the end: a mass deletion slows file creation.
                        os.rename(home, os.path.join(trash, f"{time.monotonic_ns()}"))
                    for a in archives:
                        open(a, "rb").read()
                    sh("sync")
                    if busy:
                        with open(checkpoint, "wb") as f:
                            for _ in range(64):
                                f.write(os.urandom(16 << 20))
                    t = time.perf_counter()
                    for i, a in enumerate(archives):
                        sh(*arms[arm], "--home", home, "-q", "store", "add", a, "--sha256", shas[a],
                           "--name", f"p{i}", "--version", "1.0", **QUIET)
                    times.setdefault((busy, load, arm), []).append(time.perf_counter() - t)
                    if busy:
                        os.unlink(checkpoint)
    med = statistics.median
    lines = [f"{ROUNDS} rounds, medians (s); all rounds in brackets", "",
             "| machine | install | " + " | ".join(arms) + " |",
             "| --- | --- |" + " ---: |" * len(arms)]
    for busy in (False, True):
        for load in loads:
            cells = [f"{med(times[(busy, load, a)]):.2f} ({' '.join(f'{x:.2f}' for x in times[(busy, load, a)])})"
                     for a in arms]
            lines.append(f"| {'1 GiB of another program waiting' if busy else 'idle'} | {load} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(OUT, "flush.md"), "w") as f:
        f.write(text)
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
