#!/usr/bin/env bash
# Where a connection's time goes: coexist beside HAProxy and nginx stream on
# the same load (coexist-bench's connection-rate and echo runs), user space
# and kernel, per connection and per round trip.
#
#   cargo build --release -p lb -p coexist-benches
#   benches/scripts/profile-request-path.sh [OUTDIR] [TARGETS] [BENCH OPTIONS...]
#
# TARGETS defaults to coexist,haproxy,nginx-stream (coexist-bench --only);
# TESTS (environment) to rate,echo: TESTS=udp profiles the saturated UDP
# runs instead, per query (HAProxy has no UDP: TARGETS coexist,nginx-stream);
# further options go to coexist-bench, e.g. `--compare base=PATH` with
# TARGETS coexist,base,haproxy to profile a change beside its baseline.
# Needs perf (Debian: linux-perf) and python3; run it as root, with nothing
# else busy on the machine (on a shared machine: under `quiet`).
#
# What it does: coexist-bench --perf records `perf record -g` on the proxy's
# CPU during each measured run (the proxy is pinned, so everything on that
# CPU, softirq included, is the proxy's doing); perf_breakdown.py then
# divides the samples by the connections (or round trips) of that run and
# groups them by system call. Compare the rows across proxies: the kernel's
# loopback delivery to the peer runs inside the sending call (sendto,
# connect, shutdown, close), so those rows carry most of the time.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-coexist-profile}
targets=${2:-coexist,haproxy,nginx-stream}
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
target/release/coexist-bench --quick --only "$targets" --tests "${TESTS:-rate,echo}" \
  --perf "$out" --json "$out/bench.json" "$@" > "$out/table.md"
python3 - "$out" <<'PY'
import json, subprocess, sys
out = sys.argv[1]
report = json.load(open(f"{out}/bench.json"))
comm = {"haproxy": "haproxy", "haproxy-splice": "haproxy", "nginx-stream": "nginx"}
for target in report["repetitions"][0]:
    if target.get("skipped") or target["name"] == "direct":
        continue
    name = target["name"]
    exchanges = target.get("exchanges") or {}
    def queries(kind):
        return ((target.get(kind) or {}).get("saturated") or {}).get("queries")
    units = {
        "rate": ((target.get("connection_rate") or {}).get("connections"), "connections"),
        "open": ((exchanges.get("opening") or {}).get("connections"), "connections opened"),
        "echo": ((exchanges.get("round_trips") or {}).get("round_trips"), "round trips"),
        "udp-one": (queries("udp_one_per_query"), "queries, one per session"),
        "udp-long": (queries("udp_long"), "queries, long sessions"),
        "udp-pipelined": (queries("udp_pipelined"), "queries, many in flight"),
    }
    for test, (n, unit) in units.items():
        if not n:
            continue
        print(f"\n=== {name}, {test} ({unit})", flush=True)
        subprocess.run([
            "python3", "benches/scripts/perf_breakdown.py", f"{out}/{name}-{test}-1.data",
            "--comm", comm.get(name, "coexist"), "--units", str(n), "--top", "15",
        ], check=True)
PY
echo
cat "$out/table.md"
