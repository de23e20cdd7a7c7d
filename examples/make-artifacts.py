#!/usr/bin/env python3
"""Writes the two-team example: small stand-in artifacts under examples/artifacts/ and their
recipes under examples/recipes/, with the real version pairings of TensorFlow 1.15 and 2.15/2.16.

The artifacts are stand-ins, a few hundred bytes each: a CUDA "toolkit" is a version file, an
`nvcc` that prints its version and an empty libcudart; a Python is a `python3` that answers
`--version` with the version it stands for and runs the next python3 on PATH (the host's) for
anything else; a TensorFlow is a package whose `__init__.py` sets
`__version__` and refuses to import unless `CUDA_HOME` holds the CUDA it was built for. Real
recipes point at real artifacts and look the same.

The archives are deterministic (fixed mtimes, owners and gzip header), so running this again
rewrites the same bytes and the same sha256 values.

    python3 examples/make-artifacts.py
"""

import gzip
import hashlib
import io
import os
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
ARTIFACTS = os.path.join(HERE, "artifacts")
RECIPES = os.path.join(HERE, "recipes")

PYTHON_STAND_IN = """#!/bin/sh
# Stand-in for CPython {version}: says that version when asked, and runs the first other python3
# on PATH (the host's) for anything else.
case "$1" in -V|--version) echo "Python {version} (stand-in)"; exit 0;; esac
here=$(cd "$(dirname "$0")" && pwd -P)
IFS=:
for d in $PATH; do
  if [ -x "$d/python3" ] && [ "$(cd "$d" 2>/dev/null && pwd -P)" != "$here" ]; then
    unset IFS
    exec "$d/python3" "$@"
  fi
done
echo "python {version} stand-in: no other python3 on PATH to run" >&2
exit 127
"""

TENSORFLOW_INIT = """import os

__version__ = "{version}"

_cuda_home = os.environ.get("CUDA_HOME", "")
try:
    with open(os.path.join(_cuda_home, "version.txt")) as _f:
        _found = _f.read()
except OSError:
    raise ImportError("tensorflow {version} needs CUDA {cuda}: CUDA_HOME (%r) has no version.txt" % _cuda_home)
if "CUDA Version {cuda}" not in _found:
    raise ImportError("tensorflow {version} needs CUDA {cuda}, found: %s" % _found.strip())
"""


def tar_gz(files):
    """files: list of (path, text, mode). Returns deterministic .tar.gz bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, text, mode in sorted(files):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            info.mtime = 1700000000
            info.uname = info.gname = "envctl"
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def publish(name, version, files, summary, deps=(), system=(), env=()):
    file_version = version.replace("+", "_")
    archive = f"{name}-{file_version}.tar.gz"
    data = tar_gz(files)
    with open(os.path.join(ARTIFACTS, archive), "wb") as f:
        f.write(data)
    lines = [
        "# Written by examples/make-artifacts.py: a stand-in for the two-team example.",
        f'name = "{name}"',
        f'version = "{version}"',
        f'summary = "{summary} (example stand-in)"',
        'license = "MIT"',
    ]
    for title, table in (("dependencies", deps), ("system", system), ("env", env)):
        if table:
            lines += ["", f"[{title}]"] + [f'{k} = "{v}"' for k, v in table]
    lines += [
        "",
        "[[source]]",
        f'url = "../../artifacts/{archive}"',
        f'sha256 = "{hashlib.sha256(data).hexdigest()}"',
    ]
    os.makedirs(os.path.join(RECIPES, name), exist_ok=True)
    with open(os.path.join(RECIPES, name, f"{file_version}.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    os.makedirs(ARTIFACTS, exist_ok=True)
    for version, short in (("3.7.17", "3.7"), ("3.11.9", "3.11")):
        publish(
            "python",
            version,
            [
                ("bin/python3", PYTHON_STAND_IN.format(version=version), 0o755),
                (f"lib/python{short}/site-packages/README.txt", "site-packages of the stand-in\n", 0o644),
            ],
            "The Python interpreter",
        )
    # CUDA: the minimum drivers are NVIDIA's (CUDA 10.0.130 needs >= 410.48; CUDA 12.x >= 525.60.13).
    for version, driver in (("10.0.130", ">=410.48"), ("12.4.131", ">=525.60.13")):
        major = version.split(".")[0]
        publish(
            "cuda",
            version,
            [
                ("version.txt", f"CUDA Version {version}\n", 0o644),
                ("bin/nvcc", f"#!/bin/sh\necho 'nvcc stand-in: release {version}'\n", 0o755),
                (f"lib64/libcudart.so.{major}", "", 0o644),
            ],
            "CUDA toolkit",
            system=[("driver", driver)],
        )
    for version, cuda, lib in (("7.6.5.32+cuda10.0", "10.0", "7"), ("8.9.7.29+cuda12", ">=12,<13", "8")):
        publish(
            "cudnn",
            version,
            [
                (f"lib64/libcudnn.so.{lib}", "", 0o644),
                ("include/cudnn_version.h", f"/* cuDNN {version} stand-in */\n", 0o644),
            ],
            "NVIDIA cuDNN",
            deps=[("cuda", cuda)],
        )
    # Real pairings: 1.15 with CUDA 10.0, cuDNN 7.6, Python <= 3.7; 2.15 and 2.16 with CUDA 12
    # and cuDNN 8.9 (2.15 built against 12.2, 2.16 against 12.3).
    for version, python, short, cuda, cudnn in (
        ("1.15.5", ">=3.5,<3.8", "3.7", "10.0", ">=7.4,<8"),
        ("2.15.1", ">=3.9,<3.12", "3.11", ">=12.2,<13", "8.9"),
        ("2.16.1", ">=3.9,<3.13", "3.11", ">=12.3,<13", "8.9"),
    ):
        cuda_prefix = "10.0" if version.startswith("1.") else "12"
        publish(
            "tensorflow",
            version,
            [
                (
                    f"lib/python{short}/site-packages/tensorflow/__init__.py",
                    TENSORFLOW_INIT.format(version=version, cuda=cuda_prefix),
                    0o644,
                )
            ],
            "An end-to-end machine learning platform",
            deps=[("python", python), ("cuda", cuda), ("cudnn", cudnn)],
            env=[("TF_CPP_MIN_LOG_LEVEL", "1")],
        )


if __name__ == "__main__":
    main()
