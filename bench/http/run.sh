#!/usr/bin/env bash
# HTTP gateway load harness: the same static upstream (nginx) measured
#   (a) directly, (b) through nginx as a reverse proxy injecting Authorization,
#   (c) through Steward with full governance (token verification, Cedar policy,
#       credential injection from the vault, durable audit of decision and outcome),
# interleaved in one run with wrk at the same concurrency. Writes bench/results/http.md.
#
# Usage: bench/http/run.sh [duration_secs] [connections] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-10}"
CONNS="${2:-50}"
ROUNDS="${3:-3}"
THREADS=2
# Benchmarks build in their own target dir so they never hold the test build lock.
export CARGO_TARGET_DIR="${STEWARD_BENCH_TARGET_DIR:-$HOME/.cache/steward-bench-target}"

need() { command -v "$1" >/dev/null 2>&1 || { apt-get install -y -qq "$2" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }; }
need wrk wrk
need nginx nginx-light

# STEWARD_BIN=PATH measures a given build (for A/B runs) instead of building this tree.
if [ -z "${STEWARD_BIN:-}" ]; then
  cargo build --release -p steward >/dev/null
fi
BIN="${STEWARD_BIN:-$CARGO_TARGET_DIR/release/steward}"

WORK="$(mktemp -d)"
cleanup() {
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  [ -n "${STEWARD_PID:-}" ] && kill "$STEWARD_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=bench/http/common.sh
. bench/http/common.sh
UP=$(free_port); PROXY=$(free_port); GW=$(free_port)

write_payload "$WORK"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  upstream origin { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$UP;
    location / { root $WORK/www; default_type application/json; }
  }
  server {
    listen 127.0.0.1:$PROXY;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer upstream-bench-secret";
    }
  }
}
NGINX
# nginx workers drop to an unprivileged user: let them read the static files.
chmod -R a+rX "$WORK"
nginx -c "$WORK/nginx.conf" -p "$WORK"

STEWARD_DATA="${STEWARD_BENCH_DATA_DIR:-$WORK/steward}"
"$BIN" serve --data-dir "$STEWARD_DATA" --listen "127.0.0.1:$GW" > "$WORK/steward.out" 2> "$WORK/steward.err" &
STEWARD_PID=$!
for _ in $(seq 1 100); do grep -q stwa_ "$WORK/steward.out" 2>/dev/null && break; sleep 0.1; done
export STEWARD_SERVER="http://127.0.0.1:$GW"
export STEWARD_TOKEN="$(grep -o 'stwa_[A-Za-z0-9]*' "$WORK/steward.out" | head -n1)"
steward_setup "$BIN" "$WORK" "$UP"
TOKEN="$("$BIN" token get --client-id bench-agent --key-file "$WORK/key")"
# A token lives 15 minutes by default; long runs re-mint between rounds.

check() { curl -sf -o /dev/null "$@" || { echo "probe failed: $*" >&2; exit 1; }; }
check "http://127.0.0.1:$UP/item.json"
check "http://127.0.0.1:$PROXY/item.json"
check -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$GW/gw/bench/item.json"

# wrk prints latency in us/ms/s; normalise to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'; }
run() { # name url [header]
  local out
  # STEWARD_BENCH_PERF=FILE records a CPU profile of Steward during its runs.
  if [ "$1" = steward ] && [ -n "${STEWARD_BENCH_PERF:-}" ]; then
    perf record -F 999 -g -p "$STEWARD_PID" -o "$STEWARD_BENCH_PERF" -- sleep "$DURATION" >/dev/null 2>&1 &
  fi
  local cpu0=0
  [ "$1" = steward ] && cpu0=$(awk '{print $14+$15}' "/proc/$STEWARD_PID/stat")
  if [ -n "${3:-}" ]; then
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H "$3" "$2")
  else
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$2")
  fi
  local rps p50 p99 errs
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
  errs=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  echo "$1 $rps $p50 $p99 ${errs:-0}" >> "$WORK/results"
  if [ "$1" = steward ]; then
    # Steward's own CPU (user + system) per request during the run.
    local cpu1 ticks
    cpu1=$(awk '{print $14+$15}' "/proc/$STEWARD_PID/stat")
    ticks=$(getconf CLK_TCK)
    awk -v d="$((cpu1 - cpu0))" -v t="$ticks" -v r="$rps" -v s="$DURATION" \
      'BEGIN { printf "%.1f\n", d / t / (r * s) * 1e6 }' >> "$WORK/cpu"
  fi
}

: > "$WORK/results"
for r in $(seq 1 "$ROUNDS"); do
  TOKEN="$("$BIN" token get --client-id bench-agent --key-file "$WORK/key")"
  run direct "http://127.0.0.1:$UP/item.json"
  run nginx "http://127.0.0.1:$PROXY/item.json"
  run steward "http://127.0.0.1:$GW/gw/bench/item.json" "Authorization: Bearer $TOKEN"
done

python3 - "$WORK/results" "$DURATION" "$CONNS" "$ROUNDS" "$WORK/cpu" <<'PY'
import statistics, sys, datetime, os, platform
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
dur, conns, rounds = sys.argv[2], sys.argv[3], sys.argv[4]
by = {}
for name, rps, p50, p99, errs in rows:
    by.setdefault(name, []).append((float(rps), float(p50), float(p99), int(errs)))
med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) + (sum(x[3] for x in v),) for k, v in by.items()}
a, b, c = med["direct"], med["nginx"], med["steward"]
lines = [
    "# HTTP gateway benchmark",
    "",
    f"Date: {datetime.date.today()}. Machine: {os.cpu_count()} cores ({platform.machine()}), shared and noisy; compare the ratios.",
    f"Command: `bench/http/run.sh {dur} {conns} {rounds}` (wrk, 2 threads, {conns} connections, {dur} s per run,",
    f"{rounds} interleaved rounds, medians reported). Upstream: static nginx on 127.0.0.1.",
    "",
    "| path | requests/s | p50 ms | p99 ms | non-2xx |",
    "|---|---:|---:|---:|---:|",
    f"| (a) direct upstream | {a[0]:.0f} | {a[1]:.2f} | {a[2]:.2f} | {a[3]} |",
    f"| (b) nginx reverse proxy + Authorization | {b[0]:.0f} | {b[1]:.2f} | {b[2]:.2f} | {b[3]} |",
    f"| (c) Steward, full governance | {c[0]:.0f} | {c[1]:.2f} | {c[2]:.2f} | {c[3]} |",
    "",
    f"- c/b requests/s: **{c[0]/b[0]:.2f}** (target ≥ 0.8); c/a: {c[0]/a[0]:.2f}",
    f"- p99: Steward {c[2]:.2f} ms vs nginx {b[2]:.2f} ms (target: ≤ nginx + 2 ms → {'met' if c[2] <= b[2] + 2 else 'missed'})",
]
cpu = [float(l) for l in open(sys.argv[5]) if l.strip()] if os.path.exists(sys.argv[5]) else []
if cpu:
    lines.append(f"- Steward's own CPU per request (user + system, from /proc): median {statistics.median(cpu):.0f} µs")
print("\n".join(lines))
os.makedirs("bench/results", exist_ok=True)
open("bench/results/http.md", "w").write("\n".join(lines) + "\n")
PY
