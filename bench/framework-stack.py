#!/usr/bin/env python3
"""A bundled framework stack applied from an empty store: by default TensorFlow 2.15 for CPython
3.11 (examples/frameworks/tensorflow-2.15.toml: tensorflow 2.15.1 with its `and-cuda` nvidia-*
wheels, 55 packages).

  python3 bench/framework-stack.py [ROUNDS] [CACHE]   (default 3, /var/tmp/envctl-bench-frameworks)
  STACK=torch-2.8 UV=1 NETWORK=0 python3 bench/framework-stack.py 3 /var/tmp/envctl-bench-torch28

STACK names an example of examples/frameworks/ (its `python` pin sets the CPython packed, with
`envctl import python`); UV=1 adds, per round, uv installing the same locked wheels from the same
wheelhouse into a fresh venv with an empty cache (`--compile-bytecode`); NETWORK=0 leaves out step
3. Each apply's peak RSS is read with /usr/bin/time. BASELINE=/path/to/envctl adds, per round, the
same apply by another build (the one before a change); NOFLUSH=1 adds one with `fsync = false`.

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
STACK = os.environ.get("STACK", "tensorflow-2.15")
EXAMPLE = os.path.join(ROOT, "examples", "frameworks", f"{STACK}.toml")
IMPORT = {
    "tensorflow": "import tensorflow as tf; print(tf.__version__, tf.reduce_sum([1, 2, 3]).numpy())",
    # TensorFlow 1 runs graphs in a session (no eager execution by default).
    "tensorflow-1": "import tensorflow as tf; print(tf.__version__, tf.Session().run(tf.reduce_sum([1, 2, 3])))",
    "torch": "import torch; print(torch.__version__, torch.tensor([1, 2, 3]).sum().item())",
}["tensorflow-1" if STACK.startswith("tensorflow-1.") else STACK.split("-")[0]]
PROFILE = STACK.replace(".", "").replace("-", "")
MACHINE = {"ENVCTL_SYSTEM_DRIVER": "535.104.05"}


def run(args, env):
    t = time.perf_counter()
    r = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{r.stdout.decode()}\n{r.stderr.decode()}")
    return dt, r.stdout.decode()


def run_rss(args, env):
    """`run`, and the command's peak RSS in KiB (GNU time's %M)."""
    report = os.path.join(CACHE, "time.txt")
    dt, out = run(["/usr/bin/time", "-f", "%M", "-o", report, *args], env)
    return dt, out, int(open(report).read().split()[-1])


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
    example = open(EXAMPLE).read()
    pinned = [line.split('"')[1] for line in example.splitlines() if line.startswith("python = ")]
    # TensorFlow 1.15's recipes are for CPython 3.7 only.
    series = pinned[0] if pinned else "3.7" if STACK.startswith("tensorflow-1.") else "3.11"
    recipes = os.path.join(CACHE, "recipes")
    if series == "3.11":
        version, archive, sha, host_python = pack_python("3.11", CACHE)
        os.makedirs(os.path.join(recipes, "python"), exist_ok=True)
        with open(os.path.join(recipes, "python", f"{version}.toml"), "w") as f:
            f.write(f'name = "python"\nversion = "{version}"\n[[source]]\nurl = "file://{archive}"\nsha256 = "{sha}"\n')
    else:
        # Any other series: this machine's interpreter of it, made a recipe by envctl itself.
        import glob
        found = sorted(glob.glob(f"/root/.pyenv/versions/{series}.*/bin/python{series}")) or [shutil.which(f"python{series}")]
        host_python = found[-1] or sys.exit(f"no python{series} here")
        out = subprocess.run([host_python, "-c", "import sys, platform; print(sys.base_prefix, platform.python_version())"],
                             check=True, stdout=subprocess.PIPE).stdout.decode().split()
        version = out[1]
        run([envctl, "import", "python", out[0], "--out", recipes], dict(os.environ))
        host_python = os.path.join(out[0], "bin", f"python{series}")
    profile = os.path.join(CACHE, f"{PROFILE}.toml")
    with open(profile, "w") as f:
        kept = [line for line in example.splitlines() if not line.startswith("python = ")]
        f.write("\n".join(kept) + f'\npython = "{version}"\n')

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
    # Source distributions (TensorFlow 1.15's gast) are fetched as they are: envctl builds them.
    sdists = [p for p in missing if p["source"].get("format") == "sdist"]
    missing = [p for p in missing if p not in sdists]
    if missing:
        sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
           "--python-version", series, *sum([["--platform", t] for t in manylinux_tags()], []), "-d", wheels,
           *[f"{p['name']}=={p['version']}" for p in missing])
    if sdists:
        sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:", "-d", wheels,
           *[f"{p['name']}=={p['version']}" for p in sdists])
    size = 0
    for f, p in wanted.items():
        path = os.path.join(wheels, f)
        data = open(path, "rb").read()
        if hashlib.sha256(data).hexdigest() != p["source"]["sha256"]:
            sys.exit(f"{f}: pip downloaded a file whose sha256 is not the lock's")
        size += len(data)

    # 2. Cold applies from the wheelhouse, and the first import.
    local = f'recipes = ["{recipes}"]\n[indexes]\npypi = ["{wheels}"]\n'
    applies, firsts, seconds, rss, uvs, baselines, noflush = [], [], [], [], [], [], []
    baseline = os.environ.get("BASELINE")
    uv = os.environ.get("UV") == "1" and (shutil.which("uv") or sys.exit("uv not found: pip install uv"))
    requirements = [f"{p['name']}=={p['version']}" for p in wanted.values()]
    for r in range(ROUNDS):
        env = home(f"round{r}", local)
        dt, _, kib = run_rss([envctl, "apply", profile], env)
        applies.append(dt)
        rss.append(kib)
        dt, out = run([envctl, "run", PROFILE, "--", "python3", "-c", IMPORT], env)
        firsts.append(dt)
        dt, out2 = run([envctl, "run", PROFILE, "--", "python3", "-c", IMPORT], env)
        seconds.append(dt)
        if baseline:
            dt, _ = run([baseline, "apply", profile], home(f"baseline{r}", local))
            baselines.append(dt)
        if os.environ.get("NOFLUSH") == "1":
            dt, _ = run([envctl, "apply", profile], home(f"noflush{r}", local + "[store]\nfsync = false\n"))
            noflush.append(dt)
        if uv:
            clear()
            venv, cache = os.path.join(WORK, "venv"), os.path.join(WORK, "uv-cache")
            uv_env = dict(os.environ, UV_CACHE_DIR=cache)
            t = time.perf_counter()
            run([uv, "venv", "-q", "--python", host_python, venv], uv_env)
            run([uv, "pip", "install", "-q", "--compile-bytecode", "--no-index", "--find-links", wheels,
                 "--python", os.path.join(venv, "bin", "python"), *requirements], uv_env)
            uvs.append(time.perf_counter() - t)
        print(f"round {r}: apply {applies[-1]:.1f} s ({rss[-1] / 1024:.0f} MiB peak), first import {firsts[-1]:.2f} s, "
              f"again {seconds[-1]:.2f} s" + (f", uv {uvs[-1]:.1f} s" if uvs else "")
              + (f", baseline {baselines[-1]:.1f} s" if baselines else "")
              + (f", flush off {noflush[-1]:.1f} s" if noflush else ""), flush=True)
    printed = out.strip().splitlines()[-1]

    # 3. Once through the index itself: pip's, asked of pip (envctl assumes no default index).
    t_net = dt_net_import = None
    if os.environ.get("NETWORK", "1") == "1":
        index = pip_index()
        env = home("network", f'recipes = ["{recipes}"]\n[indexes]\npypi = ["{index}"]\n')
        t_net, _ = run([envctl, "apply", profile], env)
        dt_net_import, _ = run([envctl, "run", PROFILE, "--", "python3", "-c", IMPORT], env)

    med = statistics.median
    lines = [
        f"Run of {time.strftime('%Y-%m-%d')}, {ROUNDS} rounds, medians: `{os.path.basename(EXAMPLE)}` "
        f"with CPython {version}, {len(lock['package'])} packages, {len(wanted)} wheels, {size / 2**20:.0f} MiB.",
        "",
        "| step | time |",
        "| --- | ---: |",
        f"| `envctl apply` into an empty store, wheels from a local wheelhouse | {med(applies):.1f} s |",
        f"| its peak RSS | {med(rss) / 1024:.0f} MiB |",
        *([f"| uv: `uv venv` + `uv pip install --compile-bytecode` of the same wheels, empty cache | {med(uvs):.1f} s |",
           f"| envctl / uv | {med(applies) / med(uvs):.2f} |"] if uvs else []),
        *([f"| the same apply by the baseline build | {med(baselines):.1f} s |"] if baselines else []),
        *([f"| the same apply with `fsync = false` | {med(noflush):.1f} s |",
           *([f"| flush off / uv | {med(noflush) / med(uvs):.2f} |"] if uvs else [])] if noflush else []),
        f"| first import in a session after it | {med(firsts):.2f} s |",
        f"| the import again | {med(seconds):.2f} s |",
        *([f"| `envctl apply` into an empty store through pip's configured index (network, one run) | {t_net:.1f} s |",
           f"| first import after that | {dt_net_import:.2f} s |"] if t_net is not None else []),
        "",
        "Raw (s): apply " + ", ".join(f"{x:.1f}" for x in applies) + "; peak RSS (MiB) "
        + ", ".join(f"{x / 1024:.0f}" for x in rss) + ("; uv " + ", ".join(f"{x:.1f}" for x in uvs) if uvs else "")
        + ("; baseline " + ", ".join(f"{x:.1f}" for x in baselines) if baselines else "")
        + ("; flush off " + ", ".join(f"{x:.1f}" for x in noflush) if noflush else "")
        + "; first import " + ", ".join(f"{x:.2f}" for x in firsts) + "; again " + ", ".join(f"{x:.2f}" for x in seconds) + ".",
        "",
        f"The session printed `{printed}`.",
    ]
    with open(os.path.join(OUT, f"framework-stack-{STACK}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    clear()


if __name__ == "__main__":
    main()
