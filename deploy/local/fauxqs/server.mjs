// Starts fauxqs, an SQS-compatible server. PORT chooses the port; fauxqs 2.4.1
// always listens on all interfaces. DATA_DIR, if set, keeps queues and messages
// across restarts (SQLite), but see deploy/local/stack.sh: in fauxqs 2.4.1 that
// mode loses messages released with visibility 0, so the stack does not use it.
import { startFauxqs } from 'fauxqs';

const port = Number(process.env.PORT || 9324);
const options = { port, logger: false };
if (process.env.DATA_DIR) options.dataDir = process.env.DATA_DIR;

const server = await startFauxqs(options);
console.log(`fauxqs listening on port ${server.port}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    try { await server.stop(); } finally { process.exit(0); }
  });
}
