#!/usr/bin/env python3
"""Keeps the compiler's resource report clean: compiles every cuda/*.cu the
way the build does (sm_80 and sm_90; *_sm90a.cu for sm_90a) with ptxas -v,
tables each kernel's registers, stack and spills, and fails when a kernel
spills more than cuda/spill-budget.txt allows it (nothing, unless listed
there with the measurement that justifies it) or when a budget line names a
kernel that no longer exists, or when ptxas notes that it serialised a
kernel's wgmma instructions or injected waits around them (its C75xx notes:
the Hopper attention kernel would still be right, only slow). Needs nvcc only, not a
GPU; ctest runs it as cuda_resources.

usage: check-cuda-resources.py [--nvcc NVCC] [--budget FILE] [--out FILE.md] [--jobs N]
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ["sm_80", "sm_90"]
ARCHS_SM90A = ["sm_90a"]

ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
REGS = re.compile(r"Used (\d+) registers")
SERIAL = re.compile(r"(\(C75\d\d\) .*)")  # wgmma serialised, or waits injected around it


def compile_report(nvcc, src, arch, tmp):
    """ptxas -v output of one source for one architecture."""
    out = os.path.join(tmp, "%s.%s.cubin" % (os.path.basename(src), arch))
    cmd = [nvcc, "-cubin", "-arch=" + arch, "-O3", "-std=c++17", "--expt-relaxed-constexpr",
           "-I" + os.path.join(ROOT, "include"), "-I" + os.path.join(ROOT, "cuda"),
           "-Xptxas", "-v", src, "-o", out]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed (exit %d):\n%s" % (" ".join(cmd), r.returncode, r.stdout[-4000:]))
    return r.stdout


def parse(text, src):
    """[(arch, mangled, regs, stack, spill_st, spill_ld)] from ptxas -v output."""
    rows, cur = [], None
    for line in text.splitlines():
        m = ENTRY.search(line)
        if m:
            cur = {"name": m.group(1), "arch": m.group(2)}
            continue
        if cur is None:
            continue
        m = SPILL.search(line)
        if m:
            cur["stack"], cur["st"], cur["ld"] = (int(g) for g in m.groups())
            continue
        m = REGS.search(line)
        if m:
            if "st" not in cur:
                raise RuntimeError("%s: ptxas reported registers of %s before its spills" % (src, cur["name"]))
            rows.append((cur["arch"], cur["name"], int(m.group(1)), cur["stack"], cur["st"], cur["ld"]))
            cur = None
    return rows


def demangle(names):
    if not shutil.which("c++filt") or not names:
        return {n: n for n in names}
    r = subprocess.run(["c++filt"], input="\n".join(names), stdout=subprocess.PIPE, text=True, check=True)
    return dict(zip(names, r.stdout.splitlines()))


def load_budget(path):
    """{(arch, kernel): (stores, loads, line)}; lines 'ARCH STORES LOADS KERNEL'."""
    budget = {}
    with open(path) as f:
        for no, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 3)
            if len(parts) != 4 or not parts[1].isdigit() or not parts[2].isdigit():
                raise SystemExit("%s:%d: expected 'ARCH STORES LOADS KERNEL', got %r" % (path, no, line))
            key = (parts[0], parts[3])
            if key in budget:
                raise SystemExit("%s:%d: %s for %s listed twice" % (path, no, parts[3], parts[0]))
            budget[key] = (int(parts[1]), int(parts[2]), no)
    return budget


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nvcc", default=os.environ.get("NVCC", "nvcc"))
    ap.add_argument("--budget", default=os.path.join(ROOT, "cuda", "spill-budget.txt"))
    ap.add_argument("--out", help="write the table as markdown here")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if not shutil.which(args.nvcc):
        raise SystemExit("check-cuda-resources: nvcc not found (%s)" % args.nvcc)
    budget = load_budget(args.budget)

    cuda = os.path.join(ROOT, "cuda")
    jobs = []
    for f in sorted(os.listdir(cuda)):
        if f.endswith(".cu"):
            for arch in ARCHS_SM90A if f.endswith("_sm90a.cu") else ARCHS:
                jobs.append((os.path.join(cuda, f), arch))
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(args.jobs) as ex:
        futs = [(src, arch, ex.submit(compile_report, args.nvcc, src, arch, tmp)) for src, arch in jobs]
        for src, arch, fut in futs:
            text = fut.result()
            rows += [(os.path.basename(src),) + r for r in parse(text, src)]
            failures += ["%s %s: ptxas: %s" % (os.path.basename(src), arch, m.group(1).strip())
                         for m in SERIAL.finditer(text)]
    if not rows:
        raise SystemExit("check-cuda-resources: ptxas reported no kernels")
    names = demangle(sorted({r[2] for r in rows}))

    used, lines = set(), []
    lines.append("| file | arch | kernel | registers | stack B | spill stores B | spill loads B | budget |")
    lines.append("|---|---|---|---:|---:|---:|---:|---|")
    for f, arch, mangled, regs, stack, st, ld in sorted(rows, key=lambda r: (r[0], names[r[2]], r[1])):
        kernel = names[mangled]
        b_st, b_ld, no = budget.get((arch, kernel), (0, 0, None))
        if no is not None:
            used.add((arch, kernel))
        if st > b_st or ld > b_ld:
            failures.append("%s %s: spills %d B stored / %d B loaded, budget %d / %d (%s)" %
                            (arch, kernel, st, ld, b_st, b_ld,
                             "%s:%d" % (args.budget, no) if no else "not in " + args.budget))
        lines.append("| %s | %s | `%s` | %d | %d | %d | %d | %s |" %
                     (f, arch, kernel, regs, stack, st, ld, "%d / %d" % (b_st, b_ld) if no else "0"))
    for key, (_, _, no) in sorted(budget.items(), key=lambda kv: kv[1][2]):
        if key not in used:
            failures.append("%s:%d: no kernel %s for %s (stale budget line)" % (args.budget, no, key[1], key[0]))

    table = "\n".join(lines) + "\n"
    spilling = sum(1 for r in rows if r[5] or r[6])
    summary = "%d kernel builds, %d spill (all within %s)" % (len(rows), spilling, os.path.relpath(args.budget))
    if args.out:
        with open(args.out, "w") as f:
            f.write("# CUDA resource report (ptxas -v, %s)\n\n%s\n\n%s" % (", ".join(ARCHS + ARCHS_SM90A), summary, table))
    if failures:
        sys.stdout.write(table)
        for msg in failures:
            print("check-cuda-resources: " + msg, file=sys.stderr)
        return 1
    print("check-cuda-resources: " + summary)
    for arch, kernel in sorted(used):
        row = next(r for r in rows if r[1] == arch and names[r[2]] == kernel)
        print("  budgeted: %s %s  %d / %d B" % (arch, kernel, row[5], row[6]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
