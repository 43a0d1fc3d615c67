#!/usr/bin/env python3
"""Where a proxy's CPU time goes, per unit of work, from a `perf record -g`.

Reads `perf script` output of one recording (coexist-bench --perf writes
them) and prints, for the proxy's process name:

  - time per unit by system call (the outermost __x64_sys_* frame, inclusive:
    the kernel's loopback delivery to the peer runs inside the sender's call),
    by "user" (no kernel frame) and "kernel, outside a system call", and
    the kernel's total;
  - the top symbols by self time (user and kernel);
  - optionally the callees one level below each of the heaviest system calls.

A unit is a connection (connection-rate runs) or a round trip (echo runs);
give their number with --units, or get per-sample percentages without it.

Usage: perf_breakdown.py PERF.DATA --comm coexist [--units N] [--top 25] [--callees]
                         [--inside SYSCALL]...
"""
import argparse
import collections
import re
import subprocess
import sys

# The entry of a system call: __x64_sys_NAME, or where the kernel inlined
# that wrapper (nginx's sendmsg and recvmsg on 6.x), __sys_NAME.
SYSCALL = re.compile(r"^__(?:(?:x64|ia32)_)?sys_(\w+)$")
FRAME = re.compile(r"^\s*[0-9a-f]+\s+(\S+?)(?:\+0x[0-9a-f]+)?\s+\((.*)\)\s*$")
HEADER = re.compile(r"^(\S.*?)\s+(\d+)\s+\[(\d+)\]\s+[\d.]+:\s+(\d+)\s+\S+")


def samples(path):
    """Yields (comm, period_ns, frames leaf-first as (symbol, dso))."""
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,pid,cpu,time,period,event,ip,sym,dso"],
        check=True, capture_output=True, text=True,
    ).stdout
    comm, period, frames = None, 0, []
    for line in out.splitlines() + [""]:
        if not line.strip():
            if comm is not None:
                yield comm, period, frames
            comm, frames = None, []
            continue
        m = HEADER.match(line)
        if m and comm is None:
            comm, period = m.group(1).strip(), int(m.group(4))
            continue
        f = FRAME.match(line)
        if f:
            frames.append((f.group(1), f.group(2)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--comm", required=True, help="process name of the proxy")
    ap.add_argument("--units", type=float, help="connections or round trips in the recording")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--callees", action="store_true")
    ap.add_argument("--inside", action="append", default=[], metavar="SYSCALL",
                    help="also list the heaviest functions (inclusive) within this system call")
    a = ap.parse_args()

    by_comm = collections.Counter()
    categories = collections.Counter()
    self_time = collections.Counter()
    callees = collections.defaultdict(collections.Counter)
    inside = collections.defaultdict(collections.Counter)
    total = 0
    for comm, period, frames in samples(a.data):
        by_comm[comm] += period
        if comm != a.comm:
            continue
        total += period
        kernel = [f for f in frames if f[1] == "[kernel.kallsyms]"]
        # Outermost system call frame: the last one, leaf-first.
        calls = [(i, SYSCALL.match(s).group(1)) for i, (s, _) in enumerate(frames) if SYSCALL.match(s)]
        if calls:
            i, name = calls[-1]
            category = "sys " + name
            below = frames[i - 1][0] if i > 0 else "(self)"
            # Skip the thin wrappers down to the first real callee.
            j = i - 1
            while j > 0 and frames[j][0].startswith(("__sys_", "__do_sys", "do_sys", "__se_sys", "ksys_")):
                j -= 1
            callees[category][frames[j][0] if j >= 0 else below] += period
            if name in a.inside:
                for sym in {s for s, _ in frames[:i]}:
                    inside[name][sym] += period
        elif kernel:
            category = "kernel, outside a system call"
        else:
            category = "user"
        categories[category] += period
        if frames:
            sym, dso = frames[0]
            where = "k" if dso == "[kernel.kallsyms]" else "u"
            self_time[f"[{where}] {sym}"] += period

    if total == 0:
        sys.exit(f"no samples of {a.comm!r} in {a.data}")
    cpu_total = sum(by_comm.values())
    unit = "µs/unit" if a.units else "%"

    def fmt(ns):
        return f"{ns / 1000 / a.units:8.2f}" if a.units else f"{100 * ns / total:7.2f}%"

    print(f"{a.data}: {a.comm} {100 * total / cpu_total:.1f}% of the recorded CPU time"
          + (f", {total / 1000 / a.units:.2f} µs per unit over {a.units:.0f} units" if a.units else ""))
    others = ", ".join(f"{c} {100 * t / cpu_total:.1f}%" for c, t in by_comm.most_common(4) if c != a.comm)
    print(f"  others on the CPU: {others}")
    print(f"\n  {unit:>9}  by system call (inclusive) / user / other kernel")
    for category, ns in categories.most_common():
        if ns / total < 0.003:
            break
        print(f"  {fmt(ns)}  {category}")
        if a.callees and ns / total >= 0.03:
            for callee, cns in callees[category].most_common(4):
                print(f"  {fmt(cns)}      {callee}")
    # What no user-space change can remove: the floor under any figure of
    # efficiency (a proxy k times as efficient as another may spend 1/k of
    # the other's per-unit time in all, kernel included).
    print(f"  {fmt(total - categories['user'])}  = kernel in all (every row but user)")
    for name in a.inside:
        print(f"\n  {unit:>9}  inside {name} (inclusive)")
        for sym, ns in inside[name].most_common(a.top):
            print(f"  {fmt(ns)}  {sym}")
    print(f"\n  {unit:>9}  top symbols by self time")
    for sym, ns in self_time.most_common(a.top):
        print(f"  {fmt(ns)}  {sym}")


if __name__ == "__main__":
    main()
