// The server side of bench/shell.ts, in plain JavaScript on the compiled service (dist/, or
// another build's directory named as the second argument) so that no TypeScript loader runs
// in the measured process. Modes:
//   noop  — a grpc-js server whose Consume answers at once (the transport ceiling);
//   raw   — the same answer from node:http2 alone, without grpc-js;
//   shell — the service as src/server.ts builds it, with every Consume answered by the group
//           committer at once with a fixed result: transports, decoding, validation, metrics
//           and the answer's encoding, without the database.
// Reports its port, then its CPU usage whenever asked, over the IPC channel.
import { Buffer } from 'node:buffer';
import process from 'node:process';
import * as grpc from '@grpc/grpc-js';

const [mode, build = 'dist'] = process.argv.slice(2);
const CONSUME = '/quota.v1.QuotaService/Consume';
let port;
if (mode === 'noop') {
  const answer = Buffer.from([8, 1, 40, 1]); // allowed: true, recorded: true
  const server = new grpc.Server();
  const id = (b) => b;
  server.register(CONSUME, (_call, cb) => cb(null, answer), id, id, 'unary');
  port = await new Promise((ok, fail) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? fail(err) : ok(p),
    ),
  );
} else if (mode === 'raw') {
  // The same answer from Node's HTTP/2 alone, no gRPC library: what a unary gRPC call costs
  // below grpc-js (a framed message each way, the status in trailers).
  const http2 = await import('node:http2');
  const framed = Buffer.from([0, 0, 0, 0, 4, 8, 1, 40, 1]);
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.on('data', () => {});
    stream.on('end', () => {
      stream.respond(
        { ':status': 200, 'content-type': 'application/grpc+proto' },
        { waitForTrailers: true },
      );
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(framed);
    });
  });
  port = await new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server.address().port)));
} else if (mode === 'shell') {
  const { ConsumeGroupCommitter } = await import(`../${build}/batching/group-commit.js`);
  const { createPool } = await import(`../${build}/ledger/db.js`);
  const { createQuotaServer } = await import(`../${build}/server.js`);
  // What a Consume of a subject under a default daily quota answers.
  const result = {
    allowed: true,
    recorded: true,
    replayed: false,
    sequence: 12n,
    retryAt: null,
    quotas: [
      {
        subject: 'tenant-1',
        metric: 'requests',
        period: 'DAY',
        timeZone: 'UTC',
        anchorDay: 0,
        limit: 10n ** 15n,
        used: 12n,
        reserved: 0n,
        remaining: 10n ** 15n - 12n,
        periodStart: new Date('2026-12-01T00:00:00Z'),
        periodEnd: new Date('2026-12-02T00:00:00Z'),
        lastResetAt: null,
        isDefault: true,
        exceeded: false,
      },
    ],
  };
  ConsumeGroupCommitter.prototype.submit = () => Promise.resolve(result);
  // The server needs a pool to be built (readiness, metrics); no Consume touches it.
  const db = createPool({ connectionString: process.env.DATABASE_URL, max: 2 });
  const server = createQuotaServer({ db, addr: { host: '127.0.0.1', port: 0 } });
  port = (await server.listen()).addr.port;
} else {
  throw new Error(`unknown mode ${mode}`);
}
process.send({ port });
process.on('message', (m) =>
  m === 'exit' ? process.exit(0) : process.send({ cpu: process.cpuUsage() }),
);
