// An MCP agent on the TypeScript `@modelcontextprotocol/sdk` client (Streamable HTTP,
// session-based `2025-11-25`), driven by the end-to-end tests.
//
// Usage: node ts_agent.mjs NPM_DIR URL TOKEN ALLOWED_TOOL ARGS_JSON DENIED_TOOL
// Connects once, lists tools, calls ALLOWED_TOOL with ARGS_JSON and DENIED_TOOL with no
// arguments, and prints one JSON object with the negotiated version and the results.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [npmDir, url, token, allowed, argsJson, denied] = process.argv.slice(2);
const sdk = (p) => import(pathToFileURL(join(npmDir, 'node_modules/@modelcontextprotocol/sdk/dist/esm', p)).href);
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: 'steward-e2e-ts', version: '1.0.0' });
await client.connect(transport);

const text = (r) => (r.content ?? []).map((c) => c.text ?? '').join('');
const listing = await client.listTools();
const ok = await client.callTool({ name: allowed, arguments: JSON.parse(argsJson) });
const no = await client.callTool({ name: denied, arguments: {} });
const out = {
  protocol_version: transport.protocolVersion ?? null,
  session: Boolean(transport.sessionId),
  tools: listing.tools.map((t) => t.name),
  allowed: { is_error: Boolean(ok.isError), text: text(ok) },
  denied: { is_error: Boolean(no.isError), text: text(no), meta: no._meta ?? {} },
};
await transport.terminateSession().catch(() => {});
await client.close();
console.log(JSON.stringify(out));
