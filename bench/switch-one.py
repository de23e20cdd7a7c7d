#!/usr/bin/env python3
"""Switching one package of a 60-package profile, against building that generation from scratch
and against Nix (issue 14).

  python3 bench/switch-one.py [ROUNDS]      (default 5; not CI; installs nix-bin with apt-get if absent)

The corpus of bench/common.py: 60 packages of 3,000 files (1,000 in the shared lib/), so a
generation holds about 60,000 links. Each round gives pkg059 a new version (its tree with one file
changed) and, taking turns in order:

  * switch: `envctl apply` of the profile `sw` with pkg059 moved to the new version (the previous
    generation is the profile's current one);
  * scratch: `envctl apply` of a new profile with the same packages (no previous generation, every
    link made);
  * Nix: `nix-env -p PROFILE -i` of the new pkg059 store path in a 60-package Nix profile.

Every package is in both stores before the timed step (untimed installs), and every arm starts
after `sync` and an untimed walk of the trees it links to. Also reported: the disk blocks the new
generation adds (`du` counts an inode shared with the previous generation once). Writes
bench/out/switch-one.md.
"""
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import NIX_ENV, QUIET, build_envctl, corpus, fresh_work, need, sh, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
WORK = os.path.join(OUT, "switch-one-work")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
PKGS = 60
LAST = f"pkg{PKGS - 1:03d}"


def walk(paths):
    for p in paths:
        for _ in os.walk(p):
            pass


def du(*paths):
    """Bytes of disk blocks under each path, an inode counted only under the first that has it."""
    out = subprocess.run(["du", "-s", "-B1", *paths], check=True, capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()]


def main():
    need("nix-env", "nix-bin")
    envctl = build_envctl()
    src, repo, home, env = fresh_work(WORK)
    nix_env = NIX_ENV

    corpus(PKGS, src, repo, WORK)
    # Nix names a path after its directory: pkgNNN-1.0 parses as name pkgNNN, version 1.0.
    for p in range(PKGS):
        os.rename(os.path.join(src, f"pkg{p:03d}"), os.path.join(src, f"pkg{p:03d}-1.0"))
    # One new version of the last package per round: its tree with one file changed, by a
    # different byte string in every run (a run that made the same Nix profile as an earlier one
    # would find its user environment already built and time nothing).
    versions = [f"{r + 2}.0" for r in range(ROUNDS)]
    nonce = os.urandom(8).hex()
    for v in versions:
        tree = os.path.join(src, f"{LAST}-{v}")
        shutil.copytree(os.path.join(src, f"{LAST}-1.0"), tree, symlinks=True)
        with open(os.path.join(tree, "lib", f"lib{LAST}_0.so"), "ab") as f:
            f.write(f"{v} {nonce}".encode())
        archive = os.path.join(WORK, f"{LAST}-{v}.tar.zst")
        sh("tar", "-C", tree, "--zstd", "-cf", archive, ".")
        sha = subprocess.run(["sha256sum", archive], check=True, capture_output=True, text=True).stdout.split()[0]
        with open(os.path.join(repo, f"{LAST}-{v}.toml"), "w") as f:
            f.write(f'name = "{LAST}"\nversion = "{v}"\n[[source]]\nurl = "file://{archive}"\nsha256 = "{sha}"\n')

    def profile(path, last_version):
        with open(path, "w") as f:
            f.write("[packages]\n" + "".join(f'pkg{p:03d} = "1"\n' for p in range(PKGS - 1))
                    + f'{LAST} = "={last_version}"\n')

    # Everything installed on both sides, untimed: envctl's store through a throwaway profile,
    # Nix's with nix-store --add and a 60-package profile.
    sw, pre = os.path.join(WORK, "sw.toml"), os.path.join(WORK, "pre.toml")
    for v in versions:
        profile(pre, v)
        sh(envctl, "apply", pre, env=env, **QUIET)
    profile(sw, "1.0")
    sh(envctl, "apply", sw, env=env, **QUIET)
    nix_paths = {}
    for name in sorted(os.listdir(src)):
        nix_paths[name] = subprocess.run(["nix-store", "--add", os.path.join(src, name)], check=True,
                                         capture_output=True, text=True, env=nix_env).stdout.strip()
    nix_profile = os.path.join(WORK, "nix-profile")
    sh("nix-env", "-p", nix_profile, "-i", *[nix_paths[f"pkg{p:03d}-1.0"] for p in range(PKGS)], env=nix_env, **QUIET)
    store = os.path.join(home, "store")
    env_pkgs = [os.path.join(store, n) for n in os.listdir(store) if "-pkg" in n]

    def current(name):
        return os.path.realpath(os.path.join(home, "profiles", name))

    times = {"switch": [], "scratch": [], "nix": []}
    disk = []
    for r, v in enumerate(versions):
        def switch():
            profile(sw, v)
            return timed([envctl, "apply", sw], env)

        def scratch():
            fresh = os.path.join(WORK, f"fresh{r}.toml")
            profile(fresh, v)
            return timed([envctl, "apply", fresh], env)

        def nix():
            return timed(["nix-env", "-p", nix_profile, "-i", nix_paths[f"{LAST}-{v}"]], nix_env)

        arms = [("switch", switch, env_pkgs), ("scratch", scratch, env_pkgs), ("nix", nix, list(nix_paths.values()))]
        arms = arms[r % 3:] + arms[:r % 3]
        before = current("sw")
        for which, arm, trees in arms:
            walk(trees)
            sh("sync")
            times[which].append(arm())
        after, fresh_gen = current("sw"), current(f"fresh{r}")
        assert after != before, "the switch built no new generation"
        _, added = du(before, after)
        disk.append((added, du(fresh_gen)[0]))

    links = sum(len(fs) for _, _, fs in os.walk(current("sw")))
    med = statistics.median
    s, f, n = med(times["switch"]), med(times["scratch"]), med(times["nix"])
    added, whole = med(d[0] for d in disk), med(d[1] for d in disk)
    lines = [
        f"profile: {PKGS} packages, {links} links in its generation; {ROUNDS} rounds, medians",
        "",
        "| measurement | median | ratio |",
        "| --- | ---: | ---: |",
        f"| switch one package (`envctl apply`, previous generation current) | {s:.2f} s | |",
        f"| the same generation from scratch (a new profile) | {f:.2f} s | switch / scratch {s / f:.2f}x |",
        f"| Nix 2.8 `nix-env -i` of the new version | {n:.2f} s | switch / Nix {s / n:.2f}x |",
        f"| disk the switched generation adds | {added / 2**20:.1f} MiB | from scratch: {whole / 2**20:.1f} MiB |",
        "",
        "raw (s): switch " + " ".join(f"{x:.2f}" for x in times["switch"])
        + "; scratch " + " ".join(f"{x:.2f}" for x in times["scratch"])
        + "; nix " + " ".join(f"{x:.2f}" for x in times["nix"]),
    ]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "switch-one.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    # Nix: drop the profile's generations, then this run's paths and everything that refers to
    # them (user environments, their manifests and derivations), or the paths stay alive and
    # the next run's `nix-store --verify` elsewhere checks them too.
    for n in os.listdir(WORK):
        if n.startswith("nix-profile"):
            os.unlink(os.path.join(WORK, n))
    doomed = subprocess.run(["nix-store", "-q", "--referrers-closure", *nix_paths.values()], check=True,
                            capture_output=True, text=True, env=nix_env).stdout.split()
    sh("nix-store", "--delete", *doomed, env=nix_env, **QUIET)
    sh("chmod", "-R", "u+w", WORK)
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
