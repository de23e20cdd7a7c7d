#!/usr/bin/env python3
"""The real TensorFlow 2.15.1 closure for CPython 3.11: envctl against uv, in one run.

  python3 bench/python-stack.py [ROUNDS] [CACHE]   (default 3 rounds, /var/tmp/envctl-bench-python)
  ENVCTL_BASELINE=/path/to/older/envctl python3 bench/python-stack.py   (adds its cold apply as an arm)

Not a test and not run by CI. Needs the network to the Python package index through this
machine's own pip configuration (for `pip download` and `envctl import pip`), uv (`pip install
uv`), tar and zstd. The wheels are downloaded once into CACHE/wheels (outside the repository);
the python recipe packs this machine's CPython 3.11 without its site-packages.

Measured (alternating envctl and uv, medians over ROUNDS; old trees moved aside, deleted at the
end, see shared/BENCHMARKING.md):

  1. `envctl import pip tensorflow==2.15.1 --python 3.11` (pip resolves; one run);
  2. cold: `envctl apply` into an empty store (the interpreter, its standard library compiled, the
     42 wheels and their bytecode), and into a store holding only the interpreter, against
     `uv venv` + `uv pip install --compile-bytecode` into a fresh venv from an empty uv cache; both
     read the same local wheel files;
  3. warm: a second profile over the warm store against uv from its warm cache into a fresh venv,
     with and without --compile-bytecode;
  4. the first `import tensorflow` after each install, then `import tensorflow` again: in an
     envctl session (`envctl run P -- python3 -c …`) against the uv venv's python.

Writes bench/out/python-stack.md.
"""
import os, shutil, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_envctl, pack_python, read_all  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
CACHE = sys.argv[2] if len(sys.argv) > 2 else "/var/tmp/envctl-bench-python"
WORK = os.path.join(CACHE, "work")
ATTIC = os.path.join(CACHE, "attic")
REQ = "tensorflow==2.15.1"
SERIES = "3.11"
PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64"]
IMPORT = "import tensorflow as tf; print(tf.reduce_sum([1, 2, 3]).numpy())"


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def timed(args, env=None, cwd=None):
    t = time.perf_counter()
    r = subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{r.stdout.decode()}\n{r.stderr.decode()}")
    return dt, r.stdout.decode()


def aside(path):
    """Moves a tree aside (deleting many files slows the next creations; delete once at the end)."""
    if os.path.exists(path):
        os.makedirs(ATTIC, exist_ok=True)
        os.rename(path, os.path.join(ATTIC, f"{os.path.basename(path)}-{time.time_ns()}"))


def main():
    envctl = build_envctl()
    uv = shutil.which("uv") or sys.exit("uv not found: pip install uv")
    os.makedirs(OUT, exist_ok=True)
    wheels = os.path.join(CACHE, "wheels")
    if not os.path.exists(os.path.join(wheels, ".done")):
        os.makedirs(wheels, exist_ok=True)
        sh(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--implementation", "cp",
           "--python-version", SERIES, *sum([["--platform", p] for p in PLATFORMS], []), "-d", wheels, REQ)
        open(os.path.join(wheels, ".done"), "w").close()
    files = [f for f in os.listdir(wheels) if f.endswith(".whl")]
    size = sum(os.path.getsize(os.path.join(wheels, f)) for f in files)
    version, archive, sha, host_python = pack_python(SERIES, CACHE)

    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    recipes = os.path.join(WORK, "recipes")
    os.makedirs(os.path.join(recipes, "python"))
    with open(os.path.join(recipes, "python", f"{version}.toml"), "w") as f:
        f.write(f'name = "python"\nversion = "{version}"\n[[source]]\nurl = "file://{archive}"\nsha256 = "{sha}"\n')
    config = os.path.join(WORK, "config.toml")
    with open(config, "w") as f:
        f.write(f'recipes = ["{recipes}"]\n[indexes]\npypi = ["{wheels}"]\n')
    base_env = dict(os.environ, ENVCTL_CONFIG=config, ENVCTL_SYSTEM_DRIVER="")

    # 1. import pip
    t_import, _ = timed([envctl, "import", "pip", REQ, "--python", SERIES, *sum([["--platform", p] for p in PLATFORMS], []),
                         "--out", recipes], env=base_env)
    n_recipes = sum(len(fs) for _, _, fs in os.walk(recipes)) - 1

    profile = os.path.join(WORK, "tf.toml")
    with open(profile, "w") as f:
        f.write(f'[packages]\ntensorflow = "2.15.1"\npython = "{SERIES}"\n')
    second = os.path.join(WORK, "tf-second.toml")
    shutil.copy(profile, second)

    only_python = os.path.join(WORK, "py.toml")
    with open(only_python, "w") as f:
        f.write(f'[packages]\npython = "{SERIES}"\n')
    baseline = os.environ.get("ENVCTL_BASELINE")
    cold_e, cold_p, cold_u, warm_e, warm_u, warm_uc, imp_e, imp_u, again_e, again_u, cold_b = ([] for _ in range(11))
    for r in range(ROUNDS):
        home = os.path.join(WORK, "home")
        env = dict(base_env, ENVCTL_HOME=home)
        for lock in (profile, second):
            lock = lock.replace(".toml", ".lock")
            if os.path.exists(lock):
                os.remove(lock)
        read_all(wheels)
        # cold
        dt, _ = timed([envctl, "apply", profile], env=env)
        cold_e.append(dt)
        if baseline:
            # The same cold apply by an older build, into a home of its own, from the same lock.
            home_b = os.path.join(WORK, "home-baseline")
            read_all(wheels)
            cold_b.append(timed([baseline, "apply", "--frozen", profile], env=dict(base_env, ENVCTL_HOME=home_b))[0])
            aside(home_b)
        venv, cache = os.path.join(WORK, "venv"), os.path.join(WORK, "uv-cache")
        read_all(wheels)
        t = time.perf_counter()
        timed([uv, "venv", "-q", "--python", host_python, venv], env=dict(os.environ, UV_CACHE_DIR=cache))
        timed([uv, "pip", "install", "-q", "--compile-bytecode", "--no-index", "--find-links", wheels,
               "--python", os.path.join(venv, "bin", "python"), REQ], env=dict(os.environ, UV_CACHE_DIR=cache))
        cold_u.append(time.perf_counter() - t)
        # cold again, with the interpreter already in the store (as uv's venv has its own)
        home_p = os.path.join(WORK, "home-python")
        env_p = dict(base_env, ENVCTL_HOME=home_p)
        timed([envctl, "apply", only_python], env=env_p)
        os.remove(profile.replace(".toml", ".lock"))
        read_all(wheels)
        dt, _ = timed([envctl, "apply", profile], env=env_p)
        cold_p.append(dt)
        aside(home_p)
        # first import, then again
        dt, out = timed([envctl, "run", "tf", "--", "python3", "-c", IMPORT], env=env)
        assert out.strip() == "6", out
        imp_e.append(dt)
        dt, out = timed([os.path.join(venv, "bin", "python"), "-c", IMPORT])
        assert out.strip() == "6", out
        imp_u.append(dt)
        again_e.append(timed([envctl, "run", "tf", "--", "python3", "-c", IMPORT], env=env)[0])
        again_u.append(timed([os.path.join(venv, "bin", "python"), "-c", IMPORT])[0])
        # warm: a second profile over the warm store; uv from its warm cache into a fresh venv
        dt, _ = timed([envctl, "apply", second], env=env)
        warm_e.append(dt)
        for compile_, out_list in ((False, warm_u), (True, warm_uc)):
            venv2 = os.path.join(WORK, "venv2")
            t = time.perf_counter()
            timed([uv, "venv", "-q", "--python", host_python, venv2], env=dict(os.environ, UV_CACHE_DIR=cache))
            timed([uv, "pip", "install", "-q", *(["--compile-bytecode"] if compile_ else []), "--no-index",
                   "--find-links", wheels, "--python", os.path.join(venv2, "bin", "python"), REQ],
                  env=dict(os.environ, UV_CACHE_DIR=cache))
            out_list.append(time.perf_counter() - t)
            aside(venv2)
        for p in (home, venv, cache):
            aside(p)
        print(f"round {r + 1}: cold {cold_e[-1]:.1f}/{cold_p[-1]:.1f}/{cold_u[-1]:.1f} s, warm {warm_e[-1]:.2f}/{warm_u[-1]:.2f}"
              f"/{warm_uc[-1]:.2f} s, import {imp_e[-1]:.2f}/{imp_u[-1]:.2f} s", flush=True)

    m = statistics.median
    lines = [
        f"TensorFlow 2.15.1 for CPython {version} (this machine's, packed without site-packages): "
        f"{len(files)} wheels, {size / 2**20:.0f} MiB; {ROUNDS} rounds, medians; `python3 bench/python-stack.py {ROUNDS}`.",
        "",
        "| step | envctl | uv | envctl / uv |",
        "| --- | --- | --- | --- |",
        f"| `envctl import pip {REQ} --python {SERIES}` ({n_recipes} recipes, one run) | {t_import:.1f} s | | |",
        f"| cold: empty store / empty cache, `--compile-bytecode` | {m(cold_e):.1f} s | {m(cold_u):.1f} s | {m(cold_e) / m(cold_u):.2f} |",
        *([f"| cold: empty store, the baseline build (`ENVCTL_BASELINE`) | {m(cold_b):.1f} s | {m(cold_u):.1f} s | {m(cold_b) / m(cold_u):.2f} |"] if cold_b else []),
        f"| cold, the interpreter already in the store (as uv's venv has it) | {m(cold_p):.1f} s | {m(cold_u):.1f} s | {m(cold_p) / m(cold_u):.2f} |",
        f"| warm: second profile / fresh venv from warm cache, no bytecode | {m(warm_e):.2f} s | {m(warm_u):.2f} s | {m(warm_e) / m(warm_u):.2f} |",
        f"| warm: second profile / fresh venv from warm cache, `--compile-bytecode` | {m(warm_e):.2f} s | {m(warm_uc):.2f} s | {m(warm_e) / m(warm_uc):.2f} |",
        f"| first `import tensorflow` after the install (session / venv) | {m(imp_e):.2f} s | {m(imp_u):.2f} s | {m(imp_e) / m(imp_u):.2f} |",
        f"| `import tensorflow` again | {m(again_e):.2f} s | {m(again_u):.2f} s | {m(again_e) / m(again_u):.2f} |",
        "",
        "Raw (s): cold envctl " + ", ".join(f"{x:.1f}" for x in cold_e)
        + ("; cold baseline " + ", ".join(f"{x:.1f}" for x in cold_b) if cold_b else "")
        + "; cold envctl, interpreter in store " + ", ".join(f"{x:.1f}" for x in cold_p) + "; cold uv " + ", ".join(f"{x:.1f}" for x in cold_u)
        + "; warm envctl " + ", ".join(f"{x:.2f}" for x in warm_e) + "; warm uv " + ", ".join(f"{x:.2f}" for x in warm_u)
        + "; warm uv --compile-bytecode " + ", ".join(f"{x:.2f}" for x in warm_uc)
        + "; import envctl " + ", ".join(f"{x:.2f}" for x in imp_e) + "; import uv " + ", ".join(f"{x:.2f}" for x in imp_u) + ".",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(OUT, "python-stack.md"), "w") as f:
        f.write(text)
    shutil.rmtree(ATTIC, ignore_errors=True)


if __name__ == "__main__":
    main()
