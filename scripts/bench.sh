#!/usr/bin/env bash
# scripts/bench.sh: the load/soak numbers of BENCHMARKS.md ("Load, soak and
# abuse"), clawgate and the real OpenClaw gateway side by side, from one run
# on one machine. Everything runs inside scripts/netns.sh (only lo exists),
# every load generator targets 127.0.0.1, from source addresses 127.0.0.x.
#
#   scripts/bench.sh                # everything (about 15 minutes)
#   BENCH_OPENCLAW=0 scripts/bench.sh   # clawgate only
#   BENCH_QUICK=1 scripts/bench.sh      # small counts, to check the script
#   BENCH_BIN=dir scripts/bench.sh      # use dir/clawgate and dir/clawgate-load
#
# Needs: Go, and for OpenClaw the install of scripts/deps.sh (.cache/node24,
# .cache/openclaw). Results: .cache/bench/<UTC time>/*.json, one summary
# table on stdout, and each gateway's log next to the JSON.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ "${CLAWGATE_BENCH_INNER:-}" != 1 ]; then
	OUT="${BENCH_OUT:-$ROOT/.cache/bench/$(date -u +%Y%m%dT%H%M%SZ)}"
	mkdir -p "$OUT/bin"
	if [ -n "${BENCH_BIN:-}" ]; then
		# Prebuilt binaries (e.g. of a given commit): $BENCH_BIN/clawgate{,-load}.
		cp "$BENCH_BIN/clawgate" "$BENCH_BIN/clawgate-load" "$OUT/bin/"
	else
		echo "[bench] building clawgate and clawgate-load into $OUT/bin" >&2
		go build -o "$OUT/bin/clawgate" ./cmd/clawgate
		go build -o "$OUT/bin/clawgate-load" ./cmd/clawgate-load
	fi
	CLAWGATE_BENCH_INNER=1 BENCH_OUT="$OUT" exec scripts/netns.sh "$0" "$@"
fi

# ---- inside the namespace ------------------------------------------------
OUT="$BENCH_OUT"
BIN="$OUT/bin"
QUICK="${BENCH_QUICK:-0}"
WITH_OPENCLAW="${BENCH_OPENCLAW:-1}"
TOKEN="bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CG_PORT=18789
OC_PORT=18790

# 50,000 sockets on each side of loopback need 50,000 descriptors in the
# gateway and in the load tool. Raise the soft limit as far as the hard one
# goes (raising the hard limit needs CAP_SYS_RESOURCE); idle counts that do
# not fit are measured at the largest count that does, and say so.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ulimit -n 1048576 2>/dev/null || true
FD_LIMIT="$(ulimit -n)"
MAX_IDLE=$((FD_LIMIT - 1000))

log() { printf '[bench] %s\n' "$*" >&2; }
n() { if [ "$QUICK" = 1 ]; then echo "$2"; else echo "$1"; fi; }

{
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "go: $(go version 2>/dev/null || echo '?')"
	echo "open files limit: $FD_LIMIT (hard $(ulimit -Hn))"
	echo "clawgate: $("$BIN/clawgate" version 2>/dev/null || true) (tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

wait_http() { # url timeout_s
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

# start_clawgate NAME: a fresh clawgate with its own state; sets CG_PID.
start_clawgate() {
	local state="$OUT/state-$1"
	rm -rf "$state"
	mkdir -m 700 "$state"
	local t0=$(date +%s%N)
	"$BIN/clawgate" gateway --port "$CG_PORT" --token "$TOKEN" --state-dir "$state" >"$OUT/clawgate-$1.log" 2>&1 &
	CG_PID=$!
	PIDS+=("$CG_PID")
	wait_http "$CG_PORT" 30 || { log "clawgate did not start"; cat "$OUT/clawgate-$1.log" >&2; exit 1; }
	log "clawgate ($1) accepting after $((($(date +%s%N) - t0) / 1000000)) ms, pid $CG_PID"
	sleep 1
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# rss_tree PID: resident KiB of PID and all its descendants.
rss_tree() {
	local total=0 p kids
	local queue=("$1")
	while [ "${#queue[@]}" -gt 0 ]; do
		p="${queue[0]}"
		queue=("${queue[@]:1}")
		total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
		kids="$(cat /proc/"$p"/task/*/children 2>/dev/null || true)"
		for k in $kids; do queue+=("$k"); done
	done
	echo "$total"
}

# load TARGET_NAME URL PID OUTFILE ARGS...
load() {
	local name="$1" url="$2" pid="$3" out="$4"
	shift 4
	log "clawgate-load $name: $*"
	"$BIN/clawgate-load" --url "$url" --token "$TOKEN" --label "$name" --pid "$pid" --json "$OUT/$out" "$@" \
		2> >(tee -a "$OUT/progress.log" | grep -E '\] (done|failed|round|[0-9]+ open in)' >&2) || log "$name: some scenario failed (see $out)"
}

# ---- the real OpenClaw gateway -------------------------------------------
start_openclaw() {
	local node="$ROOT/.cache/node24/node_modules/.bin/node"
	local oc="$ROOT/.cache/openclaw/node_modules/openclaw/openclaw.mjs"
	[ -x "$node" ] && [ -f "$oc" ] || { log "OpenClaw not installed (run scripts/deps.sh)"; return 1; }
	local h="$OUT/openclaw-home"
	rm -rf "$h"
	mkdir -p "$h"/{tmp,state,.config,.cache,.local/share,.local/state}
	local t0=$(date +%s%N)
	env -i PATH="$(dirname "$node"):/usr/bin:/bin" HOME="$h" OPENCLAW_HOME="$h" \
		OPENCLAW_STATE_DIR="$h/state" OPENCLAW_CONFIG_PATH="$h/openclaw.json" \
		XDG_CONFIG_HOME="$h/.config" XDG_CACHE_HOME="$h/.cache" XDG_DATA_HOME="$h/.local/share" \
		XDG_STATE_HOME="$h/.local/state" TMPDIR="$h/tmp" \
		OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_AUTO_UPDATE=1 OPENCLAW_SKIP_CHANNELS=1 OPENCLAW_OFFLINE=1 \
		NO_COLOR=1 FORCE_COLOR=0 \
		"$node" "$oc" gateway run --allow-unconfigured --auth token --token "$TOKEN" --bind loopback --port "$OC_PORT" \
		>"$OUT/openclaw.log" 2>&1 &
	OC_PID=$!
	PIDS+=("$OC_PID")
	local i
	for ((i = 0; i < 1200; i++)); do
		grep -q '\[gateway\] ready' "$OUT/openclaw.log" 2>/dev/null && break
		kill -0 "$OC_PID" 2>/dev/null || { log "OpenClaw exited"; tail -20 "$OUT/openclaw.log" >&2; return 1; }
		sleep 0.1
	done
	log "OpenClaw ready after $((($(date +%s%N) - t0) / 1000000)) ms, pid $OC_PID; settling 15 s"
	sleep 15
}

# ---- side by side ---------------------------------------------------------
# The same scenarios against both. Handshake and health counts differ (each
# run is sized to take seconds, not hours, on the slower target); the
# reported figure is a rate or a percentile, so the counts do not bias it.
compare() { # name url pid scale(1 clawgate, 10 openclaw)
	local name="$1" url="$2" pid="$3" div="$4"
	load "$name" "$url" "$pid" "$name-seq.json" --scenarios connect-health --sequential "$(n 200 20)"
	load "$name" "$url" "$pid" "$name-handshake.json" --scenarios handshake,paired --concurrency 16 \
		--handshakes "$(($(n 5000 200) / div))" --devices 64
	load "$name" "$url" "$pid" "$name-health.json" --scenarios health --health-conns 8 \
		--health-calls "$(($(n 40000 800) / div))"
	load "$name" "$url" "$pid" "$name-idle500.json" --scenarios idle --idle "$(n 500 50)" --hold "$(n 35s 3s)" \
		--concurrency 16 --settle 5s
}

start_clawgate compare
echo "$(rss_tree "$CG_PID") KiB" >"$OUT/rss-fresh-clawgate.txt"
compare clawgate "ws://127.0.0.1:$CG_PORT" "$CG_PID" 1
stop_pid "$CG_PID"

if [ "$WITH_OPENCLAW" = 1 ]; then
	if start_openclaw; then
		echo "$(rss_tree "$OC_PID") KiB" >"$OUT/rss-fresh-openclaw.txt"
		compare openclaw "ws://127.0.0.1:$OC_PORT" "$OC_PID" 20
		stop_pid "$OC_PID"
	fi
fi

# ---- clawgate alone at scale ---------------------------------------------
for N in $(n "10000 50000" "1000 2000"); do
	if [ "$N" -gt "$MAX_IDLE" ]; then
		log "idle $N does not fit in $FD_LIMIT descriptors per process; measuring $MAX_IDLE instead"
		echo "idle $N: not run, open files limit $FD_LIMIT; ran $MAX_IDLE" >>"$OUT/machine.txt"
		N=$MAX_IDLE
	fi
	start_clawgate "idle$N"
	load clawgate "ws://127.0.0.1:$CG_PORT" "$CG_PID" "clawgate-idle$N.json" --scenarios idle --idle "$N" \
		--hold "$(n 35s 3s)" --concurrency 128 --settle 5s
	stop_pid "$CG_PID"
done

start_clawgate fanout
load clawgate "ws://127.0.0.1:$CG_PORT" "$CG_PID" "clawgate-fanout.json" --scenarios fanout,churn \
	--fanout "$(n 10000 500)" --fanout-rounds "$(n 20 3)" --concurrency 128 --churn "$(n 20000 500)"
stop_pid "$CG_PID"

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# ---- table -----------------------------------------------------------------
python3 - "$OUT" <<'PY' || log "python3 missing: read the JSON files in $OUT"
import glob, json, os, sys
out = sys.argv[1]
res = {}
for f in sorted(glob.glob(os.path.join(out, "*.json"))):
    d = json.load(open(f))
    for r in d["results"]:
        res[(d["target"], os.path.basename(f)[:-5].split("-", 1)[1], r["scenario"])] = r
def g(t, f, s, k, sub=None):
    r = res.get((t, f, s))
    if not r: return None
    v = r.get(k)
    if sub and isinstance(v, dict): v = v.get(sub)
    return v
def mib(b): return None if not b else b / 1048576
rows = []
for t in ("clawgate", "openclaw"):
    rows.append((t, "sequential signed connect+health /s", g(t, "seq", "connect-health", "perSecond")))
    rows.append((t, "signed handshakes /s, new devices (16 workers)", g(t, "handshake", "handshake", "perSecond")))
    rows.append((t, "signed handshakes /s, paired (device token)", g(t, "handshake", "paired", "perSecond")))
    rows.append((t, "health p50 ms (8 conns)", g(t, "health", "health", "latency", "p50Ms")))
    rows.append((t, "health p99 ms", g(t, "health", "health", "latency", "p99Ms")))
    rows.append((t, "health p999 ms", g(t, "health", "health", "latency", "p999Ms")))
    rows.append((t, "health calls /s", g(t, "health", "health", "perSecond")))
    rows.append((t, "RSS idle after the runs MiB (process tree)", mib(g(t, "idle500", "idle", "memBefore", "treeRssBytes"))))
    rows.append((t, "RSS with 500 idle conns MiB", mib(g(t, "idle500", "idle", "memAfter", "treeRssBytes"))))
    rows.append((t, "KiB RSS per idle conn at 500", g(t, "idle500", "idle", "treeRssPerConnKiB")))
idles = sorted({f[4:] for (t, f, sc) in res if t == "clawgate" and f.startswith("idle") and f != "idle500"}, key=int)
for n in idles:
    v = g("clawgate", "idle" + n, "idle", "rssPerConnKiB")
    if v is not None:
        rows.append(("clawgate", f"KiB RSS per idle conn at {n}", v))
        rows.append(("clawgate", f"RSS with {n} idle conns MiB", mib(g("clawgate", "idle" + n, "idle", "memAfter", "rssBytes"))))
        rows.append(("clawgate", f"ticks received per conn at {n} (min)", g("clawgate", "idle" + n, "idle", "ticksMin")))
rows.append(("clawgate", "fan-out p50 ms", g("clawgate", "fanout", "fanout", "latency", "p50Ms")))
rows.append(("clawgate", "fan-out p99 ms", g("clawgate", "fanout", "fanout", "latency", "p99Ms")))
rows.append(("clawgate", "fan-out deliveries missed", g("clawgate", "fanout", "fanout", "missed")))
rows.append(("clawgate", "churn connect+close /s", g("clawgate", "fanout", "churn", "perSecond")))
for t in ("clawgate", "openclaw"):
    f = os.path.join(out, f"rss-fresh-{t}.txt")
    if os.path.exists(f):
        rows.append((t, "RSS fresh, before any load MiB (tree)", int(open(f).read().split()[0]) / 1024))
print(f"{'target':10} {'metric':48} value")
for t, m, v in rows:
    if v is None: continue
    print(f"{t:10} {m:48} {v:.2f}" if isinstance(v, float) else f"{t:10} {m:48} {v}")
PY
log "results in $OUT"
