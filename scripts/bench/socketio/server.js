// Socket.IO 4 peer for Rotor's benchmarks (scripts/bench/run.sh starts it).
// WebSocket transport only, no compression. `POST /publish` (body = payload text) or a client
// `publish` event is emitted to every connected socket as event "msg".
'use strict';

const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.env.PORT || 8200);
const host = process.env.HOST || '127.0.0.1';

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/publish') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      io.emit('msg', Buffer.concat(chunks).toString('utf8'));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{}');
    });
    return;
  }
  if (req.url === '/health') {
    res.writeHead(200);
    res.end('{}');
    return;
  }
  // Everything else under /socket.io/ is handled by the engine; other paths 404.
  if (!req.url.startsWith('/socket.io/')) {
    res.writeHead(404);
    res.end();
  }
});

const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  pingInterval: 25000,
  pingTimeout: 20000,
  connectTimeout: 45000,
});

io.on('connection', (socket) => {
  socket.on('publish', (data) => io.emit('msg', data));
});

server.listen(port, host, () => {
  console.log(`socket.io ${require('socket.io/package.json').version} listening on ${host}:${port}`);
});

process.on('SIGTERM', () => process.exit(0));
