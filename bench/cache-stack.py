#!/usr/bin/env python3
"""A real framework closure through binary caches (issue 28): the TensorFlow 2.15 stack pulled
into an empty home from a directory cache and from a loopback S3 server, against the same apply
from a local wheelhouse and against Nix copying the same trees from a `file://` binary cache.

  python3 bench/cache-stack.py [ROUNDS] [CACHE]   (default 3, /var/tmp/envctl-bench-tf215; not CI)

CACHE is what `bench/framework-stack.py` prepared there (run it once first, with the same CACHE):
the profile file and its lock, the `python` recipe and the wheelhouse. Needs zstd and Nix 2.8
(Debian's nix-bin, installed when absent; run as root without build users), curl, and moto's
S3 server (installed with pip as the tests install it, `bench/common.py`). Builds envctl --release.

Once, untimed: the stack is applied from the wheelhouse into a home and pushed, signed, to a
directory cache and to a bucket of a loopback moto server (`envctl cache push`: the interpreter,
every wheel and each wheel's bytecode; each push timed once); the same trees are added to Nix's store and copied to a `file://` cache compressed with zstd.
Per round, alternating, each after an untimed read of its inputs, each into an empty store:

  * envctl from the cache: `apply --frozen` in a home whose configuration names the cache and no
    index (so nothing can come from the wheelhouse): archives fetched, signatures and tree hashes
    checked, paths flushed and registered, the `pyvenv.cfg` and the generation made;
  * envctl from S3: the same, the configuration naming the `s3://` cache instead (every object
    a signed GET to the loopback server, which keeps them in memory);
  * Nix: `nix copy --no-check-sigs --from file://… --to local?root=…` of the same trees;
  * envctl from the wheelhouse: the same apply from the wheels (unpacked, RECORD checked,
    bytecode compiled).

BASELINE=/path/to/envctl adds, per round, the pull by another build (one from before bytecode
travelled compiles it after pulling the packages).

Writes bench/out/cache-stack.md; the homes, caches and Nix paths are deleted at the end.
"""
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import NIX_ENV, QUIET, S3_CREDENTIALS, build_envctl, keygen, moto_server, need, read_all, sh, timed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
CACHE = sys.argv[2] if len(sys.argv) > 2 else "/var/tmp/envctl-bench-tf215"
WORK = os.path.join(CACHE, "cache-work")
NIX = dict(NIX_ENV, NIX_CONFIG="build-users-group =\nexperimental-features = nix-command\nsandbox = false")
MACHINE = {"ENVCTL_SYSTEM_DRIVER": "535.104.05"}


def home(name, config):
    """An empty home with `config`, and the environment that uses it."""
    h = os.path.join(WORK, name)
    os.makedirs(h)
    with open(os.path.join(h, "config.toml"), "w") as f:
        f.write(config)
    return dict(os.environ, ENVCTL_HOME=h, ENVCTL_CONFIG=os.path.join(h, "config.toml"), **MACHINE)


def remove(path):
    subprocess.run(["chmod", "-R", "u+w", path], **QUIET)
    shutil.rmtree(path, ignore_errors=True)


def main():
    need("nix-store", "nix-bin")
    need("zstd", "zstd")
    profiles = [p for p in glob.glob(os.path.join(CACHE, "*.toml"))]
    recipes, wheels = os.path.join(CACHE, "recipes"), os.path.join(CACHE, "wheels")
    if len(profiles) != 1 or not os.path.isdir(wheels):
        sys.exit(f"{CACHE} is not a stack prepared by bench/framework-stack.py (one profile file, wheels/)")
    profile = profiles[0]
    name = os.path.basename(profile)[:-len(".toml")]
    envctl = build_envctl()
    remove(WORK)
    os.makedirs(WORK)
    local = f'recipes = ["{recipes}"]\n[indexes]\npypi = ["{wheels}"]\n'

    # Once: the stack applied and pushed; the same trees in Nix's store and its cache.
    seed = home("seed", local)
    sh(envctl, "apply", profile, env=seed, **QUIET)
    public, secret = keygen(envctl, WORK, seed)
    cache = os.path.join(WORK, "cache")
    started = time.perf_counter()
    push = subprocess.run([envctl, "cache", "push", cache, name, "--key", secret, "--json"], check=True,
                          env=seed, capture_output=True, text=True).stdout
    dir_push = time.perf_counter() - started
    moto, endpoint = moto_server()
    s3 = f"s3://bench/{name}?endpoint={endpoint}&region=us-east-1"
    seed = dict(seed, **S3_CREDENTIALS)
    s3_push = timed([envctl, "cache", "push", s3, name, "--key", secret], seed)
    pushed = json.loads(push)["pushed"]
    store = os.path.join(seed["ENVCTL_HOME"], "store")
    trees = [os.path.join(store, os.path.basename(p)) for p in pushed]
    nix_paths = [subprocess.run(["nix-store", "--add", t], check=True, capture_output=True, text=True,
                                env=NIX).stdout.strip() for t in trees]
    nix_cache = os.path.join(WORK, "nix-cache")
    sh("nix", "copy", "--to", f"file://{nix_cache}?compression=zstd", *nix_paths, env=NIX, **QUIET)
    files = sum(len(fs) for t in trees for _, _, fs in os.walk(t))
    size = sum(os.path.getsize(os.path.join(d, f)) for t in trees for d, _, fs in os.walk(t) for f in fs
               if not os.path.islink(os.path.join(d, f)))
    bytecode = sum(1 for p in pushed if "-bytecode-" in p)
    remove(seed["ENVCTL_HOME"])

    def size_of(d):
        return sum(os.path.getsize(f) for f in glob.glob(os.path.join(d, "**"), recursive=True) if os.path.isfile(f))

    pulls, s3_pulls, nixes, locals_, base_pulls = [], [], [], [], []
    baseline = os.environ.get("BASELINE")
    pull_config = f'recipes = ["{recipes}"]\ntrusted-keys = ["{public}"]\n[[caches]]\nurl = "{cache}"\n'
    s3_config = f'recipes = ["{recipes}"]\ntrusted-keys = ["{public}"]\n[[caches]]\nurl = "{s3}"\n'
    try:
        for r in range(ROUNDS):
            env = home(f"pull{r}", pull_config)
            read_all(cache)
            sh("sync")
            pulls.append(timed([envctl, "apply", "--frozen", profile], env))
            remove(env["ENVCTL_HOME"])
            env = dict(home(f"s3-{r}", s3_config), **S3_CREDENTIALS)
            s3_pulls.append(timed([envctl, "apply", "--frozen", profile], env))
            remove(env["ENVCTL_HOME"])
            if baseline:
                env = home(f"base{r}", pull_config)
                read_all(cache)
                sh("sync")
                base_pulls.append(timed([baseline, "apply", "--frozen", profile], env))
                remove(env["ENVCTL_HOME"])
            root = os.path.join(WORK, f"nix-root{r}")
            read_all(nix_cache)
            sh("sync")
            nixes.append(timed(["nix", "copy", "--no-check-sigs", "--from", f"file://{nix_cache}",
                                "--to", f"local?root={root}", *nix_paths], NIX))
            remove(root)
            env = home(f"local{r}", local)
            read_all(wheels)
            sh("sync")
            locals_.append(timed([envctl, "apply", "--frozen", profile], env))
            remove(env["ENVCTL_HOME"])
            print(f"round {r}: envctl pull {pulls[-1]:.1f} s, from S3 {s3_pulls[-1]:.1f} s, nix copy {nixes[-1]:.1f} s, "
                  f"envctl from the wheelhouse {locals_[-1]:.1f} s"
                  + (f", baseline pull {base_pulls[-1]:.1f} s" if base_pulls else ""), flush=True)
        med = statistics.median
        nix_version = subprocess.run(["nix", "--version"], capture_output=True, text=True, env=NIX).stdout.strip()
        lines = [
            f"`{os.path.basename(profile)}`: {len(pushed)} store paths pushed ({bytecode} of them bytecode), "
            f"{files:,} files, {size / 2**30:.2f} GiB; envctl's directory cache {size_of(cache) / 2**20:.0f} MiB "
            f"(tar.zst, signed), Nix's {size_of(nix_cache) / 2**20:.0f} MiB (NAR, zstd); {nix_version}; "
            f"{ROUNDS} rounds, medians; pushed once: to the directory {dir_push:.1f} s, to loopback S3 (moto) "
            f"{s3_push:.1f} s",
            "",
            "| into an empty store | time | against Nix | against envctl from the wheelhouse |",
            "| --- | ---: | ---: | ---: |",
            f"| envctl: `apply --frozen`, only the directory cache | {med(pulls):.1f} s | {med(pulls) / med(nixes):.2f}x | {med(pulls) / med(locals_):.2f}x |",
            f"| envctl: `apply --frozen`, only the S3 cache (loopback moto) | {med(s3_pulls):.1f} s | {med(s3_pulls) / med(nixes):.2f}x | {med(s3_pulls) / med(locals_):.2f}x |",
            f"| Nix: `nix copy --from file://…` of the same trees | {med(nixes):.1f} s | 1.00x | |",
            f"| envctl: `apply --frozen` from the wheelhouse, no cache | {med(locals_):.1f} s | {med(locals_) / med(nixes):.2f}x | 1.00x |",
            *([f"| baseline build (`BASELINE`): pull from the same cache | {med(base_pulls):.1f} s | {med(base_pulls) / med(nixes):.2f}x | {med(base_pulls) / med(locals_):.2f}x |"]
              if base_pulls else []),
            "",
            "raw (s): envctl pull " + " ".join(f"{x:.1f}" for x in pulls) + "; from S3 "
            + " ".join(f"{x:.1f}" for x in s3_pulls) + "; nix " + " ".join(f"{x:.1f}" for x in nixes)
            + "; envctl from the wheelhouse " + " ".join(f"{x:.1f}" for x in locals_)
            + ("; baseline pull " + " ".join(f"{x:.1f}" for x in base_pulls) if base_pulls else ""),
        ]
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, "cache-stack.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        moto.kill()
        subprocess.run(["nix-store", "--delete", *nix_paths], env=NIX, **QUIET)
        remove(WORK)


if __name__ == "__main__":
    main()
