#!/usr/bin/env python3
"""Profile benchmarks (issue: team profiles end to end).

  python3 bench/profiles.py [ROUNDS]        (default 5; needs tar, zstd, cp; builds envctl --release)

A synthetic profile of 60 packages, about 180,000 files: each package has 1,000 files in a
shared lib/ and 2,000 in directories of its own (share/pkgNN/...). Measured, alternating with
the floor in one run, medians reported:

  * building a generation from scratch (envctl apply of a new profile, named after the round,
    whose packages are installed: no previous generation to share links with) vs `cp -as` of
    the same 60 trees;
  * switching (rollback --to N) on the 60-package profile and on a 1-package one;
  * a no-op apply;
  * `envctl run P -- true` vs `true`.

Old generations and floors are moved aside, never deleted between runs (see BENCHMARKING.md);
everything is deleted at the end. Writes bench/out/profiles.md.
"""
import hashlib, os, shutil, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_envctl, fresh_work, sh, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
WORK = os.path.join(OUT, "profiles-work")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
PKGS, SHARED, OWN = 60, 1000, 2000


def median_ms(xs):
    return statistics.median(xs) * 1000


def main():
    envctl = build_envctl()
    src, repo, home, env = fresh_work(WORK)

    # Packages: trees, archives, recipes.
    for p in range(PKGS):
        tree = os.path.join(src, f"pkg{p:02d}")
        os.makedirs(os.path.join(tree, "lib"))
        for i in range(SHARED):
            with open(os.path.join(tree, "lib", f"libpkg{p:02d}_{i}.so"), "w") as f:
                f.write(f"{p}-{i}\n")
        for d in range(20):
            own = os.path.join(tree, "share", f"pkg{p:02d}", f"d{d}")
            os.makedirs(own)
            for i in range(OWN // 20):
                with open(os.path.join(own, f"f{i}"), "w") as f:
                    f.write(f"{p}-{d}-{i}\n")
        archive = os.path.join(WORK, f"pkg{p:02d}.tar.zst")
        sh("tar", "-C", tree, "--zstd", "-cf", archive, ".")
        sha = hashlib.sha256(open(archive, "rb").read()).hexdigest()
        with open(os.path.join(repo, f"pkg{p:02d}.toml"), "w") as f:
            f.write(f'name = "pkg{p:02d}"\nversion = "1.0"\n[[source]]\nurl = "file://{archive}"\nsha256 = "{sha}"\n')
    files = sum(len(fs) for _, _, fs in os.walk(src))
    shutil.rmtree(src)

    big = os.path.join(WORK, "big.toml")
    small = os.path.join(WORK, "small.toml")

    def write_big(i, path=big):
        with open(path, "w") as f:
            f.write("[packages]\n" + "".join(f'pkg{p:02d} = "1"\n' for p in range(PKGS)) + f'[env]\nROUND = "{i}"\n')
        return path

    write_big(0)
    with open(small, "w") as f:
        f.write('[packages]\npkg00 = "1"\n')
    sh(envctl, "apply", big, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sh(envctl, "apply", small, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = os.path.join(home, "store")
    pkg_paths = sorted(os.path.join(store, n) for n in os.listdir(store) if "-pkg" in n)
    assert len(pkg_paths) == PKGS, pkg_paths

    def read_inputs():
        # Warm the page cache with the trees both sides read (the host trims it).
        for p in pkg_paths:
            for _ in os.walk(p):
                pass

    gen_t, cp_t = [], []
    for r in range(1, ROUNDS + 1):
        read_inputs()
        gen_t.append(timed([envctl, "apply", write_big(r, os.path.join(WORK, f"gen{r}.toml"))], env))
        read_inputs()
        dest = os.path.join(WORK, f"cp-{r}")
        os.makedirs(dest)
        t = time.perf_counter()
        for p in pkg_paths:
            sh("cp", "-as", p + "/.", dest)
        cp_t.append(time.perf_counter() - t)

    write_big(1)
    sh(envctl, "apply", big, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    links = sum(len(fs) for _, _, fs in os.walk(os.path.realpath(os.path.join(home, "profiles", "big"))))
    gens = len([n for n in os.listdir(os.path.join(home, "profiles")) if n.startswith("big-")])

    def switching(profile, n):
        xs = []
        for i in range(20):
            xs.append(timed([envctl, "rollback", profile, "--to", str(1 if i % 2 == 0 else n)], env))
        return xs

    sw_big = switching("big", gens)
    sh(envctl, "apply", small.replace("small", "small"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(small, "w") as f:
        f.write('[packages]\npkg00 = "1"\n[env]\nX = "1"\n')
    sh(envctl, "apply", small, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sw_small = switching("small", 2)

    sh(envctl, "rollback", "big", "--to", str(gens), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    noop = [timed([envctl, "apply", big], env) for _ in range(20)]
    run_t, true_t = [], []
    true = shutil.which("true")
    for _ in range(30):
        run_t.append(timed([envctl, "run", "big", "--", "true"], env))
        true_t.append(timed([true], env))

    lines = [
        f"profile: {PKGS} packages, {files} files in the packages; its generation holds {links} links; {ROUNDS} rounds",
        "",
        "| measurement | median | floor / comparison | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| build a generation from scratch (`envctl apply`, packages installed) | {median_ms(gen_t):.0f} ms | `cp -as` of the 60 trees: {median_ms(cp_t):.0f} ms | {statistics.median(gen_t) / statistics.median(cp_t):.2f}x |",
        f"| switch (`rollback --to N`), 60 packages | {median_ms(sw_big):.1f} ms | 1 package: {median_ms(sw_small):.1f} ms | |",
        f"| no-op `envctl apply` | {median_ms(noop):.1f} ms | | |",
        f"| `envctl run big -- true` | {median_ms(run_t):.1f} ms | `true`: {median_ms(true_t):.1f} ms | +{median_ms(run_t) - median_ms(true_t):.1f} ms |",
        "",
        "raw generation builds (s): " + " ".join(f"{x:.2f}" for x in gen_t),
        "raw cp -as (s): " + " ".join(f"{x:.2f}" for x in cp_t),
    ]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "profiles.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    # Delete once, at the end (the store is read-only: make it writable first).
    sh("chmod", "-R", "u+w", WORK)
    shutil.rmtree(WORK)


if __name__ == "__main__":
    main()
