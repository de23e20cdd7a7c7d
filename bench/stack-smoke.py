#!/usr/bin/env python3
"""Does a bundled stack run, not only lock? Applies it and tries every piece of it.

  STACK=torch-2.8 python3 bench/stack-smoke.py [CACHE]   (default /var/tmp/envctl-bench-torch28)

Not a test and not run by CI: it needs the stack's real wheels, which `bench/framework-stack.py`
leaves in CACHE/wheels with the profile (CACHE/<profile>.toml) and the recipes beside them; run
that first with the same STACK and CACHE. Then, into an empty home:

1. `envctl apply` of the profile from that wheelhouse;
2. in a session, `import M` for every top-level module of every distribution (each
   `*.dist-info/top_level.txt`, else the RECORD's top-level names), one process per module;
3. every console script with `--help` (then `--version` if that fails), 120 s at most.

Prints what fails with the last line it printed, and writes bench/out/stack-smoke-<STACK>.md.
"""
import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STACK = os.environ.get("STACK", "torch-2.8")
CACHE = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/envctl-bench-torch28"
PROFILE = STACK.replace(".", "").replace("-", "")
MACHINE = {"ENVCTL_SYSTEM_DRIVER": "535.104.05"}


def last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:200] if lines else ""


def main():
    envctl = os.path.join(ROOT, "target", "release", "envctl")
    profile = os.path.join(CACHE, f"{PROFILE}.toml")
    wheels, recipes = os.path.join(CACHE, "wheels"), os.path.join(CACHE, "recipes")
    if not os.path.exists(profile):
        sys.exit(f"{profile} is missing: run STACK={STACK} bench/framework-stack.py 1 {CACHE} first")
    home = os.path.join(CACHE, "smoke")
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    config = os.path.join(home, "config.toml")
    with open(config, "w") as f:
        f.write(f'recipes = ["{recipes}"]\n[indexes]\npypi = ["{wheels}"]\n')
    env = dict(os.environ, ENVCTL_HOME=home, ENVCTL_CONFIG=config, **MACHINE)
    subprocess.run([envctl, "apply", profile], env=env, check=True, capture_output=True)
    site = glob.glob(os.path.join(home, "profiles", PROFILE, "lib", "python3.*", "site-packages"))[0]

    modules, scripts = {}, {}
    for info in sorted(glob.glob(os.path.join(site, "*.dist-info"))):
        dist = os.path.basename(info)[: -len(".dist-info")].rsplit("-", 1)[0]
        top = os.path.join(info, "top_level.txt")
        if os.path.exists(top):
            # Some list a package path (`nvidia/cusparselt`): its module name is dotted.
            names = [l.strip().replace("/", ".") for l in open(top) if l.strip()]
        else:
            names = set()
            for line in open(os.path.join(info, "RECORD")):
                first = line.split(",")[0].split("/")[0]
                if first.endswith(".py"):
                    names.add(first[:-3])
                elif "." not in first and not first.endswith(".dist-info"):
                    names.add(first)
            names = sorted(names)
        # Only importable names: a RECORD also lists directories of stubs (`wrapt-stubs/`).
        modules[dist] = [n for n in names if n and all(p.isidentifier() for p in n.split("."))
                         and (not n.startswith("_") or n == "_cffi_backend")]
        ep = os.path.join(info, "entry_points.txt")
        if os.path.exists(ep):
            section = None
            for line in open(ep):
                line = line.strip()
                if line.startswith("["):
                    section = line.strip("[]")
                elif section == "console_scripts" and "=" in line:
                    scripts.setdefault(dist, []).append(line.split("=")[0].strip())

    failures, tried = [], 0
    for dist, names in modules.items():
        for m in names:
            tried += 1
            r = subprocess.run([envctl, "run", PROFILE, "--", "python3", "-c", f"import {m}"], env=env,
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                failures.append((dist, f"import {m}", last_line(r.stderr)))
    for dist, names in scripts.items():
        for s in names:
            tried += 1
            ok, said = False, ""
            for flag in ("--help", "--version"):
                try:
                    r = subprocess.run([envctl, "run", PROFILE, "--", s, flag], env=env, capture_output=True,
                                       text=True, timeout=120)
                except subprocess.TimeoutExpired:
                    said = f"{flag}: no answer in 120 s"
                    continue
                if r.returncode == 0:
                    ok = True
                    break
                said = last_line(r.stderr or r.stdout)
            if not ok:
                failures.append((dist, f"{s} --help/--version", said))

    lines = [f"`{STACK}`: {len(modules)} distributions, {tried} modules and console scripts tried, "
             f"{len(failures)} failed.", ""]
    if failures:
        lines += ["| distribution | what | last line |", "| --- | --- | --- |"]
        lines += [f"| {d} | `{w}` | {said.replace('|', '/')} |" for d, w, said in failures]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", f"stack-smoke-{STACK}.md"), "w") as f:
        f.write(text)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
