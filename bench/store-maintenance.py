#!/usr/bin/env python3
"""Store maintenance against Nix and the floors (issue: performance on both cores).

  python3 bench/store-maintenance.py [ROUNDS]     (default 5; not CI)
  ENVCTL_BASELINE=/path/to/older/envctl python3 bench/store-maintenance.py   (adds its GC as an arm)

Needs tar, zstd, b3sum and Nix's nix-store (Debian: `apt-get install zstd b3sum nix-bin`; the
script installs the last two with apt-get when they are missing). Builds envctl --release.

The corpus: 60 packages of 3,000 files each (1,000 in lib/, 2,000 in share/pkgNN/), files of
100 B to 4 KiB, about 180,000 files and 370 MiB. Both stores hold the same 60 trees (envctl
installs them from tar.zst archives, `nix-store --add` copies the directories). Per round, the
arms alternate, each after an untimed read of its inputs (the host trims the page cache):

  * verify: `envctl store verify` vs `nix-store --verify --check-contents`, against the floor of
    `b3sum` over the same files on two processes;
  * optimise (after all the verify rounds): `envctl store optimise` vs `nix-store --optimise` over
    the same trees (no two files alike, so both read everything and link nothing; Nix's first
    pass also fills its `.links` index, and its later passes skip every file already in it);
  * GC: 20 more packages (60,000 files) installed unrooted on both sides, untimed, then
    `envctl gc` vs `nix-store --delete` of the same 20 paths.

Writes bench/out/store-maintenance.md; everything is deleted at the end.
"""
import hashlib, os, shutil, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import NIX_ENV, OWN, QUIET, SHARED, build_envctl, corpus, fresh_work, need, read_all, sh, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
WORK = os.path.join(OUT, "maintenance-work")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
KEPT, DOOMED = 60, 20


def files_under(paths):
    out = []
    for p in paths:
        for d, _, fs in os.walk(p):
            out.extend(os.path.join(d, f) for f in fs)
    return out


def main():
    need("b3sum", "b3sum")
    need("nix-store", "nix-bin")
    envctl = build_envctl()
    src, repo, home, env = fresh_work(WORK)
    nix_env = NIX_ENV

    archives = corpus(KEPT + DOOMED, src, repo, WORK)
    kept_files = len(files_under([os.path.join(src, f"pkg{p:03d}") for p in range(KEPT)]))
    kept_bytes = sum(os.path.getsize(f) for f in files_under([os.path.join(src, f"pkg{p:03d}") for p in range(KEPT)]))

    # The kept 60, rooted on both sides: a profile in envctl, GC roots in Nix.
    big = os.path.join(WORK, "big.toml")
    with open(big, "w") as f:
        f.write("[packages]\n" + "".join(f'pkg{p:03d} = "1"\n' for p in range(KEPT)))
    sh(envctl, "apply", big, env=env, **QUIET)
    roots = os.path.join(WORK, "nix-roots")
    os.makedirs(roots)
    nix_kept = []
    for p in range(KEPT):
        path = subprocess.run(["nix-store", "--add", os.path.join(src, f"pkg{p:03d}")], check=True,
                              capture_output=True, text=True, env=nix_env).stdout.strip()
        sh("nix-store", "--realise", path, "--add-root", os.path.join(roots, f"r{p}"), "--indirect", env=nix_env, **QUIET)
        nix_kept.append(path)
    store = os.path.join(home, "store")
    env_kept = sorted(os.path.join(store, n) for n in os.listdir(store) if "-pkg" in n)

    verify_e, verify_n, verify_f = [], [], []
    optimise_e, optimise_n = [], []
    b3 = os.path.join(WORK, "b3sum-floor.sh")
    with open(b3, "w") as f:
        f.write('find "$@" -type f -print0 | xargs -0 -P2 -n 2000 b3sum > /dev/null\n')
    gc_t = {"e": [], "n": [], "o": []}
    baseline = os.environ.get("ENVCTL_BASELINE")
    shas = {p: hashlib.sha256(open(a, "rb").read()).hexdigest() for p, a in enumerate(archives)}
    for r in range(ROUNDS):
        read_all(*env_kept)
        verify_e.append(timed([envctl, "store", "verify"], env))
        read_all(*nix_kept)
        verify_n.append(timed(["nix-store", "--verify", "--check-contents"], nix_env))
        read_all(*env_kept)
        verify_f.append(timed(["sh", b3] + env_kept))
    # After every verify: a Nix store with its `.links` index verified more slowly (2.7-3.3 s
    # against 1.5 s in one run).
    for r in range(ROUNDS):
        read_all(*env_kept)
        optimise_e.append(timed([envctl, "store", "optimise"], env))
        read_all(*nix_kept)
        optimise_n.append(timed(["nix-store", "--optimise"], nix_env))
    for r in range(ROUNDS):
        # GC: the same 20 trees unrooted, then deleted; each arm installs its own set, untimed.
        def add_envctl():
            for p in range(KEPT, KEPT + DOOMED):
                sh(envctl, "store", "add", archives[p], "--sha256", shas[p],
                   "--name", f"pkg{p:03d}", "--version", "1.0", env=env, **QUIET)

        doomed = []

        def add_nix():
            doomed[:] = [subprocess.run(["nix-store", "--add", os.path.join(src, f"pkg{p:03d}")], check=True,
                                        capture_output=True, text=True, env=nix_env).stdout.strip()
                         for p in range(KEPT, KEPT + DOOMED)]

        arms = [("e", add_envctl, lambda: [envctl, "gc"], env),
                ("n", add_nix, lambda: ["nix-store", "--delete"] + doomed, nix_env)]
        if baseline:
            arms.append(("o", add_envctl, lambda: [baseline, "gc"], env))
        arms = arms[r % len(arms):] + arms[:r % len(arms)]
        for which, setup, cmd, e in arms:
            setup()
            sh("sync")
            gc_t[which].append(timed(cmd(), e))
            sh("sync")

    med = statistics.median
    gc_e, gc_n, gc_o = gc_t["e"], gc_t["n"], gc_t["o"]
    lines = [
        f"corpus: {KEPT} packages kept, {kept_files} files, {kept_bytes / 2**20:.0f} MiB; GC of {DOOMED} more "
        f"({DOOMED * (SHARED + OWN)} files); {ROUNDS} rounds, medians",
        "",
        "| measurement | envctl | Nix 2.8 | floor | envctl / Nix | envctl / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| verify (`store verify` / `--verify --check-contents`) | {med(verify_e):.2f} s | {med(verify_n):.2f} s | "
        f"b3sum on 2 processes: {med(verify_f):.2f} s | {med(verify_e) / med(verify_n):.2f}x | {med(verify_e) / med(verify_f):.2f}x |",
        f"| optimise (`store optimise` / `--optimise`) | {med(optimise_e):.2f} s | {med(optimise_n):.2f} s | "
        f"the same b3sum: {med(verify_f):.2f} s | {med(optimise_e) / med(optimise_n):.2f}x | {med(optimise_e) / med(verify_f):.2f}x |",
        f"| optimise, first round (Nix fills `.links`) | {optimise_e[0]:.2f} s | {optimise_n[0]:.2f} s | | "
        f"{optimise_e[0] / optimise_n[0]:.2f}x | |",
        f"| GC of {DOOMED} packages (`gc` / `nix-store --delete`) | {med(gc_e):.2f} s | {med(gc_n):.2f} s | | "
        f"{med(gc_e) / med(gc_n):.2f}x | |",
        "",
        "raw (s): verify envctl " + " ".join(f"{x:.2f}" for x in verify_e)
        + "; nix " + " ".join(f"{x:.2f}" for x in verify_n)
        + "; b3sum " + " ".join(f"{x:.2f}" for x in verify_f),
        "raw (s): optimise envctl " + " ".join(f"{x:.2f}" for x in optimise_e)
        + "; nix " + " ".join(f"{x:.2f}" for x in optimise_n),
        "raw (s): gc envctl " + " ".join(f"{x:.2f}" for x in gc_e) + "; nix " + " ".join(f"{x:.2f}" for x in gc_n),
    ]
    if gc_o:
        lines.insert(8, f"| GC, baseline build (`ENVCTL_BASELINE={baseline}`) | {med(gc_o):.2f} s | | | "
                        f"{med(gc_o) / med(gc_n):.2f}x | |")
        lines.append("raw (s): gc baseline " + " ".join(f"{x:.2f}" for x in gc_o))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "store-maintenance.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    for p in nix_kept:
        os.unlink(os.path.join(roots, f"r{nix_kept.index(p)}"))
    subprocess.run(["nix-store", "--delete"] + nix_kept, env=nix_env, **QUIET)
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
