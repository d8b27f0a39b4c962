"""An MCP agent (Python `mcp` SDK client over Streamable HTTP) driven by the end-to-end tests.

Usage: agent.py URL TOKEN list
       agent.py URL TOKEN call NAME ARGS_JSON [META_JSON]
Prints one JSON object: the negotiated protocol version and the listing or the call result.
"""

import json
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main() -> None:
    url, token, action = sys.argv[1], sys.argv[2], sys.argv[3]
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    async with http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            out: dict = {"protocol_version": client.protocol_version}
            if action == "list":
                result = await client.list_tools()
                out["tools"] = [t.name for t in result.tools]
                out["ttl_ms"] = getattr(result, "ttl_ms", None)
            elif action == "call":
                name = sys.argv[4]
                args = json.loads(sys.argv[5])
                meta = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None
                result = await client.call_tool(name, args, meta=meta)
                out["is_error"] = bool(result.is_error)
                out["text"] = "".join(getattr(c, "text", "") for c in result.content)
                out["meta"] = result.meta or {}
            print(json.dumps(out))


if __name__ == "__main__":
    anyio.run(main)
