#!/usr/bin/env python3
"""Costs as the store fills up (issue: performance, round three): at 200, 2,000 and 20,000 store
paths, the time of a no-op apply, `run P -- true`, `generations P`, `list P` (a command that
opens the store), `profiles` and `gc` with nothing to collect. The first three should not grow with the store (target: within 1.2x of their
time at 200 paths), GC should stay under a second.

  python3 bench/scale-paths.py [SIZES] [ROUNDS]
      SIZES   comma-separated store path counts (default 200,2000,20000)
      ROUNDS  timed runs per command and size (default 5; medians reported)

The store is grown for real: profiles `bulkNN` of up to 2,000 one-file packages each are applied
(one generation each, so every path is live and GC has nothing to collect), beside a small
profile `seed` whose commands are timed. Writes bench/out/scale-paths.md.

  PROFILES=1000 python3 bench/scale-paths.py 200,2000,20000 5

KEEP=1 leaves the grown home in /var/tmp/envctl-scale-paths to look into (perf, strace).

NIX=1 adds Nix 2.8's equivalents at the last size: as many one-file paths added to its store
(`nix-store --add`), each rooted in `gcroots/`, PROFILES profiles of ten generation links, and
times `nix-env --list-generations`, `nix-collect-garbage` (nothing to collect) and
`nix-store --verify` beside envctl's.

PROFILES also grows the home, at the last size, to PROFILES profiles of ten generations each (links to
the bulk profiles' generations, as an apply writes them, so GC walks every one) and times every
command again, with `store verify` and `store verify --repair` (nothing to repair) beside them.
"""
import os, shutil, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import NIX_ENV, build_envctl, fresh_work, need, one_file_package as package, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
WORK = os.path.join("/var/tmp", "envctl-scale-paths")
SIZES = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "200,2000,20000").split(",")]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
PER_PROFILE = 2000


def store_paths(home):
    return sum(1 for n in os.listdir(os.path.join(home, "store")) if not n.startswith("."))


def main():
    envctl = build_envctl()
    src, repo, home, env = fresh_work(WORK)
    archives = os.path.join(WORK, "archives")
    os.makedirs(archives)
    for name in ("alpha", "beta", "gamma"):
        package(repo, archives, name)
    seed = os.path.join(WORK, "seed.toml")
    with open(seed, "w") as f:
        f.write('name = "seed"\n[packages]\nalpha = "*"\nbeta = "*"\ngamma = "*"\n')
    subprocess.run([envctl, "apply", seed], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    commands = [
        ("no-op apply", ["apply", seed]),
        ("run P -- true", ["run", "seed", "--", "true"]),
        ("generations P", ["generations", "seed"]),
        ("list P (opens the store)", ["list", "seed"]),
        ("profiles", ["profiles"]),
        ("gc (nothing to collect)", ["gc"]),
    ]
    made, bulk, rows = 0, 0, []
    for size in SIZES:
        # Grow: bulk profiles of new packages until the store holds `size` paths.
        while store_paths(home) < size:
            count = min(PER_PROFILE, size - store_paths(home) - 1)
            if count < 1:
                break
            names = [f"x{made + i:05d}" for i in range(count)]
            for n in names:
                package(repo, archives, n)
            made += count
            profile = os.path.join(WORK, f"bulk{bulk:02d}.toml")
            with open(profile, "w") as f:
                f.write(f'name = "bulk{bulk:02d}"\n[packages]\n' + "".join(f'{n} = "*"\n' for n in names))
            bulk += 1
            t = timed([envctl, "apply", profile], env=env)
            print(f"grew by {count} packages in {t:.1f} s: {store_paths(home)} store paths", flush=True)
        paths = store_paths(home)
        for label, args in commands:
            times = [timed([envctl, *args], env=env) for _ in range(ROUNDS)]
            rows.append((paths, label, statistics.median(times)))
            print(paths, label, f"{statistics.median(times) * 1000:.1f} ms", flush=True)
    extra = int(os.environ.get("PROFILES", "0"))
    if extra:
        profiles = os.path.join(home, "profiles")
        targets = sorted(os.readlink(os.path.join(profiles, n)) for n in os.listdir(profiles)
                         if n.startswith("bulk") and n.endswith("-link"))
        for i in range(extra):
            name = f"p{i:04d}"
            for g in range(1, 11):
                os.symlink(targets[(i + g) % len(targets)], os.path.join(profiles, f"{name}-{g}-link"))
            with open(os.path.join(profiles, f".{name}.last"), "w") as f:
                f.write("10\n")
            open(os.path.join(profiles, f".{name}.lock"), "w").close()
            os.symlink(f"{name}-10-link", os.path.join(profiles, name))
        paths = store_paths(home)
        label_home = f"{paths} + {extra} profiles x 10 generations"
        for label, args in commands + [("store verify", ["store", "verify"]),
                                       ("store verify --repair (nothing to repair)", ["store", "verify", "--repair"])]:
            times = [timed([envctl, *args], env=env) for _ in range(ROUNDS)]
            rows.append((label_home, label, statistics.median(times)))
            print(label_home, label, f"{statistics.median(times) * 1000:.1f} ms", flush=True)
    if os.environ.get("NIX") == "1":
        rows += nix_rows(store_paths(home), extra or 1)
    lines = ["| store paths | command | median |", "| ---: | --- | ---: |"]
    lines += [f"| {p} | {label} | {t * 1000:.1f} ms |" for p, label, t in rows]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "scale-paths.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    if os.environ.get("KEEP") == "1":
        print(f"kept {WORK} (home: {home})")
    else:
        shutil.rmtree(WORK)


def nix_rows(count, profiles):
    """Nix's store grown to `count` one-file paths, each rooted, and `profiles` profiles of ten
    generations; the times of its equivalents. Everything is deleted after."""
    need("nix-store", "nix-bin")
    src = os.path.join(WORK, "nix-src")
    os.makedirs(src)
    dirs = []
    for i in range(count):
        d = os.path.join(src, f"n{i:05d}")
        os.makedirs(os.path.join(d, "bin"))
        with open(os.path.join(d, "bin", f"n{i:05d}"), "w") as f:
            f.write(f"#!/bin/sh\necho n{i:05d}\n")
        dirs.append(d)
    paths = []
    for at in range(0, count, 2000):
        out = subprocess.run(["nix-store", "--add", *dirs[at:at + 2000]], check=True, capture_output=True,
                             text=True, env=NIX_ENV).stdout.split()
        paths += out
    roots = "/nix/var/nix/gcroots/envctl-bench-scale"
    profiles_dir = "/nix/var/nix/profiles/envctl-bench-scale"
    for d in (roots, profiles_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    try:
        for i, p in enumerate(paths):
            os.symlink(p, os.path.join(roots, f"r{i:05d}"))
        for i in range(profiles):
            for g in range(1, 11):
                os.symlink(paths[(i * 10 + g) % len(paths)], os.path.join(profiles_dir, f"p{i:04d}-{g}-link"))
            os.symlink(f"p{i:04d}-10-link", os.path.join(profiles_dir, f"p{i:04d}"))
        label = f"Nix: {len(paths)} paths + {profiles} profiles x 10 generations"
        rows = []
        for what, args in [
            ("nix-env --list-generations", ["nix-env", "-p", os.path.join(profiles_dir, "p0000"), "--list-generations"]),
            ("nix-collect-garbage (nothing to collect)", ["nix-collect-garbage"]),
            ("nix-store --verify", ["nix-store", "--verify"]),
        ]:
            times = [timed(args, env=NIX_ENV) for _ in range(ROUNDS)]
            rows.append((label, what, statistics.median(times)))
            print(label, what, f"{statistics.median(times) * 1000:.1f} ms", flush=True)
        return rows
    finally:
        shutil.rmtree(roots, ignore_errors=True)
        shutil.rmtree(profiles_dir, ignore_errors=True)
        subprocess.run(["nix-store", "--delete", *paths], env=NIX_ENV, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
