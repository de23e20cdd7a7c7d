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
envctl import pip --stacks recipes/data/frameworks/stacks.toml --out "$out"
# A framework wheel whose file nixpkgs also pins must have the hash nixpkgs pins.
python3 - "$out" recipes/data/frameworks/wheels-flat.json <<'PY'
import glob, json, re, sys
out, flat = sys.argv[1], json.load(open(sys.argv[2]))
pinned = {}
for e in flat:
    pinned.setdefault(e["filename"].replace("%2B", "+"), set()).add(e["sha256"])
checked = 0
for path in sorted(glob.glob(f"{out}/*/*.toml")):
    for name, sha in re.findall(r'filename = "([^"]+)"\nsha256 = "([0-9a-f]{64})"', open(path).read()):
        if name in pinned:
            checked += 1
            if sha not in pinned[name]:
                sys.exit(f"{path}: {name} has sha256 {sha}, nixpkgs pins {sorted(pinned[name])}")
print(f"{checked} framework wheels agree with the hashes nixpkgs pins")
PY
rm -rf recipes/bundled.new
cp -r "$out" recipes/bundled.new
rm -rf recipes/bundled
mv recipes/bundled.new recipes/bundled
git status --short recipes/bundled | head -20
