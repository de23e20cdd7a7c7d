#!/usr/bin/env python3
"""On a machine with NVIDIA GPUs: checks `envctl gpus --json` against `nvidia-smi`.

  python3 bench/gpus-vs-nvidia-smi.py [ENVCTL]   (default: target/release/envctl)

Not a test and not run by CI (CI's machines have no GPU). For each GPU it compares the UUID, the
model, the total memory, the compute capability, and the pids holding memory with what
`nvidia-smi --query-gpu` and `--query-compute-apps` say; memory in use and utilization move from one
instant to the next, so they are printed side by side, not compared. Exits 1 on a difference.
"""
import json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVCTL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "envctl")


def smi(query, fields):
    out = subprocess.run(["nvidia-smi", f"--query-{query}={','.join(fields)}", "--format=csv,noheader,nounits"],
                         check=True, capture_output=True, text=True).stdout
    return [dict(zip(fields, (c.strip() for c in line.split(",")))) for line in out.splitlines() if line.strip()]


def main():
    ours = json.loads(subprocess.run([ENVCTL, "gpus", "--json"], check=True, capture_output=True, text=True).stdout)
    gpus = smi("gpu", ["index", "uuid", "name", "memory.total", "memory.used", "utilization.gpu", "compute_cap"])
    apps = smi("compute-apps", ["gpu_uuid", "pid", "used_memory"])
    problems = []
    if len(ours["gpus"]) != len(gpus):
        problems.append(f"{len(ours['gpus'])} GPUs against nvidia-smi's {len(gpus)}")
    for g, s in zip(ours["gpus"], gpus):
        cc = ".".join(map(str, g.get("compute_capability") or []))
        for what, a, b in [("uuid", g["uuid"], s["uuid"]), ("name", g["name"], s["name"]),
                           ("MiB total", g["memory_total"] >> 20, int(s["memory.total"])),
                           ("compute capability", cc, s["compute_cap"])]:
            if str(a) != str(b):
                problems.append(f"GPU {s['index']}: {what} {a} against nvidia-smi's {b}")
        pids = sorted(p["pid"] for p in g["holders"])
        smi_pids = sorted(int(a["pid"]) for a in apps if a["gpu_uuid"] == s["uuid"])
        if pids != smi_pids:
            problems.append(f"GPU {s['index']}: pids {pids} against nvidia-smi's {smi_pids}")
        print(f"GPU {s['index']} {s['uuid']}: used {g['memory_used'] >> 20} / {s['memory.used']} MiB, "
              f"utilization {g['utilization']} / {s['utilization.gpu']} % (envctl / nvidia-smi)")
    for p in problems:
        print("difference:", p)
    print("agree" if not problems else f"{len(problems)} difference(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
