#!/usr/bin/env bash
# MCP gateway load harness: `tools/call` of a trivial tool over Streamable HTTP (JSON-RPC
# POST, keep-alive), measured in interleaved rounds at concurrency 1 and 32:
#   (a) directly against a static-JSON MCP responder (nginx `return 200`, so the upstream
#       costs next to nothing and the gateway's cost shows);
#   (b) through nginx as a reverse proxy injecting Authorization (proxy_pass);
#   (c) through Steward's /mcp with full governance: bearer token verification, session
#       check, tool pinning, Cedar policy, credential injection from the vault, durable
#       audit of decision and outcome, forwarding to the same responder;
#   (d) as (c), with the audit journal off (`[audit] journal = false`: every group commit
#       is a SQLite transaction, the path PostgreSQL deployments take), to show the journal;
# then a phase breakdown of (c): `ping`, a denied call, the allowed call, and the allowed
# call with a progress token (the notification relay armed, nothing to relay).
# The client is wrk with bench/mcp/call.lua, which counts every response that is not the
# tool's own result as bad. Writes bench/results/mcp.md.
#
# Usage: bench/mcp/run.sh [duration_secs] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-10}"
ROUNDS="${2:-3}"
# Benchmarks build in their own target dir so they never hold the test build lock.
export CARGO_TARGET_DIR="${STEWARD_BENCH_TARGET_DIR:-$HOME/.cache/steward-bench-target}"

need() { command -v "$1" >/dev/null 2>&1 || { apt-get install -y -qq "$2" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }; }
need wrk wrk
need nginx nginx-light

if [ -z "${STEWARD_BIN:-}" ]; then
  cargo build --release -p steward >/dev/null
  STEWARD_BIN="$CARGO_TARGET_DIR/release/steward"
fi
BIN="$STEWARD_BIN"

WORK="$(mktemp -d)"
cleanup() {
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  for p in "${STEWARD_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UP=$(free_port); PROXY=$(free_port); GW=$(free_port)

# The static responder answers every JSON-RPC request with one canned result. It carries
# both a tool listing (read by Steward's `tools/list`) and a tool result (`tools/call`);
# `initialize` only needs some result. Ids are not echoed: Steward matches a JSON answer to
# its POST, and the load client ignores ids.
CANNED='{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"bench-ok"}],"isError":false,"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"static","version":"1"},"tools":[{"name":"echo","description":"Returns a canned text.","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}},"annotations":{"readOnlyHint":true}},{"name":"blocked","description":"Never allowed.","inputSchema":{"type":"object"}}]}}'
mkdir -p "$WORK/logs"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_buffer_size 16k;
  upstream origin { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$UP;
    location = /mcp { default_type application/json; return 200 '$CANNED'; }
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
nginx -c "$WORK/nginx.conf" -p "$WORK"

# Two Steward instances with the same setup: the default configuration (audit journal), and
# one with `[audit] journal = false`, where each group commit is a SQLite transaction.
printf 'version = 1\n\n[audit]\njournal = false\n' > "$WORK/sql-audit.toml"
STEWARD_PIDS=()
setup_steward() { # name port [config]: starts, bootstraps and configures one instance
  local name="$1" port="$2" dir="$WORK/$1"
  mkdir -p "$dir"
  if [ -n "${3:-}" ]; then
    STEWARD_CONFIG="$3" "$BIN" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" > "$dir/out" 2> "$dir/err" &
  else
    "$BIN" serve --data-dir "$dir/data" --listen "127.0.0.1:$port" > "$dir/out" 2> "$dir/err" &
  fi
  STEWARD_PIDS+=($!)
  for _ in $(seq 1 150); do grep -q stwa_ "$dir/out" 2>/dev/null && break; sleep 0.1; done
  local admin
  admin="$(grep -o 'stwa_[A-Za-z0-9_-]*' "$dir/out" | head -n1)"
  [ -n "$admin" ] || { echo "Steward $name did not start: $(tail -n 3 "$dir/err")" >&2; exit 1; }
  export STEWARD_SERVER="http://127.0.0.1:$port" STEWARD_TOKEN="$admin"
  "$BIN" identity create bench-agent --owner bench >/dev/null
  "$BIN" identity key-create bench-agent > "$dir/key" 2>/dev/null
  printf 'upstream-bench-secret' | "$BIN" secret set bench-secret >/dev/null
  cat > "$dir/services.yaml" <<YAML
version: 1
services:
  - name: bench
    kind: mcp
    allow_http: true
    allow_private: true
    auth: {type: bearer, secret: bench-secret}
    mcp:
      transport:
        type: http
        url: "http://127.0.0.1:$UP/mcp"
YAML
  "$BIN" apply --file "$dir/services.yaml" >/dev/null
  "$BIN" mcp refresh bench >/dev/null
  mkdir -p "$dir/pol"
  echo 'permit(principal, action == Action::"bench:echo", resource);' > "$dir/pol/p.cedar"
  "$BIN" policy set "$dir/pol" >/dev/null
}
GW0=$(free_port)
setup_steward steward0 "$GW0" "$WORK/sql-audit.toml"
setup_steward steward "$GW"
GW_PID="${STEWARD_PIDS[1]}"
agent_token() { STEWARD_SERVER="http://127.0.0.1:$1" "$BIN" token get --client-id bench-agent --key-file "$WORK/$2/key"; }

# A token lives 15 minutes by default: every round mints one and opens a 2025-11-25 session.
session() { # token port -> session id
  curl -sf -D - -o /dev/null -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' "http://127.0.0.1:$2/mcp" \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
    | tr -d '\r' | awk 'tolower($1)=="mcp-session-id:" {print $2}'
}
probe() { # url [headers...]: one call must return the tool's own result
  local url="$1"; shift
  local body
  body=$(curl -sf "$@" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H 'MCP-Protocol-Version: 2025-11-25' "$url" \
    -d '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"bench__echo","arguments":{"message":"hi"}}}') \
    || { echo "probe failed: $url" >&2; exit 1; }
  case "$body" in *'"text":"bench-ok"'*) ;; *) echo "probe got a wrong answer from $url: $body" >&2; exit 1 ;; esac
}
mint() { # -> TOKEN, SID (default instance), TOKEN0, SID0 (journal off)
  TOKEN="$(agent_token "$GW" steward)"; SID="$(session "$TOKEN" "$GW")"
  TOKEN0="$(agent_token "$GW0" steward0)"; SID0="$(session "$TOKEN0" "$GW0")"
  [ -n "$SID" ] && [ -n "$SID0" ] || { echo "no MCP session from Steward" >&2; exit 1; }
}
mint
probe "http://127.0.0.1:$UP/mcp"
probe "http://127.0.0.1:$PROXY/mcp"
probe "http://127.0.0.1:$GW/mcp" -H "Authorization: Bearer $TOKEN" -H "Mcp-Session-Id: $SID"
probe "http://127.0.0.1:$GW0/mcp" -H "Authorization: Bearer $TOKEN0" -H "Mcp-Session-Id: $SID0"

to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'; }
run() { # name concurrency url [headers...]
  local name="$1" conns="$2" url="$3"; shift 3
  local hdrs=() threads=2
  [ "$conns" -lt 2 ] && threads=1
  for h in "$@"; do hdrs+=(-H "$h"); done
  local out rps p50 p99 bad cpu0=0 pid=""
  # Steward's own CPU per call (user + system from /proc), for the default instance's rows.
  case "$name" in steward|steward-*) pid="$GW_PID"; cpu0=$(awk '{print $14+$15}' "/proc/$pid/stat") ;; esac
  out=$(wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency -s bench/mcp/call.lua "${hdrs[@]}" "$url")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
  bad=$(echo "$out" | awk '$1=="BAD" {print $2}')
  local cpu=0
  if [ -n "$pid" ]; then
    cpu=$(awk -v d="$(( $(awk '{print $14+$15}' "/proc/$pid/stat") - cpu0 ))" -v t="$(getconf CLK_TCK)" \
      -v r="$rps" -v s="$DURATION" 'BEGIN { printf "%.0f", d / t / (r * s) * 1e6 }')
  fi
  echo "$name $conns $rps $p50 $p99 ${bad:-0} $cpu" >> "$WORK/results"
  echo "  $name c=$conns: $rps req/s, p50 $p50 ms, p99 $p99 ms, bad ${bad:-0}, Steward CPU ${cpu} µs/call"
}

: > "$WORK/results"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS"
  mint
  for c in 1 32; do
    run direct "$c" "http://127.0.0.1:$UP/mcp"
    run nginx "$c" "http://127.0.0.1:$PROXY/mcp"
    run steward "$c" "http://127.0.0.1:$GW/mcp" "Authorization: Bearer $TOKEN" "Mcp-Session-Id: $SID"
    run steward0 "$c" "http://127.0.0.1:$GW0/mcp" "Authorization: Bearer $TOKEN0" "Mcp-Session-Id: $SID0"
  done
done
# Phase breakdown (one more round): `ping` costs the HTTP layer, bearer token and session
# check; a denied call adds tool lookup, Cedar and one durable audit record; the allowed
# call (above) adds the upstream round trip and the outcome record.
mint
for c in 1 32; do
  MCP_BODY='{"jsonrpc":"2.0","id":7,"method":"ping"}' MCP_EXPECT='"result"' \
    run steward-ping "$c" "http://127.0.0.1:$GW/mcp" "Authorization: Bearer $TOKEN" "Mcp-Session-Id: $SID"
  MCP_BODY='{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"bench__blocked","arguments":{}}}' \
    MCP_EXPECT='Denied by Steward' \
    run steward-denied "$c" "http://127.0.0.1:$GW/mcp" "Authorization: Bearer $TOKEN" "Mcp-Session-Id: $SID"
  MCP_BODY='{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"bench__echo","arguments":{"message":"hi"},"_meta":{"progressToken":"p"}}}' \
    run steward-progress "$c" "http://127.0.0.1:$GW/mcp" "Authorization: Bearer $TOKEN" "Mcp-Session-Id: $SID"
done
export STEWARD_SERVER="http://127.0.0.1:$GW" STEWARD_TOKEN="$(grep -o 'stwa_[A-Za-z0-9_-]*' "$WORK/steward/out" | head -n1)"
AUDITED=$("$BIN" -o json audit search --operation bench:echo --limit 10 2>/dev/null \
  | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("items", [])))' || echo 0)
VERIFIED=$("$BIN" -o json audit verify 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("ok"))' || echo False)

python3 - "$WORK/results" "$DURATION" "$ROUNDS" "$AUDITED" "$VERIFIED" <<'PY'
import statistics, sys, datetime, os, platform
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
dur, rounds, audited, verified = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
by = {}
for name, conns, rps, p50, p99, bad, cpu in rows:
    by.setdefault((name, int(conns)), []).append((float(rps), float(p50), float(p99), int(bad), float(cpu)))
med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) + (sum(x[3] for x in v), statistics.median(x[4] for x in v)) for k, v in by.items()}
lines = [
    "# MCP gateway benchmark",
    "",
    f"Date: {datetime.date.today()}. Machine: {os.cpu_count()} cores ({platform.machine()}), shared and noisy; compare the ratios.",
    f"Command: `bench/mcp/run.sh {dur} {rounds}`: wrk with `bench/mcp/call.lua` (`tools/call` of a trivial",
    f"tool as a JSON-RPC POST over Streamable HTTP, keep-alive), {dur} s per run, {rounds} interleaved rounds,",
    "medians reported. Upstream: a static-JSON MCP responder (nginx `return 200`, one worker) on 127.0.0.1.",
    "Steward: release build, `2025-11-25` session, full governance (token, session binding, tool pin,",
    "Cedar policy, vault credential injected upstream, durable audit of decision and outcome).",
    "\"bad\" counts answers that were not the tool's own result (must be 0).",
    "",
    "| path | concurrency | requests/s | p50 ms | p99 ms | bad |",
    "|---|---:|---:|---:|---:|---:|",
]
labels = {"direct": "(a) direct to the responder", "nginx": "(b) nginx proxy_pass + Authorization", "steward": "(c) Steward /mcp, full governance",
          "steward0": "(d) = (c) with `[audit] journal = false`"}
for c in (1, 32):
    for n in ("direct", "nginx", "steward", "steward0"):
        v = med.get((n, c))
        if v:
            lines.append(f"| {labels[n]} | {c} | {v[0]:.0f} | {v[1]:.2f} | {v[2]:.2f} | {v[3]} |")
lines.append("")
for c in (1, 32):
    a, b, s = med[("direct", c)], med[("nginx", c)], med[("steward", c)]
    verdict = "met" if s[0] >= 0.5 * a[0] else "missed"
    lines.append(
        f"- concurrency {c}: Steward/direct requests/s **{s[0]/a[0]:.3f}** (target ≥ 0.5: {verdict}); "
        f"nginx/direct {b[0]/a[0]:.2f}; Steward/nginx {s[0]/b[0]:.3f}. "
        f"p50 Steward/direct {s[1]/a[1]:.1f}×, p99 {s[2]/a[2]:.1f}× (Steward p99 {s[2]:.2f} ms vs nginx {b[2]:.2f} ms)"
    )
    if ("steward0", c) in med:
        z = med[("steward0", c)]
        lines.append(f"  - with the journal off (each commit a SQLite transaction): Steward/direct **{z[0]/a[0]:.3f}**, p50 {z[1]:.2f} ms, p99 {z[2]:.2f} ms")
lines += ["", "Phase breakdown (Steward only; one extra round): each row adds work to the one above. CPU is",
          "Steward's own (user + system, from /proc) divided by the calls served.", "",
          "| request | concurrency | requests/s | p50 ms | p99 ms | bad | Steward CPU µs/call |", "|---|---:|---:|---:|---:|---:|---:|"]
phase = {"steward-ping": "`ping`: HTTP, bearer token, session check", "steward-denied": "`tools/call` denied: + tool lookup, Cedar, 1 durable audit record",
         "steward": "`tools/call` allowed: + vault credential, upstream round trip, outcome record",
         "steward-progress": "`tools/call` allowed with a `progressToken`: + notification relay armed (none sent)"}
for c in (1, 32):
    for n in ("steward-ping", "steward-denied", "steward", "steward-progress"):
        v = med.get((n, c))
        if v:
            lines.append(f"| {phase[n]} | {c} | {v[0]:.0f} | {v[1]:.2f} | {v[2]:.2f} | {v[3]} | {v[4]:.0f} |")
lines.append("")
try:
    per = lambda n, c: 1000.0 / med[(n, c)][0]  # mean ms per call at that concurrency
    p1, d1, a1 = per("steward-ping", 1), per("steward-denied", 1), per("steward", 1)
    lines.append(
        f"- where the time goes at concurrency 1 (mean ms per call): HTTP + token + session {p1:.2f}; "
        f"+ tool lookup, Cedar and one durable audit record {d1 - p1:.2f}; "
        f"+ upstream round trip and the outcome record {a1 - d1:.2f}. The MCP layer itself is the `ping` row."
    )
    ping, denied, allowed = med[("steward-ping", 32)], med[("steward-denied", 32)], med[("steward", 32)]
    lines.append(
        f"- at concurrency 32 the run is CPU-bound: Steward spends {allowed[4]:.0f} µs of CPU per allowed call "
        f"({ping[4]:.0f} for `ping`, {denied[4]:.0f} for a denied call), so {allowed[0]:.0f} calls/s keep "
        f"{allowed[0] * allowed[4] / 1e6:.2f} of the machine's {os.cpu_count()} cores busy, beside wrk and the responder."
    )
except KeyError:
    pass
lines.append(f"- audit after the run: `steward audit search --operation bench:echo` found records: {'yes' if audited not in ('', '0') else 'NO'}; `steward audit verify`: {'ok' if verified == 'True' else 'FAILED'}")
print("\n".join(lines))
os.makedirs("bench/results", exist_ok=True)
open("bench/results/mcp.md", "w").write("\n".join(lines) + "\n")
PY
