"""What the benchmark scripts share: running commands, timing them, and the synthetic corpus of
package trees (files of 100 B to 4 KiB of random bytes, so archives of them do not compress)."""
import os
import random
import subprocess
import time

QUIET = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
SHARED, OWN = 1000, 2000


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def timed(args, env=None):
    t = time.perf_counter()
    subprocess.run(args, check=True, env=env, **QUIET)
    return time.perf_counter() - t


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
