// Preload (`node --require`) that forces every listening socket onto 127.0.0.1, for MCP
// servers that bind all interfaces (server-everything's Streamable HTTP transport does).
'use strict';
const net = require('net');
const original = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] === 'string') {
      args[1] = '127.0.0.1';
    } else {
      args.splice(1, 0, '127.0.0.1');
    }
  } else if (first && typeof first === 'object' && !Array.isArray(first) && 'port' in first) {
    args[0] = { ...first, host: '127.0.0.1' };
  } else if (first === undefined || typeof first === 'function') {
    args.unshift(0, '127.0.0.1');
  }
  return original.apply(this, args);
};
