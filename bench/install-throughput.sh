#!/usr/bin/env bash
# Install throughput of one ~200 MB tar.zst served on loopback, against the floor of
# `zstd -d | tar -x` plus `b3sum` over the result, alternated in one run (A B C A B C …): the
# floor, envctl as configured by default (each finished tree flushed with syncfs before it is
# registered), and envctl with `[store] fsync = false` (what the floor does: no flush). Each timed
# step starts with no dirty pages (an untimed `sync`), so a flush pays only for its own data.
#
#   bench/install-throughput.sh [ROUNDS]      (default 5; needs zstd, tar, b3sum, /usr/bin/time)
#   ENVCTL_BASELINE=/path/to/older/envctl bench/install-throughput.sh   (adds it, flush on, as an arm)
#
# Writes bench/out/install-throughput.md and prints it. See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
command -v b3sum >/dev/null || { echo "b3sum missing: apt-get install b3sum" >&2; exit 1; }
command -v zstd >/dev/null || { echo "zstd missing: apt-get install zstd" >&2; exit 1; }

cargo build --release -q -p envctl -p envctl-testkit --bin envctl --bin fixture-serve
envctl=$PWD/target/release/envctl
out=$PWD/bench/out
work=$out/install-work
mkdir -p "$out"
rm -rf "$work"; mkdir -p "$work"

# A CUDA-like tree: 360 "libraries" of 1 MiB (half noise, half repetitive, so zstd compresses
# it about as well as real shared objects) and 3,000 small "headers".
if [ ! -f "$out/pkg.tar.zst" ]; then
  python3 - "$work/src" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(42)
for d in ("lib64", "include", "bin"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
text = b"".join(b"static inline int cuda_fn_%d(int x) { return x * %d; }\n" % (i, i) for i in range(20000))
for i in range(360):
    with open(os.path.join(root, "lib64", f"libcomponent{i}.so.12"), "wb") as f:
        f.write(rng.randbytes(512 * 1024))
        f.write(text[i * 1000 : i * 1000 + 512 * 1024].ljust(512 * 1024, b"\0"))
for i in range(3000):
    with open(os.path.join(root, "include", f"header{i}.h"), "wb") as f:
        f.write(text[i * 37 : i * 37 + 4096])
for i in range(20):
    p = os.path.join(root, "bin", f"tool{i}")
    with open(p, "wb") as f:
        f.write(rng.randbytes(256 * 1024))
    os.chmod(p, 0o755)
PY
  tar -C "$work/src" -cf - . | zstd -q -3 -T2 -o "$out/pkg.tar.zst"
  rm -rf "$work/src"
fi
archive=$out/pkg.tar.zst
sha=$(sha256sum "$archive" | cut -c1-64)
size=$(stat -c %s "$archive")

serve_out=$work/serve.url
"$PWD/target/release/fixture-serve" "$archive" >"$serve_out" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$serve_out" ] && break; sleep 0.1; done
url="$(cat "$serve_out")/pkg.tar.zst"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

nosync_config=$work/nosync.toml
printf '[store]\nfsync = false\n' >"$nosync_config"

floor_times=(); envctl_times=(); envctl_mem=(); nosync_times=(); baseline_times=()
baseline=${ENVCTL_BASELINE:-}
for r in $(seq "$rounds"); do
  # Floor: decompress and extract, then hash every file.
  cat "$archive" >/dev/null; sync
  dest=$work/floor-$r; mkdir -p "$dest"
  t0=$(now)
  zstd -q -d -c "$archive" | tar -x -C "$dest"
  find "$dest" -type f -print0 | xargs -0 b3sum >/dev/null
  t1=$(now)
  floor_times+=("$(echo "$t1 - $t0" | bc)")
  [ -n "${unpacked:-}" ] || unpacked=$(du -sb "$dest" | cut -f1)

  # envctl: download over loopback, verify sha256, unpack, hash the tree, register.
  cat "$archive" >/dev/null; sync
  home=$work/home-$r
  t0=$(now)
  /usr/bin/time -f %M -o "$work/mem-$r" "$envctl" --home "$home" -q store add "$url" \
    --sha256 "$sha" --name bench --version 1.0 >/dev/null
  t1=$(now)
  envctl_times+=("$(echo "$t1 - $t0" | bc)")
  envctl_mem+=("$(cat "$work/mem-$r")")

  # envctl without the flush before registration.
  cat "$archive" >/dev/null; sync
  home=$work/nosync-$r
  t0=$(now)
  "$envctl" --home "$home" --config "$nosync_config" -q store add "$url" \
    --sha256 "$sha" --name bench --version 1.0 >/dev/null
  t1=$(now)
  nosync_times+=("$(echo "$t1 - $t0" | bc)")

  if [ -n "$baseline" ]; then
    cat "$archive" >/dev/null; sync
    home=$work/baseline-$r
    t0=$(now)
    "$baseline" --home "$home" -q store add "$url" --sha256 "$sha" --name bench --version 1.0 >/dev/null
    t1=$(now)
    baseline_times+=("$(echo "$t1 - $t0" | bc)")
  fi
done

fm=$(printf '%s\n' "${floor_times[@]}" | median)
em=$(printf '%s\n' "${envctl_times[@]}" | median)
nm=$(printf '%s\n' "${nosync_times[@]}" | median)
mm=$(printf '%s\n' "${envctl_mem[@]}" | median)
mmax=$(printf '%s\n' "${envctl_mem[@]}" | sort -n | tail -1)
mib=$(echo "scale=1; $size / 1048576" | bc)
speed=$(echo "scale=2; $fm / $em" | bc)
nspeed=$(echo "scale=2; $fm / $nm" | bc)
{
  echo "archive: pkg.tar.zst, $mib MiB compressed, $(echo "scale=1; $unpacked / 1048576" | bc) MiB unpacked, 3,380 files"
  echo "rounds: $rounds, alternated (floor, envctl, envctl without fsync${baseline:+, baseline})"
  echo
  echo "| | median s | all runs s |"
  echo "| --- | ---: | --- |"
  echo "| floor: zstd -d \| tar -x, then b3sum | $fm | ${floor_times[*]} |"
  echo "| envctl store add over loopback HTTP | $em | ${envctl_times[*]} |"
  echo "| the same with [store] fsync = false | $nm | ${nosync_times[*]} |"
  if [ -n "$baseline" ]; then
    echo "| $baseline (flush on) | $(printf '%s\n' "${baseline_times[@]}" | median) | ${baseline_times[*]} |"
  fi
  echo
  echo "envctl speed relative to the floor: ${speed}x (floor median / envctl median)"
  echo "without the flush: ${nspeed}x"
  echo "envctl peak RSS (KiB, /usr/bin/time %M): median $mm, max $mmax"
} | tee "$out/install-throughput.md"

kill $server 2>/dev/null || true
rm -rf "$work"
