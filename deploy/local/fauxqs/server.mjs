// Starts fauxqs, an SQS-compatible server, on loopback only.
// PORT and HOST choose where; DATA_DIR, if set, keeps queues and messages
// across restarts (SQLite).
import { startFauxqs } from 'fauxqs';

const port = Number(process.env.PORT || 9324);
const host = process.env.HOST || '127.0.0.1';
const options = { port, host, logger: false };
if (process.env.DATA_DIR) options.dataDir = process.env.DATA_DIR;

const server = await startFauxqs(options);
console.log(`fauxqs listening on http://${host}:${server.port}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    try { await server.stop(); } finally { process.exit(0); }
  });
}
