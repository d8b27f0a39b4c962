#!/usr/bin/env bash
# Instructions per request, counted by callgrind: a deterministic companion to run.sh, whose
# wall-clock figures swing by tens of percent on shared machines. Counts user-space
# instructions only (the kernel's share, including fdatasync and loopback TCP, is not in
# them), for the same GET through
#   (b) nginx as a reverse proxy injecting Authorization (one worker, no master), and
#   (c) Steward with full governance, with the access log on (`info`) and off (`warn`),
# each after a warm-up, over a keep-alive connection. Writes bench/results/http-instructions.md.
#
# Usage: bench/http/callgrind.sh [requests]
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-500}"
export CARGO_TARGET_DIR="${STEWARD_BENCH_TARGET_DIR:-$HOME/.cache/steward-bench-target}"
need() { command -v "$1" >/dev/null 2>&1 || { apt-get install -y -qq "$2" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }; }
need nginx nginx-light
need valgrind valgrind
cargo build --release -p steward >/dev/null
BIN="$CARGO_TARGET_DIR/release/steward"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=bench/http/common.sh
. bench/http/common.sh
UP=$(free_port); PROXY=$(free_port); GW=$(free_port)
write_payload "$WORK"
cat > "$WORK/upstream.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 100000;
  server { listen 127.0.0.1:$UP; location / { root $WORK/www; default_type application/json; } } }
NGINX
cat > "$WORK/proxy.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $WORK/proxy.pid;
error_log $WORK/logs/proxy-error.log warn;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 100000;
  upstream origin { server 127.0.0.1:$UP; keepalive 16; }
  server { listen 127.0.0.1:$PROXY;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer upstream-bench-secret"; } } }
NGINX
chmod -R a+rX "$WORK"
nginx -c "$WORK/upstream.conf" -p "$WORK"

# Steward, set up normally, then restarted under callgrind on the same data directory.
"$BIN" serve --data-dir "$WORK/steward" --listen "127.0.0.1:$GW" > "$WORK/steward.out" 2> "$WORK/steward.err" &
SETUP_PID=$!
for _ in $(seq 1 100); do grep -q stwa_ "$WORK/steward.out" 2>/dev/null && break; sleep 0.1; done
export STEWARD_SERVER="http://127.0.0.1:$GW"
export STEWARD_TOKEN="$(grep -o 'stwa_[A-Za-z0-9]*' "$WORK/steward.out" | head -n1)"
steward_setup "$BIN" "$WORK" "$UP"
TOKEN="$("$BIN" token get --client-id bench-agent --key-file "$WORK/key")"
kill "$SETUP_PID"; wait "$SETUP_PID" 2>/dev/null || true

requests() { # port count [token]
  python3 - "$@" <<'PY'
import http.client, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
headers = {"Authorization": "Bearer " + sys.argv[3]} if len(sys.argv) > 3 else {}
path = "/gw/bench/item.json" if headers else "/item.json"
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(count):
    c.request("GET", path, headers=headers)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
}
measure() { # name port pid [token]
  local name=$1 port=$2 pid=$3
  shift 3
  for _ in $(seq 1 600); do curl -sf -o /dev/null "http://127.0.0.1:$port/" -m 1 || true; \
    requests "$port" 1 "$@" 2>/dev/null && break; sleep 0.2; done
  requests "$port" 50 "$@"
  callgrind_control -z "$pid" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  requests "$port" "$N" "$@"
  sleep 1
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  local total
  total=$(cat "$WORK/$name".cg.out* | awk '/^summary:|^totals:/ {s += $2} END {print s}')
  echo "$name $total" >> "$WORK/results"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

: > "$WORK/results"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/nginx.cg.out" \
  nginx -c "$WORK/proxy.conf" -p "$WORK" 2> "$WORK/nginx-vg.err" &
PIDS+=($!); measure nginx "$PROXY" "$!"
for level in info warn; do
  RUST_LOG=$level valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/steward-$level.cg.out" \
    "$BIN" serve --data-dir "$WORK/steward" --listen "127.0.0.1:$GW" > /dev/null 2> "$WORK/steward-$level.err" &
  PIDS+=($!); measure "steward-$level" "$GW" "$!" "$TOKEN"
done

python3 - "$WORK/results" "$N" <<'PY'
import sys, datetime
rows = dict(l.split() for l in open(sys.argv[1]) if l.strip())
n = int(sys.argv[2])
per = {k: int(v) / n for k, v in rows.items()}
b, ci, cw = per["nginx"], per["steward-info"], per["steward-warn"]
lines = [
    "# HTTP gateway: instructions per request (callgrind)",
    "",
    f"Date: {datetime.date.today()}. Command: `bench/http/callgrind.sh {n}`: {n} sequential keep-alive",
    "GETs after a 50-request warm-up; user-space instructions of the proxy process only (the",
    "kernel's work, loopback TCP and `fdatasync`, is not counted). Deterministic for a given",
    "build, unlike the wall-clock harness. Under valgrind SHA-256 runs without the SHA",
    "extensions, so hashing weighs more here than on the real CPU.",
    "",
    "| proxy | instructions per request | ratio to nginx |",
    "|---|---:|---:|",
    f"| (b) nginx reverse proxy + Authorization | {b:,.0f} | 1.00 |",
    f"| (c) Steward, full governance, access log on (`info`) | {ci:,.0f} | {ci/b:.1f} |",
    f"| (c) Steward, full governance, access log off (`warn`) | {cw:,.0f} | {cw/b:.1f} |",
    "",
    f"- the access log line and request span cost {ci-cw:,.0f} instructions per request ({(ci-cw)/ci:.1%} of Steward's)",
]
print("\n".join(lines))
open("bench/results/http-instructions.md", "w").write("\n".join(lines) + "\n")
PY
