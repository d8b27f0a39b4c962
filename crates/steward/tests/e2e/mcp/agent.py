"""An MCP agent (Python `mcp` SDK client over Streamable HTTP) driven by the end-to-end tests.

Usage: agent.py URL TOKEN list
       agent.py URL TOKEN call NAME ARGS_JSON [META_JSON]
       agent.py URL TOKEN progress NAME ARGS_JSON [LOG_LEVEL]
       agent.py URL TOKEN prompts|resources|templates
       agent.py URL TOKEN prompt NAME ARGS_JSON [META_JSON]
       agent.py URL TOKEN read URI
       agent.py URL TOKEN complete prompt|resource NAME_OR_URI ARGUMENT_JSON [CONTEXT_JSON]
Prints one JSON object: the negotiated protocol version and the listing or the result; a
JSON-RPC error answer is printed as `error` (code, message, data). `progress` calls the
tool with a progress callback (and, given LOG_LEVEL, opts in to log messages at that level)
and prints what arrived: `progress` as [progress, total, message] and `logs` as [level, data].
"""

import json
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import PromptReference, ResourceTemplateReference


async def main() -> None:
    url, token, action = sys.argv[1], sys.argv[2], sys.argv[3]
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    progress: list = []
    logs: list = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append([value, total, message])

    async def on_log(params) -> None:
        logs.append([params.level, params.data])

    log_level = sys.argv[6] if action == "progress" and len(sys.argv) > 6 else None
    async with http:
        async with Client(
            streamable_http_client(url, http_client=http), logging_callback=on_log, log_level=log_level
        ) as client:
            out: dict = {"protocol_version": client.protocol_version}
            if action == "progress":
                result = await client.call_tool(sys.argv[4], json.loads(sys.argv[5]), progress_callback=on_progress)
                out["is_error"] = bool(result.is_error)
                out["text"] = "".join(getattr(c, "text", "") for c in result.content)
                out["progress"] = progress
                out["logs"] = logs
            elif action == "list":
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
            else:
                try:
                    await content(client, action, out)
                except MCPError as e:
                    err = e.error
                    out["error"] = {"code": err.code, "message": err.message, "data": err.data}
            print(json.dumps(out))


async def content(client, action: str, out: dict) -> None:
    if action == "prompts":
        out["prompts"] = [p.name for p in (await client.list_prompts()).prompts]
    elif action == "resources":
        out["resources"] = [r.uri for r in (await client.list_resources()).resources]
    elif action == "templates":
        result = await client.list_resource_templates()
        out["templates"] = [t.uri_template for t in result.resource_templates]
    elif action == "prompt":
        meta = json.loads(sys.argv[6]) if len(sys.argv) > 6 else None
        result = await client.get_prompt(sys.argv[4], json.loads(sys.argv[5]), meta=meta)
        out["messages"] = [getattr(m.content, "text", "") for m in result.messages]
    elif action == "complete":
        kind, target = sys.argv[4], sys.argv[5]
        if kind == "prompt":
            ref = PromptReference(type="ref/prompt", name=target)
        else:
            ref = ResourceTemplateReference(type="ref/resource", uri=target)
        context = json.loads(sys.argv[7]) if len(sys.argv) > 7 else None
        result = await client.complete(ref, json.loads(sys.argv[6]), context_arguments=context)
        out["values"] = list(result.completion.values)
    elif action == "read":
        result = await client.read_resource(sys.argv[4])
        out["contents"] = [
            {"uri": str(c.uri), "text": getattr(c, "text", None), "blob": getattr(c, "blob", None)}
            for c in result.contents
        ]


if __name__ == "__main__":
    anyio.run(main)
