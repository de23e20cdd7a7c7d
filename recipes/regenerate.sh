#!/usr/bin/env bash
# Regenerates the bundled recipe repository (recipes/bundled/) from the publishers' metadata kept
# in recipes/data/ (copied from ../shared/data; each file's origin is in recipes/data/README.md).
# Deterministic: running it twice changes nothing, and a test checks that the committed recipes
# are exactly what the importers write.
set -euo pipefail
cd "$(dirname "$0")/.."
envctl() { cargo run -q --release -- "$@"; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
envctl import nvidia-redist recipes/data/nvidia-redist/cuda/*.json recipes/data/nvidia-redist/cudnn/*.json --out "$out"
envctl import python-build-standalone recipes/data/python-build-standalone/*.json --out "$out"
# The conda packages with a published sha256: conda-forge's cudatoolkit 11.8.0 and cuDNN 8.9.7.29.
# CUDA 10.0 / cuDNN 7.6 have none to bundle: a site imports them from its own channel mirror.
envctl import conda recipes/data/conda/conda-cuda-packages.json cudatoolkit=11.8.0 cudnn=8.9.7.29 \
  --mirror conda-forge --out "$out"
# The framework stacks: pip resolves each request of stacks.toml for each of its Pythons through
# the user's own pip configuration (wheels only), and one recipe is written per distribution.
# TensorFlow 1.15's stack holds a source distribution (gast 0.2.2), which pip resolves only when
# it runs on the target interpreter: a CPython 3.7 (PY37, else python3.7, else pyenv's newest 3.7)
# with pip 24.0, the last for 3.7, in a virtual environment, reached as `python3.7` on PATH. Other
# stacks keep the user's own `python3 -m pip`. envctl looks into the sdist in a store of its own.
py37=${PY37:-}
if [ -z "$py37" ] && python3.7 --version >/dev/null 2>&1; then
  py37=python3.7
elif [ -z "$py37" ] && command -v pyenv >/dev/null; then
  py37="$(pyenv prefix "$(pyenv versions --bare | grep '^3\.7\.' | tail -1)")/bin/python3.7"
fi
"${py37:?no CPython 3.7 found: set PY37 to one}" -m venv "$out.py37"
trap 'rm -rf "$out" "$out.py37"' EXIT
"$out.py37/bin/python" -m pip install --quiet "pip>=22.2,<24.1"
mkdir "$out.py37/only"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$out.py37/bin/python3.7" > "$out.py37/only/python3.7"
chmod +x "$out.py37/only/python3.7"
PATH="$out.py37/only:$PATH" ENVCTL_HOME="$out.py37/home" \
  envctl import pip --stacks recipes/data/frameworks/stacks.toml --out "$out"
# A framework wheel whose file nixpkgs (or, for TensorFlow 1.15, other public pins) also pins must
# have the hash pinned there.
python3 - "$out" recipes/data/frameworks/wheels-flat.json recipes/data/frameworks/tensorflow-1.15-supplementary-hashes.json <<'PY'
import glob, json, re, sys
out, flat, tf1 = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))["wheels"]
pinned = {}
for e in flat + tf1:
    pinned.setdefault(e["filename"].replace("%2B", "+"), set()).add(e["sha256"])
checked = 0
for path in sorted(glob.glob(f"{out}/*/*.toml")):
    for name, sha in re.findall(r'filename = "([^"]+)"\nsha256 = "([0-9a-f]{64})"', open(path).read()):
        if name in pinned:
            checked += 1
            if sha not in pinned[name]:
                sys.exit(f"{path}: {name} has sha256 {sha}, pinned elsewhere as {sorted(pinned[name])}")
print(f"{checked} framework wheels agree with the hashes pinned elsewhere")
PY
rm -rf recipes/bundled.new
cp -r "$out" recipes/bundled.new
rm -rf recipes/bundled
mv recipes/bundled.new recipes/bundled
git status --short recipes/bundled | head -20
