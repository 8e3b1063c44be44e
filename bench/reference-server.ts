// The references `npm run bench` measures the service against, run as a process of their own
// so their CPU is measured the same way as the service's:
//   noop   — a grpc-js server that answers Consume at once: the transport ceiling on this
//            machine (the load generator's own gRPC costs are the same for everyone);
//   insert — a grpc-js server doing one durable INSERT per call through `pg`: the floor for a
//            durable call's latency, however it is written.
// Usage: node --import tsx bench/reference-server.ts noop|insert PORT [DATABASE_URL]
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import pg from 'pg';
import { ConsumeResponseSchema } from '../src/gen/quota/v1/quota_service_pb.js';

const [mode, portArg, url] = process.argv.slice(2);
if ((mode !== 'noop' && mode !== 'insert') || !portArg) {
  throw new Error('usage: reference-server.ts noop|insert PORT [DATABASE_URL]');
}
const answer = Buffer.from(
  toBinary(ConsumeResponseSchema, create(ConsumeResponseSchema, { allowed: true, recorded: true })),
);
const pool = mode === 'insert' ? new pg.Pool({ connectionString: url, max: 16 }) : null;
if (pool) {
  await pool.query(
    'CREATE TABLE IF NOT EXISTS bench_reference_events (id bigint GENERATED ALWAYS AS IDENTITY, body bytea NOT NULL)',
  );
}
const server = new grpc.Server();
const identity = (b: Buffer): Buffer => b;
server.addService(
  {
    consume: {
      path: '/quota.v1.QuotaService/Consume',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  {
    consume: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      if (!pool) return cb(null, answer);
      pool.query('INSERT INTO bench_reference_events (body) VALUES ($1)', [call.request]).then(
        () => cb(null, answer),
        (err: Error) => cb({ code: grpc.status.UNAVAILABLE, details: err.message }),
      );
    },
  },
);
server.bindAsync(`127.0.0.1:${portArg}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write('listening\n');
});
process.on('SIGTERM', () => {
  server.forceShutdown();
  void pool?.end().finally(() => process.exit(0));
  if (!pool) process.exit(0);
});
