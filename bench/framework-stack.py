#!/usr/bin/env python3
"""The bundled TensorFlow 2.15 stack for CPython 3.11 (examples/frameworks/tensorflow-2.15.toml:
tensorflow 2.15.1 with its `and-cuda` nvidia-* wheels, 55 packages) applied from an empty store.

  python3 bench/framework-stack.py [ROUNDS] [CACHE]   (default 3, /var/tmp/envctl-bench-frameworks)

Not a test and not run by CI. Needs the Python package index through this machine's own pip
configuration, tar and zstd. The interpreter is this machine's CPython 3.11 packed as the
`python` recipe (the bundled ones come from python-build-standalone's releases, which this
machine cannot reach).

1. Once, untimed: `envctl lock` of the example with the bundled recipes names the closure, and
   `pip download --no-deps` fetches each locked file into CACHE/wheels (checked against the lock's
   sha256).
2. Per round: `envctl apply` into an empty store whose `pypi` index is that wheelhouse
   (`[indexes]`, so the network is not timed), then the first `import tensorflow` in a session
   (`envctl run P -- python3 -c …`), then a second.
3. Once: `envctl apply` into an empty store through the index pip uses (`[indexes] pypi` set to
   pip's configured index, else pip's own default, read from pip at run time), the network
   included, to show the stack installs from the index itself.

Writes bench/out/framework-stack.md.
"""
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import build_envctl, pack_python, sh  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
CACHE = sys.argv[2] if len(sys.argv) > 2 else "/var/tmp/envctl-bench-frameworks"
WORK = os.path.join(CACHE, "work")
EXAMPLE = os.path.join(ROOT, "examples", "frameworks", "tensorflow-2.15.toml")
IMPORT = "import tensorflow as tf; print(tf.__version__, tf.reduce_sum([1, 2, 3]).numpy())"
MACHINE = {"ENVCTL_SYSTEM_DRIVER": "535.104.05"}


def run(args, env):
    t = time.perf_counter()
    r = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{r.stdout.decode()}\n{r.stderr.decode()}")
    return dt, r.stdout.decode()


def clear():
    """Deletes the homes of earlier rounds, untimed: each holds several GB of CUDA libraries, more
    than the disk keeps for four (so, unlike the other benchmarks, nothing is moved aside)."""
    shutil.rmtree(WORK, ignore_errors=True)
    subprocess.run(["sync"])


def home(name, config):
    """An empty envctl home with `config`, and the environment that uses it."""
    clear()
    h = os.path.join(WORK, name)
    os.makedirs(h)
    with open(os.path.join(h, "config.toml"), "w") as f:
        f.write(config)
    return dict(os.environ, ENVCTL_HOME=h, ENVCTL_CONFIG=os.path.join(h, "config.toml"), **MACHINE)


def pip_index():
    """The index pip resolves against: its configured one, else pip's own default, read from pip
    at run time (no host is written here)."""
    r = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    configured = os.environ.get("PIP_INDEX_URL") or r.stdout.decode().strip()
    if configured:
        return configured
    from pip._internal.models.index import PyPI
    return PyPI.simple_url


def manylinux_tags():
    """Every manylinux tag this machine's glibc runs, as `envctl import pip` lists them."""
    minor = int(os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[1])
    tags = []
    for m in range(minor, 4, -1):
        tags.append(f"manylinux_2_{m}_x86_64")
        tags += {17: ["manylinux2014_x86_64"], 12: ["manylinux2010_x86_64"], 5: ["manylinux1_x86_64"]}.get(m, [])
    return tags


def main():
    envctl = build_envctl()
    os.makedirs(OUT, exist_ok=True)
    version, archive, sha, _ = pack_python("3.11", CACHE)
    recipes = os.path.join(CACHE, "recipes")
    os.makedirs(os.path.join(recipes, "python"), exist_ok=True)
    with open(os.path.join(recipes, "python", f"{version}.toml"), "w") as f:
        f.write(f'name = "python"\nversion = "{version}"\n[[source]]\nurl = "file://{archive}"\nsha256 = "{sha}"\n')
    profile = os.path.join(CACHE, "tf215.toml")
    with open(EXAMPLE) as src, open(profile, "w") as f:
        f.write(src.read() + f'python = "{version}"\n')

    # 1. The closure, downloaded once.
    env = home("lock", f'recipes = ["{recipes}"]\n')
    lock_file = profile.replace(".toml", ".lock")
    if os.path.exists(lock_file):
        os.remove(lock_file)
    run([envctl, "lock", profile], env)
    with open(lock_file, "rb") as f:
        lock = tomllib.load(f)
    wanted = {p["source"]["url"].rsplit("/", 1)[1]: p for p in lock["package"] if p["source"]["url"].startswith("index://")}
    wheels = os.path.join(CACHE, "wheels")
    os.makedirs(wheels, exist_ok=True)
    missing = [p for f, p in wanted.items() if not os.path.exists(os.path.join(wheels, f))]
    if missing:
        sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
           "--python-version", "3.11", *sum([["--platform", t] for t in manylinux_tags()], []), "-d", wheels,
           *[f"{p['name']}=={p['version']}" for p in missing])
    size = 0
    for f, p in wanted.items():
        path = os.path.join(wheels, f)
        data = open(path, "rb").read()
        if hashlib.sha256(data).hexdigest() != p["source"]["sha256"]:
            sys.exit(f"{f}: pip downloaded a file whose sha256 is not the lock's")
        size += len(data)

    # 2. Cold applies from the wheelhouse, and the first import.
    local = f'recipes = ["{recipes}"]\n[indexes]\npypi = ["{wheels}"]\n'
    applies, firsts, seconds = [], [], []
    for r in range(ROUNDS):
        env = home(f"round{r}", local)
        dt, _ = run([envctl, "apply", profile], env)
        applies.append(dt)
        dt, out = run([envctl, "run", "tf215", "--", "python3", "-c", IMPORT], env)
        firsts.append(dt)
        dt, out2 = run([envctl, "run", "tf215", "--", "python3", "-c", IMPORT], env)
        seconds.append(dt)
        print(f"round {r}: apply {applies[-1]:.1f} s, first import {firsts[-1]:.2f} s, again {seconds[-1]:.2f} s",
              flush=True)
    printed = out.strip().splitlines()[-1]

    # 3. Once through the index itself: pip's, asked of pip (envctl assumes no default index).
    index = pip_index()
    env = home("network", f'recipes = ["{recipes}"]\n[indexes]\npypi = ["{index}"]\n')
    t_net, _ = run([envctl, "apply", profile], env)
    dt_net_import, _ = run([envctl, "run", "tf215", "--", "python3", "-c", IMPORT], env)

    med = statistics.median
    lines = [
        f"Run of {time.strftime('%Y-%m-%d')}, {ROUNDS} rounds, medians: `{os.path.basename(EXAMPLE)}` "
        f"with CPython {version}, {len(lock['package'])} packages, {len(wanted)} wheels, {size / 2**20:.0f} MiB.",
        "",
        "| step | time |",
        "| --- | ---: |",
        f"| `envctl apply` into an empty store, wheels from a local wheelhouse | {med(applies):.1f} s |",
        f"| first `import tensorflow` in a session after it | {med(firsts):.2f} s |",
        f"| `import tensorflow` again | {med(seconds):.2f} s |",
        f"| `envctl apply` into an empty store through pip's configured index (network, one run) | {t_net:.1f} s |",
        f"| first `import tensorflow` after that | {dt_net_import:.2f} s |",
        "",
        "Raw (s): apply " + ", ".join(f"{x:.1f}" for x in applies) + "; first import "
        + ", ".join(f"{x:.2f}" for x in firsts) + "; again " + ", ".join(f"{x:.2f}" for x in seconds) + ".",
        "",
        f"The session printed `{printed}`.",
    ]
    with open(os.path.join(OUT, "framework-stack.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    clear()


if __name__ == "__main__":
    main()
