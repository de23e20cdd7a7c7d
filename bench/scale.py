#!/usr/bin/env python3
"""Costs as a machine fills up (issue: performance, round three): GC with nothing to collect,
`profiles`, `generations P`, `run P -- true` and a no-op apply, in a home grown to N profiles of
ten generations each.

  python3 bench/scale.py [SIZES] [ROUNDS] [OLD_ENVCTL]
      SIZES  comma-separated profile counts (default 10,100,1000,2000)
      ROUNDS timed runs per command and size (default 5; medians reported)
      OLD_ENVCTL  another envctl binary timed beside this one, alternating (optional)

The home is real where it matters and synthetic where only its size does: one profile `seed` of
three packages is applied for real, then N profiles `pNNNN` each get ten generation links to
seed's generation and a current link, as an apply writes them (GC reads every link, and each
profile's lock). Every store path is live: GC has nothing to collect. Writes
bench/out/scale.md.
"""
import os, shutil, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_envctl, fresh_work, one_file_package as package, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
WORK = os.path.join(OUT, "scale-work")
SIZES = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "10,100,1000,2000").split(",")]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
OLD = sys.argv[3] if len(sys.argv) > 3 else None
GENERATIONS = 10


def grow(home, count):
    """Adds profiles up to `count`, each with GENERATIONS links to seed's generation."""
    profiles = os.path.join(home, "profiles")
    target = os.readlink(os.path.join(profiles, "seed-1-link"))
    for i in range(count):
        name = f"p{i:04d}"
        if os.path.lexists(os.path.join(profiles, name)):
            continue
        for g in range(1, GENERATIONS + 1):
            os.symlink(target, os.path.join(profiles, f"{name}-{g}-link"))
        with open(os.path.join(profiles, f".{name}.last"), "w") as f:
            f.write(f"{GENERATIONS}\n")
        open(os.path.join(profiles, f".{name}.lock"), "w").close()
        os.symlink(f"{name}-{GENERATIONS}-link", os.path.join(profiles, name))


def main():
    envctl = build_envctl()
    binaries = [("envctl", envctl)] + ([("old", OLD)] if OLD else [])
    # A home per binary, seeded by it: an older envctl may not read a newer one's database.
    shutil.rmtree(WORK, ignore_errors=True)
    homes = {}
    for b, exe in binaries:
        src, repo, home, env = fresh_work(os.path.join(WORK, b))
        for name in ("alpha", "beta", "gamma"):
            package(repo, os.path.join(WORK, b), name)
        seed = os.path.join(WORK, b, "seed.toml")
        with open(seed, "w") as f:
            f.write('name = "seed"\n[packages]\nalpha = "*"\nbeta = "*"\ngamma = "*"\n')
        subprocess.run([exe, "apply", seed], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        homes[b] = (home, env, seed)
    commands = [
        ("gc (nothing to collect)", lambda seed: ["gc"]),
        ("profiles", lambda seed: ["profiles"]),
        ("generations P", lambda seed: ["generations", "p0000"]),
        ("run P -- true", lambda seed: ["run", "p0000", "--", "true"]),
        ("no-op apply", lambda seed: ["apply", seed]),
    ]
    rows = []
    for size in SIZES:
        for home, _, _ in homes.values():
            grow(home, size)
        for label, args in commands:
            times = {b: [] for b, _ in binaries}
            for _ in range(ROUNDS):
                for b, exe in binaries:
                    home, env, seed = homes[b]
                    times[b].append(timed([exe, *args(seed)], env=env))
            rows.append((size, label, {b: statistics.median(t) for b, t in times.items()}))
            print(size, label, {b: f"{statistics.median(t) * 1000:.1f} ms" for b, t in times.items()}, flush=True)
    header = "| profiles (x10 generations) | command | " + " | ".join(b for b, _ in binaries) + " |"
    lines = [header, "| --- | --- | " + " | ".join("---" for _ in binaries) + " |"]
    for size, label, med in rows:
        lines.append(f"| {size} | {label} | " + " | ".join(f"{med[b] * 1000:.1f} ms" for b, _ in binaries) + " |")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "scale.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
