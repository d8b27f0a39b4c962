-- wrk script: one MCP `tools/call` (JSON-RPC over Streamable HTTP POST, keep-alive) per
-- request. Per-target headers (session, token) come from `-H`. A response counts as good
-- only if it carries the tool's own result text, so denials, errors and quarantines are
-- counted as bad instead of being measured as fast successes. MCP_BODY and MCP_EXPECT
-- override the request and the expected answer text (the harness's phase breakdown).
wrk.method = "POST"
wrk.body = os.getenv("MCP_BODY")
  or '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"bench__echo","arguments":{"message":"hi"}}}'
local expect = os.getenv("MCP_EXPECT") or '"text":"bench-ok"'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-11-25"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, expect, 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("bad")
  end
  io.write(string.format("BAD %d\n", total))
end
