// An MCP agent on the TypeScript `@modelcontextprotocol/sdk` client that takes elicitation
// requests (session-based `2025-11-25`), driven by the end-to-end tests.
//
// Usage: node ts_elicit.mjs NPM_DIR URL TOKEN TOOL NAME
// Declares the `elicitation` capability, answers every elicitation by accepting it with
// `{name: NAME, check: true}`, calls TOOL with no arguments, and prints one JSON object with
// the questions it was asked and the tool's text.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [npmDir, url, token, tool, name] = process.argv.slice(2);
const sdk = (p) => import(pathToFileURL(join(npmDir, 'node_modules/@modelcontextprotocol/sdk/dist/esm', p)).href);
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');
const { ElicitRequestSchema } = await sdk('types.js');

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client(
  { name: 'steward-e2e-ts-elicit', version: '1.0.0' },
  { capabilities: { elicitation: {} } },
);
const asked = [];
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  asked.push(request.params.message ?? '');
  return { action: 'accept', content: { name, check: true } };
});
await client.connect(transport);
const result = await client.callTool({ name: tool, arguments: {} });
const out = {
  asked,
  is_error: Boolean(result.isError),
  text: (result.content ?? []).map((c) => c.text ?? '').join(''),
};
await transport.terminateSession().catch(() => {});
await client.close();
console.log(JSON.stringify(out));
