"""What the benchmark scripts share: running commands, timing them, and the synthetic corpus of
package trees (files of 100 B to 4 KiB of random bytes, so archives of them do not compress)."""
import hashlib
import io
import os
import random
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

QUIET = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED, OWN = 1000, 2000


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def read_all(*paths):
    """Reads every file under `paths` (files or directories) once, untimed: the host trims the
    page cache, so each arm reads its inputs right before it runs and measures the program, not
    the disk."""
    for p in paths:
        if os.path.isfile(p):
            files = [p]
        else:
            files = [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs]
        for f in files:
            if os.path.isfile(f) and not os.path.islink(f):
                with open(f, "rb") as fh:
                    while fh.read(1 << 20):
                        pass


def timed(args, env=None):
    """Runs `args` with its output discarded and returns how long it took; a failure stops the
    benchmark with the command's error output."""
    t = time.perf_counter()
    r = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(args)}\n{r.stderr.decode(errors='replace')}")
    return dt


def make_tree(path, p):
    """Package `p`'s tree at `path`: 1,000 files in `lib/`, 2,000 in `share/pkgNNN/dD/`."""
    rng = random.Random(p)
    os.makedirs(os.path.join(path, "lib"))
    for i in range(SHARED):
        with open(os.path.join(path, "lib", f"libpkg{p:03d}_{i}.so"), "wb") as f:
            f.write(rng.randbytes(rng.randint(100, 4096)))
    for d in range(20):
        own = os.path.join(path, "share", f"pkg{p:03d}", f"d{d}")
        os.makedirs(own)
        for i in range(OWN // 20):
            with open(os.path.join(own, f"f{i}"), "wb") as f:
                f.write(rng.randbytes(rng.randint(100, 4096)))


def pack_python(series, cache):
    """This machine's CPython `series` as a package archive in `cache`, without site-packages:
    (version, archive path, its sha256, the interpreter it was packed from)."""
    exe = shutil.which(f"python{series}") or shutil.which("python3")
    out = subprocess.run([exe, "-c", "import sys, platform; print(sys.base_prefix); print(platform.python_version())"],
                         check=True, stdout=subprocess.PIPE).stdout.decode().split()
    prefix, version = out[0], out[1]
    if not version.startswith(series + "."):
        raise SystemExit(f"no CPython {series} here (python{series} is {version})")
    archive = os.path.join(cache, f"python-{version}.tar.zst")
    if not os.path.exists(archive):
        os.makedirs(cache, exist_ok=True)
        skip = {"site-packages", "test", "tests", "idlelib", "tkinter", "turtledemo"}
        raw = archive[: -len(".zst")]
        with tarfile.open(raw, "w", format=tarfile.GNU_FORMAT) as tar:
            tar.add(os.path.join(prefix, "bin", f"python{series}"), f"bin/python{series}")
            link = tarfile.TarInfo("bin/python3")
            link.type, link.linkname = tarfile.SYMTYPE, f"python{series}"
            tar.addfile(link)
            for n in sorted(os.listdir(os.path.join(prefix, "lib"))):
                if n.startswith("libpython") and not n.endswith(".a"):
                    tar.add(os.path.join(prefix, "lib", n), f"lib/{n}")
            tar.add(os.path.join(prefix, "lib", f"python{series}"), f"lib/python{series}",
                    filter=lambda ti: None if os.path.basename(ti.name) in skip or "/config-" in ti.name else ti)
        sh("zstd", "-q", "-f", "-T0", "--rm", raw, "-o", archive)
    sha = hashlib.sha256(open(archive, "rb").read()).hexdigest()
    return version, archive, sha, os.path.join(prefix, "bin", f"python{series}")


def need(program, package):
    """Installs Debian's `package` when `program` is not on PATH."""
    if shutil.which(program) is None:
        sh("apt-get", "install", "-y", "-q", package, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), **QUIET)


# Nix 2.8 from Debian, run as root without build users or experimental features.
NIX_ENV = dict(os.environ, NIX_CONFIG="build-users-group =\nexperimental-features =")



def one_file_package(repo, archives, name):
    """The package `name` 1.0, one script `bin/NAME`: its archive in `archives`, its recipe in
    `repo` (for benchmarks where only the number of packages counts)."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        body = f"#!/bin/sh\necho {name}\n".encode()
        info = tarfile.TarInfo(f"bin/{name}")
        info.size, info.mode = len(body), 0o755
        tar.addfile(info, io.BytesIO(body))
    archive = os.path.join(archives, f"{name}.tar.gz")
    with open(archive, "wb") as f:
        f.write(data.getvalue())
    sha = hashlib.sha256(data.getvalue()).hexdigest()
    with open(os.path.join(repo, f"{name}.toml"), "w") as f:
        f.write(f'name = "{name}"\nversion = "1.0"\n[[source]]\nurl = "file://{archive}"\nsha256 = "{sha}"\n')


def fresh_work(work):
    """An empty `work` with `src/`, `repo/` (made) and `home/` (not yet), and the environment
    that points envctl at them: its home, the recipes, a fixed driver, no user configuration.
    Returns (src, repo, home, env)."""
    shutil.rmtree(work, ignore_errors=True)
    src, repo, home = (os.path.join(work, d) for d in ("src", "repo", "home"))
    os.makedirs(repo)
    env = dict(os.environ, ENVCTL_HOME=home, ENVCTL_RECIPES=repo, ENVCTL_SYSTEM_DRIVER="535.104.05",
               XDG_CONFIG_HOME=os.path.join(work, "config"))
    env.pop("ENVCTL_CONFIG", None)
    return src, repo, home, env


def build_envctl():
    """Builds the release binary and returns its path."""
    sh("cargo", "build", "--release", "-q", "-p", "envctl", cwd=ROOT)
    return os.path.join(ROOT, "target", "release", "envctl")


def corpus(count, src, repo, out):
    """The synthetic corpus as packages: for each of `count`, its tree under `src` (`make_tree`),
    a `tar.zst` of it in `out` and a recipe `pkgNNN 1.0` naming that file in `repo`. Returns the
    archives' paths."""
    archives = []
    for p in range(count):
        tree = os.path.join(src, f"pkg{p:03d}")
        make_tree(tree, p)
        archive = os.path.join(out, f"pkg{p:03d}.tar.zst")
        sh("tar", "-C", tree, "--zstd", "-cf", archive, ".")
        archives.append(archive)
        sha = hashlib.sha256(open(archive, "rb").read()).hexdigest()
        with open(os.path.join(repo, f"pkg{p:03d}.toml"), "w") as f:
            f.write(f'name = "pkg{p:03d}"\nversion = "1.0"\n[[source]]\nurl = "file://{archive}"\nsha256 = "{sha}"\n')
    return archives


def keygen(envctl, work, env):
    """A signing key pair `bench` made by `envctl cache keygen` in `work/keys`: (the public key
    as configuration names it, the secret key's file)."""
    keys = os.path.join(work, "keys")
    public = subprocess.run([envctl, "cache", "keygen", "bench", "--out", keys], check=True, env=env,
                            capture_output=True, text=True).stdout.strip()
    return public, os.path.join(keys, "bench.secret")


# What a loopback moto server accepts (it checks the signature's form, not the keys).
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}

MOTO = "moto[server]==5.2.5"


def moto_server():
    """A loopback S3-compatible server (moto, installed with pip into the testkit's virtual
    environment under the temporary directory when absent, as the tests do) with the bucket
    `bench`; returns (its process, its endpoint URL)."""
    venv = os.path.join(tempfile.gettempdir(), "envctl-testkit-moto")
    binary = os.path.join(venv, "bin", "moto_server")
    if not os.path.exists(binary):
        sh(sys.executable, "-m", "venv", venv)
        sh(os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", MOTO)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], **QUIET)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if subprocess.run(["curl", "-sf", "-X", "PUT", f"{endpoint}/bench"], **QUIET).returncode == 0:
            return proc, endpoint
        time.sleep(0.1)
    raise SystemExit("moto_server did not start")
