#!/usr/bin/env python3
"""Binary cache push and pull against a loopback S3-compatible server (issue: beyond one machine).

  python3 bench/cache-s3.py [ROUNDS]       (default 3; not CI)
  FSYNC=0 python3 bench/cache-s3.py        (the pulling home runs with `[store] fsync = false`)
  BASELINE=/path/to/envctl python3 bench/cache-s3.py   (adds its push and pull, to other keys)

Needs curl, tar, zstd and moto's server (installed with pip into the testkit's virtual
environment under the temporary directory when absent, as the tests do). Builds envctl --release.

The closure: 60 packages of 3,000 files each (files of 100 B to 4 KiB of random bytes, so the
archives barely compress), about 360 MiB. Per round, alternating with the floor:

  * push: `envctl cache push s3://bench/rN…` of the profile (archive, sign, upload on 4 threads)
    against `curl -T` of the same archives to the same server, 4 at a time;
  * pull: `envctl apply --frozen` of the profile on a fresh home whose only source is the cache
    (objects, archives, every check, unpack, register, build the generation) against `curl` of
    the same objects to /dev/null, 4 at a time;
  * the ceiling on pull: `tar --zstd -x` of the same archives from local disk, two at a time (both
    cores), with nothing else (no download, no hashing, no flush, no registration): a pull can be
    no faster than writing the files it brings.

Writes bench/out/cache-s3.md; everything is deleted at the end.
"""
import glob, os, shutil, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import MOTO, QUIET, S3_CREDENTIALS, build_envctl, corpus, keygen, moto_server, sh, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
WORK = os.path.join(OUT, "cache-s3-work")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
PKGS = 60


def parallel_curl(args_per_file, files):
    # 4 at a time, as envctl's jobs = 4.
    t = time.perf_counter()
    procs = []
    for f in files:
        procs.append(subprocess.Popen(["curl", "-sf"] + args_per_file(f), **QUIET))
        if len(procs) == 4:
            for p in procs:
                assert p.wait() == 0
            procs = []
    for p in procs:
        assert p.wait() == 0
    return time.perf_counter() - t


def main():
    envctl = build_envctl()
    shutil.rmtree(WORK, ignore_errors=True)
    src, repo, home = (os.path.join(WORK, d) for d in ("src", "repo", "home"))
    os.makedirs(repo)
    base_env = dict(os.environ, ENVCTL_SYSTEM_DRIVER="535.104.05", XDG_CONFIG_HOME=os.path.join(WORK, "config"),
                    **S3_CREDENTIALS)
    base_env.pop("ENVCTL_CONFIG", None)
    env = dict(base_env, ENVCTL_HOME=home, ENVCTL_RECIPES=repo)
    corpus(PKGS, src, repo, WORK)
    shutil.rmtree(src)
    profile = os.path.join(WORK, "big.toml")
    with open(profile, "w") as f:
        f.write("[packages]\n" + "".join(f'pkg{p:03d} = "1"\n' for p in range(PKGS)))
    sh(envctl, "apply", profile, env=env, **QUIET)
    public, secret = keygen(envctl, WORK, env)
    # The recipes' own sources disappear: a pull can only come from the cache.
    hidden = os.path.join(WORK, "upstream-hidden")
    os.makedirs(hidden)
    for a in glob.glob(os.path.join(WORK, "pkg*.tar.zst")):
        shutil.move(a, hidden)
    proc, endpoint = moto_server()
    try:
        push_t, up_t, pull_t, down_t, local_t, untar_t = [], [], [], [], [], []
        base_push_t, base_pull_t = [], []
        baseline = os.environ.get("BASELINE")
        size = pushed = 0
        for r in range(ROUNDS):
            url = f"s3://bench/r{r}?endpoint={endpoint}&region=us-east-1"
            push_t.append(timed([envctl, "cache", "push", url, "big", "--key", secret], env))
            # The floor uploads the recipes' own archives (tar.zst of the same trees, as large
            # within a few percent: random bytes do not compress), readable without signing.
            listing = subprocess.run(["curl", "-sf", f"{endpoint}/bench?list-type=2&prefix=r{r}/"],
                                     check=True, capture_output=True, text=True).stdout
            pushed = sum(int(x.split("</Size>")[0]) for x in listing.split("<Size>")[1:])
            upstream = sorted(glob.glob(os.path.join(hidden, "*.tar.zst")))
            size = sum(os.path.getsize(f) for f in upstream)
            up_t.append(parallel_curl(lambda f: ["-H", "x-amz-acl: public-read", "-T", f,
                                                 f"{endpoint}/bench/raw{r}/{os.path.basename(f)}"], upstream))

            # Pull: a fresh home with only the cache.
            node = os.path.join(WORK, f"node{r}")
            config = os.path.join(WORK, f"config{r}", "envctl")
            os.makedirs(config)
            with open(os.path.join(config, "config.toml"), "w") as f:
                f.write(f'trusted-keys = ["{public}"]\n[[caches]]\nurl = "{url}"\n')
                if os.environ.get("FSYNC") == "0":
                    f.write("[store]\nfsync = false\n")
            node_env = dict(env, ENVCTL_HOME=node, XDG_CONFIG_HOME=os.path.dirname(config))
            pull_t.append(timed([envctl, "apply", "--frozen", profile], node_env))
            if baseline:
                # The same push and pull by another build, to keys of its own.
                base_url = f"s3://bench/b{r}?endpoint={endpoint}&region=us-east-1"
                base_push_t.append(timed([baseline, "cache", "push", base_url, "big", "--key", secret], env))
                base_config = os.path.join(WORK, f"base-config{r}", "envctl")
                os.makedirs(base_config)
                with open(os.path.join(base_config, "config.toml"), "w") as f:
                    f.write(f'trusted-keys = ["{public}"]\n[[caches]]\nurl = "{base_url}"\n')
                base_pull_t.append(timed([baseline, "apply", "--frozen", profile],
                                         dict(env, ENVCTL_HOME=node + "-base", XDG_CONFIG_HOME=os.path.dirname(base_config))))
            # The same apply from the recipes' own archives on local disk, no cache: what
            # unpacking, hashing and registering 180,000 files and building the generation cost.
            for a in upstream:
                shutil.move(a, WORK)
            local = dict(env, ENVCTL_HOME=os.path.join(WORK, f"local{r}"))
            local_t.append(timed([envctl, "apply", "--frozen", profile], local))
            for a in glob.glob(os.path.join(WORK, "pkg*.tar.zst")):
                shutil.move(a, hidden)
            down_t.append(parallel_curl(lambda f: ["-o", "/dev/null", f"{endpoint}/bench/raw{r}/{os.path.basename(f)}"],
                                        upstream))
            untar = os.path.join(WORK, f"untar{r}")
            sh("sync")
            t = time.perf_counter()
            for pair in range(0, len(upstream), 2):
                procs = []
                for a in upstream[pair:pair + 2]:
                    dest = os.path.join(untar, os.path.basename(a))
                    os.makedirs(dest)
                    procs.append(subprocess.Popen(["tar", "--zstd", "-xf", a, "-C", dest], **QUIET))
                for p in procs:
                    assert p.wait() == 0
            untar_t.append(time.perf_counter() - t)
        med = statistics.median
        lines = [
            f"closure: {PKGS} packages; envctl pushed {pushed / 2**20:.0f} MiB of objects, the floor moves the "
            f"recipes' archives, {size / 2**20:.0f} MiB; {ROUNDS} rounds, medians; loopback moto {MOTO.split('==')[1]}",
            "",
            "| measurement | envctl | floor (curl, 4 at a time) | speed vs floor |",
            "| --- | ---: | ---: | ---: |",
            f"| push (`cache push s3://…`) | {med(push_t):.2f} s | upload: {med(up_t):.2f} s | {med(up_t) / med(push_t):.2f}x |",
            f"| pull (`apply --frozen` on an empty home) | {med(pull_t):.2f} s | download: {med(down_t):.2f} s | {med(down_t) / med(pull_t):.2f}x |",
            f"| the same apply from the archives on local disk, no cache | {med(local_t):.2f} s | | pull / local: {med(pull_t) / med(local_t):.2f}x |",
            f"| ceiling: `tar --zstd -x` of the archives alone, 2 at a time | {med(untar_t):.2f} s | download: {med(down_t):.2f} s | {med(down_t) / med(untar_t):.2f}x |",
            *([f"| baseline build: push | {med(base_push_t):.2f} s | | |",
               f"| baseline build: pull | {med(base_pull_t):.2f} s | | |"] if baseline else []),
            "",
            "raw (s): push " + " ".join(f"{x:.2f}" for x in push_t) + "; upload " + " ".join(f"{x:.2f}" for x in up_t)
            + "; pull " + " ".join(f"{x:.2f}" for x in pull_t) + "; download " + " ".join(f"{x:.2f}" for x in down_t)
            + "; local " + " ".join(f"{x:.2f}" for x in local_t) + "; tar -x " + " ".join(f"{x:.2f}" for x in untar_t)
            + ("; baseline push " + " ".join(f"{x:.2f}" for x in base_push_t) + "; baseline pull "
               + " ".join(f"{x:.2f}" for x in base_pull_t) if baseline else ""),
        ]
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, "cache-s3.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))
    finally:
        proc.kill()
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
