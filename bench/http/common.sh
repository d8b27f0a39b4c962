# Shared by the HTTP gateway harnesses (run.sh, callgrind.sh); sourced, not run.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# The static payload every path serves: writes $1/www/item.json.
write_payload() {
  mkdir -p "$1/www" "$1/logs"
  printf '{"id":1,"status":"ok","items":[1,2,3,4,5,6,7,8,9,10],"note":"static upstream payload for proxy benchmarks"}\n' > "$1/www/item.json"
}

# Configures a running Steward (STEWARD_SERVER and STEWARD_TOKEN set) for the benchmark:
# an agent identity and key, the upstream secret, service `bench` on 127.0.0.1:$UP with
# one operation, and a policy allowing it. Usage: steward_setup BIN WORK UP
steward_setup() {
  local bin=$1 work=$2 up=$3
  cat > "$work/spec.yaml" <<SPEC
openapi: 3.0.3
info: { title: bench, version: "1" }
paths:
  /item.json:
    get: { operationId: item.get }
SPEC
  "$bin" identity create bench-agent --owner bench >/dev/null
  "$bin" identity key-create bench-agent > "$work/key" 2>/dev/null
  printf 'upstream-bench-secret' | "$bin" secret set bench-secret >/dev/null
  "$bin" service add bench --base-url "http://127.0.0.1:$up" --auth bearer --secret bench-secret \
    --allow-http --allow-private --openapi "$work/spec.yaml" >/dev/null
  mkdir -p "$work/pol"
  echo 'permit(principal, action == Action::"bench:item.get", resource);' > "$work/pol/p.cedar"
  "$bin" policy set "$work/pol" >/dev/null
}
