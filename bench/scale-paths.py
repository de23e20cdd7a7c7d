#!/usr/bin/env python3
"""Costs as the store fills up (issue: performance, round three): at 200, 2,000 and 20,000 store
paths, the time of a no-op apply, `run P -- true`, `generations P`, `profiles` and `gc` with
nothing to collect. The first three should not grow with the store (target: within 1.2x of their
time at 200 paths), GC should stay under a second.

  python3 bench/scale-paths.py [SIZES] [ROUNDS]
      SIZES   comma-separated store path counts (default 200,2000,20000)
      ROUNDS  timed runs per command and size (default 5; medians reported)

The store is grown for real: profiles `bulkNN` of up to 2,000 one-file packages each are applied
(one generation each, so every path is live and GC has nothing to collect), beside a small
profile `seed` whose commands are timed. Writes bench/out/scale-paths.md.
"""
import os, shutil, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_envctl, fresh_work, one_file_package as package, timed

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
    lines = ["| store paths | command | median |", "| ---: | --- | ---: |"]
    lines += [f"| {p} | {label} | {t * 1000:.1f} ms |" for p, label, t in rows]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "scale-paths.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
