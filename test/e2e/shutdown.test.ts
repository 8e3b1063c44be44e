import { connect as tcpConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// A stop lets calls in flight finish, on both transports, and closes idle connections.

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
  await s.connect.admin.setQuota({
    subject: 'slow',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 10n,
  });
});
// The test closes the server itself; the database goes afterwards.
afterAll(() => s.database.drop());

const inFlight = async (): Promise<number> =>
  (await s.server.metrics.rpcInFlight.get()).values.reduce((n, v) => n + v.value, 0);

describe('graceful stop', () => {
  it('answers the calls in flight over gRPC and Connect, then closes every connection', async () => {
    // An idle keep-alive HTTP/1.1 connection: it must be closed, not waited for.
    const idle = tcpConnect(s.port, '127.0.0.1');
    await new Promise((r) => idle.once('connect', r));
    idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => idle.once('data', r));
    const idleClosed = new Promise((r) => idle.once('close', r));

    // Two calls that will be in flight when the stop begins: the subject is held elsewhere.
    const holder = await s.database.db.connect();
    await holder.query('BEGIN');
    await holder.query("SELECT 1 FROM subjects WHERE subject = 'slow' FOR UPDATE");
    const viaConnect = s.connect.quota.consume({
      subject: 'slow',
      metric: 'api_calls',
      amount: 1n,
    });
    const viaGrpc = s.grpc.call(QuotaService, QuotaService.method.consume, {
      subject: 'slow',
      metric: 'api_calls',
      amount: 2n,
    });
    // Both calls have reached the service (not merely left the client) before the stop.
    for (let i = 0; (await inFlight()) < 2; i++) {
      if (i > 400) throw new Error('the two calls never reached the service');
      await new Promise((r) => setTimeout(r, 10));
    }

    let closed = false;
    const closing = s.server.close().then(() => (closed = true));
    await idleClosed;
    await new Promise((r) => setTimeout(r, 150));
    expect(closed).toBe(false); // still waiting for the two calls
    await holder.query('COMMIT');
    holder.release();

    const [c, g] = await Promise.all([viaConnect, viaGrpc]);
    expect(c.allowed).toBe(true);
    expect(g.allowed).toBe(true);
    await closing;
    expect(closed).toBe(true);
    s.grpc.close();
  });
});
