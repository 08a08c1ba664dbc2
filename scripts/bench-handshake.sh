#!/usr/bin/env bash
# scripts/bench-handshake.sh: the gateway's CPU time per signed handshake
# against the ed25519 verify ceiling (BENCHMARKS.md, "Gateway core"), for
# one build or two builds A/B interleaved in one run. Runs in
# scripts/netns.sh (only lo exists).
#
#   scripts/bench-handshake.sh                 # this tree
#   scripts/bench-handshake.sh DIR_A DIR_B     # DIR/clawgate of two builds, interleaved
#   ROUNDS=3 HANDSHAKES=3000 CONCURRENCY=8 scripts/bench-handshake.sh ...
#   scripts/bench-handshake.sh floor this      # "floor": clawgate-load floor-server,
#                                              # the same session with canned frames
#
# Each round starts a fresh gateway per build and drives it from a
# separate process (clawgate-load, built from this tree) with signed
# handshakes of 64 paired devices: reconnecting with their device tokens
# (paired) and with the shared token (shared). clawgate-load reads the
# gateway's utime+stime from /proc around each loop and times ed25519.Verify
# of a v3 payload by thread CPU clock before and after. Results:
# .cache/bench/handshake-<UTC time>/*.json and a table on stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "${CLAWGATE_BENCH_INNER:-}" != 1 ]; then
	OUT="${BENCH_OUT:-$ROOT/.cache/bench/handshake-$(date -u +%Y%m%dT%H%M%SZ)}"
	mkdir -p "$OUT/bin"
	go build -o "$OUT/bin/clawgate-load" ./cmd/clawgate-load
	if [ $# -eq 0 ]; then
		go build -o "$OUT/bin/clawgate-this" ./cmd/clawgate
		set -- this
	else
		names=()
		for d in "$@"; do
			case "$d" in
			floor) names+=(floor) ;;
			this)
				go build -o "$OUT/bin/clawgate-this" ./cmd/clawgate
				names+=(this)
				;;
			*)
				n="$(basename "$d")"
				cp "$d/clawgate" "$OUT/bin/clawgate-$n"
				names+=("$n")
				;;
			esac
		done
		set -- "${names[@]}"
	fi
	CLAWGATE_BENCH_INNER=1 BENCH_OUT="$OUT" exec scripts/netns.sh "$0" "$@"
fi

OUT="$BENCH_OUT"
ROUNDS="${ROUNDS:-3}"
HANDSHAKES="${HANDSHAKES:-3000}"
CONCURRENCY="${CONCURRENCY:-8}"
TOKEN="bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PORT=18789
{
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -srm), $(nproc) cores"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "builds: $*; rounds $ROUNDS, $HANDSHAKES handshakes per scenario, $CONCURRENCY workers"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

for r in $(seq "$ROUNDS"); do
	for b in "$@"; do
		state="$OUT/state-$b-$r"
		mkdir -m 700 "$state"
		if [ "$b" = floor ]; then
			"$OUT/bin/clawgate-load" floor-server --listen "127.0.0.1:$PORT" >"$OUT/gateway-$b-$r.log" 2>&1 &
		else
			"$OUT/bin/clawgate-$b" gateway --port "$PORT" --token "$TOKEN" --state-dir "$state" >"$OUT/gateway-$b-$r.log" 2>&1 &
		fi
		pid=$!
		for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
		sleep 0.5
		echo "[bench] round $r, $b (pid $pid), load average $(cut -d' ' -f1 /proc/loadavg)" >&2
		"$OUT/bin/clawgate-load" --url "ws://127.0.0.1:$PORT" --token "$TOKEN" --pid "$pid" --label "$b" \
			--scenarios paired,shared --handshakes "$HANDSHAKES" --devices 64 --concurrency "$CONCURRENCY" \
			--progress=false --json "$OUT/$b-$r.json" 2>>"$OUT/progress.log" || echo "[bench] $b round $r: a scenario failed" >&2
		kill "$pid"
		wait "$pid" || true
	done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

python3 - "$OUT" "$@" <<'PY'
import glob, json, sys
out, builds = sys.argv[1], sys.argv[2:]
ceil = []
rows = {}
for b in builds:
    for f in sorted(glob.glob(f"{out}/{b}-*.json")):
        s = json.load(open(f))
        for k in ("verifyCeilingBefore", "verifyCeilingAfter"):
            if s.get(k):
                ceil.append(s[k])
        for r in s["results"]:
            if r.get("serverCpu") and not r.get("error"):
                rows.setdefault((b, r["scenario"]), []).append(r["serverCpu"]["cpuUsPerOp"])
us = sum(c["cpuUsPerVerify"] for c in ceil) / len(ceil)
cores = ceil[0]["cores"]
cap = cores * 1e6 / us
print(f"ed25519 verify: {us:.1f} µs CPU each ({len(ceil)} measurements, "
      f"{min(c['cpuUsPerVerify'] for c in ceil):.1f}-{max(c['cpuUsPerVerify'] for c in ceil):.1f}); ceiling {cap:,.0f}/s on {cores} cores")
print("| build | scenario | gateway CPU µs per handshake (rounds) | mean | capacity/s on %d cores | of the verify ceiling |" % cores)
print("|---|---|---|---|---|---|")
for (b, sc), v in rows.items():
    m = sum(v) / len(v)
    print(f"| {b} | {sc} | {', '.join(f'{x:.0f}' for x in v)} | {m:.0f} | {cores*1e6/m:,.0f} | {us/m*100:.1f}% |")
with open(f"{out}/machine.txt") as f:
    print(f.read().strip())
PY
