#!/usr/bin/env python3
"""A pull from a directory binary cache against Nix substituting the same trees from a `file://`
binary cache (issue 28), and against the same apply from local archives.

  python3 bench/cache-nix.py [ROUNDS]       (default 3; not CI)

WORK=DIR puts everything under DIR instead of /var/tmp/envctl-bench-cache-nix: a journaled
filesystem (a loop mount) keeps rounds apart, where the root filesystem of these machines has no
journal and a deletion slows the file creation that follows it (docs/performance.md).

Needs tar, zstd and Nix 2.8 (Debian's nix-bin, installed when absent; run as root without build
users, as bench/store-maintenance.py runs it). Builds envctl --release.

Once, untimed: the 60-package synthetic corpus (3,000 files of 100 B to 4 KiB each, about 360 MiB)
is applied into a home and pushed (`envctl cache push DIR`, signed) to a directory cache; the same
60 trees are added to Nix's store (`nix-store --add`) and copied to a `file://` binary cache
compressed with zstd (`nix copy --to file://…?compression=zstd`). Per round, alternating, each
into an empty store:

  * envctl: `envctl apply --frozen` of the profile on a fresh home whose only source is the cache
    (every object's signature checked, archives unpacked, paths registered and flushed, the
    generation built);
  * Nix: `nix copy --from file://… --to local?root=…` of the 60 paths (NARs decompressed, unpacked,
    registered; `--no-check-sigs`, the cache is unsigned);
  * envctl from local archives: the same apply, no cache, from the recipes' own `tar.zst` files.

BASELINE=/path/to/envctl adds both envctl arms again with another build (the one before a change).

Writes bench/out/cache-nix.md; everything is deleted at the end.
"""
import glob
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import NIX_ENV, QUIET, build_envctl, corpus, keygen, need, read_all, sh, timed  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
WORK = os.environ.get("WORK", "/var/tmp/envctl-bench-cache-nix")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
PKGS = 60
NIX = dict(NIX_ENV, NIX_CONFIG="build-users-group =\nexperimental-features = nix-command\nsandbox = false")


def main():
    need("nix-store", "nix-bin")
    need("zstd", "zstd")
    envctl = build_envctl()
    shutil.rmtree(WORK, ignore_errors=True)
    src, repo, home = (os.path.join(WORK, d) for d in ("src", "repo", "home"))
    os.makedirs(repo)
    env = dict(os.environ, ENVCTL_SYSTEM_DRIVER="535.104.05", ENVCTL_HOME=home, ENVCTL_RECIPES=repo,
               XDG_CONFIG_HOME=os.path.join(WORK, "config"))
    env.pop("ENVCTL_CONFIG", None)
    corpus(PKGS, src, repo, WORK)
    profile = os.path.join(WORK, "big.toml")
    with open(profile, "w") as f:
        f.write("[packages]\n" + "".join(f'pkg{p:03d} = "1"\n' for p in range(PKGS)))
    sh(envctl, "apply", profile, env=env, **QUIET)
    public, secret = keygen(envctl, WORK, env)
    cache = os.path.join(WORK, "cache")
    sh(envctl, "cache", "push", cache, "big", "--key", secret, env=env, **QUIET)

    # Nix: the same trees in its store, then in a file:// binary cache.
    nix_paths = [subprocess.run(["nix-store", "--add", os.path.join(src, f"pkg{p:03d}")], check=True,
                                capture_output=True, text=True, env=NIX).stdout.strip() for p in range(PKGS)]
    nix_cache = os.path.join(WORK, "nix-cache")
    sh("nix", "copy", "--to", f"file://{nix_cache}?compression=zstd", *nix_paths, env=NIX, **QUIET)
    shutil.rmtree(src)
    archives = sorted(glob.glob(os.path.join(WORK, "pkg*.tar.zst")))
    hidden = os.path.join(WORK, "hidden")
    os.makedirs(hidden)

    def hide():
        for a in archives:
            shutil.move(a, hidden)

    def show():
        for a in archives:
            shutil.move(os.path.join(hidden, os.path.basename(a)), a)

    pulls, nixes, locals_, base_pulls, base_locals = [], [], [], [], []
    baseline = os.environ.get("BASELINE")
    try:
        for r in range(ROUNDS):
            # envctl from the directory cache (the recipes' archives out of reach).
            hide()
            node = os.path.join(WORK, f"node{r}")
            config = os.path.join(WORK, f"config{r}", "envctl")
            os.makedirs(config)
            with open(os.path.join(config, "config.toml"), "w") as f:
                f.write(f'trusted-keys = ["{public}"]\n[[caches]]\nurl = "{cache}"\n')
            read_all(cache)
            sh("sync")
            pulls.append(timed([envctl, "apply", "--frozen", profile],
                               dict(env, ENVCTL_HOME=node, XDG_CONFIG_HOME=os.path.dirname(config))))
            if baseline:
                read_all(cache)
                sh("sync")
                base_pulls.append(timed([baseline, "apply", "--frozen", profile],
                                        dict(env, ENVCTL_HOME=node + "-base", XDG_CONFIG_HOME=os.path.dirname(config))))
            # Nix from its file:// cache into an empty store.
            read_all(nix_cache)
            sh("sync")
            nixes.append(timed(["nix", "copy", "--no-check-sigs", "--from", f"file://{nix_cache}",
                                "--to", f"local?root={os.path.join(WORK, f'nix-root{r}')}", *nix_paths], NIX))
            # envctl from the recipes' own archives on local disk, no cache.
            show()
            read_all(*archives)
            sh("sync")
            locals_.append(timed([envctl, "apply", "--frozen", profile],
                                 dict(env, ENVCTL_HOME=os.path.join(WORK, f"local{r}"))))
            if baseline:
                read_all(*archives)
                sh("sync")
                base_locals.append(timed([baseline, "apply", "--frozen", profile],
                                         dict(env, ENVCTL_HOME=os.path.join(WORK, f"local{r}-base"))))
            print(f"round {r}: envctl pull {pulls[-1]:.2f} s, nix copy {nixes[-1]:.2f} s, "
                  f"envctl from archives {locals_[-1]:.2f} s", flush=True)
        med = statistics.median
        cache_size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(cache, "**"), recursive=True) if os.path.isfile(f))
        nix_size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(nix_cache, "**"), recursive=True) if os.path.isfile(f))
        nix_version = subprocess.run(["nix", "--version"], capture_output=True, text=True, env=NIX).stdout.strip()
        lines = [
            f"{PKGS} packages of 3,000 files; envctl's directory cache {cache_size / 2**20:.0f} MiB (tar.zst, signed), "
            f"Nix's file:// cache {nix_size / 2**20:.0f} MiB (NAR, zstd); {nix_version}; {ROUNDS} rounds, medians",
            "",
            "| into an empty store | time | against Nix | against envctl from local archives |",
            "| --- | ---: | ---: | ---: |",
            f"| envctl: `apply --frozen`, only the directory cache | {med(pulls):.2f} s | {med(pulls) / med(nixes):.2f}x | {med(pulls) / med(locals_):.2f}x |",
            f"| Nix: `nix copy --from file://…` of the same 60 trees | {med(nixes):.2f} s | 1.00x | |",
            f"| envctl: `apply --frozen` from the recipes' archives, no cache | {med(locals_):.2f} s | {med(locals_) / med(nixes):.2f}x | 1.00x |",
            *([f"| baseline build: pull from the directory cache | {med(base_pulls):.2f} s | {med(base_pulls) / med(nixes):.2f}x | |",
               f"| baseline build: from the recipes' archives | {med(base_locals):.2f} s | {med(base_locals) / med(nixes):.2f}x | |"]
              if baseline else []),
            "",
            "raw (s): envctl pull " + " ".join(f"{x:.2f}" for x in pulls) + "; nix " + " ".join(f"{x:.2f}" for x in nixes)
            + "; envctl local " + " ".join(f"{x:.2f}" for x in locals_)
            + ("; baseline pull " + " ".join(f"{x:.2f}" for x in base_pulls)
               + "; baseline local " + " ".join(f"{x:.2f}" for x in base_locals) if baseline else ""),
        ]
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, "cache-nix.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        subprocess.run(["nix-store", "--delete", *nix_paths], env=NIX, **QUIET)
        subprocess.run(["chmod", "-R", "u+w", WORK], **QUIET)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
