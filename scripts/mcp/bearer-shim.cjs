// A loopback HTTP shim that adds `Authorization: Bearer $STEWARD_TOKEN` to every request and
// relays it, streaming both ways (SSE included), to the Steward `/mcp` endpoint. MCP test
// clients that cannot send a bearer token (the conformance suite) reach Steward through it.
//
// Host and Origin headers that name the shim itself are rewritten to name the target, so
// Steward's DNS-rebinding protection sees what it would see from a direct client; any other
// Host or Origin passes through unchanged (and must be refused by Steward).
//
// Usage: STEWARD_TOKEN=... node bearer-shim.cjs <listen-port> <target-url>
'use strict';
const http = require('http');

const [listenPort, target] = process.argv.slice(2);
const token = process.env.STEWARD_TOKEN;
if (!listenPort || !target || !token) {
  console.error('usage: STEWARD_TOKEN=... node bearer-shim.cjs <listen-port> <target-url>');
  process.exit(2);
}
const up = new URL(target);
const selfHosts = new Set([`127.0.0.1:${listenPort}`, `localhost:${listenPort}`, `[::1]:${listenPort}`]);
const agent = new http.Agent({ keepAlive: true });

http
  .createServer((req, res) => {
    const headers = { ...req.headers, authorization: `Bearer ${token}` };
    if (headers.host && selfHosts.has(headers.host.toLowerCase())) {
      headers.host = up.host;
    }
    if (headers.origin) {
      try {
        const o = new URL(headers.origin);
        if (selfHosts.has(o.host.toLowerCase())) {
          headers.origin = `${up.protocol}//${up.host}`;
        }
      } catch {
        // malformed Origin: passed through for Steward to refuse
      }
    }
    const out = http.request(
      {
        host: up.hostname,
        port: up.port,
        method: req.method,
        path: up.pathname + (req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : ''),
        headers,
        agent,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode, upRes.headers);
        upRes.pipe(res);
      },
    );
    out.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`shim: ${e.message}`);
    });
    res.on('close', () => {
      if (!res.writableFinished) out.destroy();
    });
    req.pipe(out);
  })
  .listen(Number(listenPort), '127.0.0.1');
