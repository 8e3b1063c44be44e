import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from '../../src/gen/grpc/health/v1/health_pb.js';
import { startTestServer } from '../support/server.js';
import { startProxiedServer, type ProxiedServer } from '../support/tcp-proxy.js';

// The health protocol sends a Watch message only when the status changes; the readiness
// ping runs every 2 s and must not repeat an unchanged status.

let p: ProxiedServer;
let baseUrl: string;
beforeAll(async () => {
  p = await startProxiedServer('2026-04-01T00:00:00Z');
  baseUrl = `http://127.0.0.1:${p.port}`;
  await p.server.readiness.check();
});
afterAll(() => p.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(50);
}

describe('health Watch', () => {
  it('sends on change only, over gRPC (grpc-js) and Connect (HTTP/2)', async () => {
    const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
    const client = new Client(`127.0.0.1:${p.port}`, grpc.credentials.createInsecure());
    const viaGrpc: string[] = [];
    const call = (
      client as unknown as { watch(req: object): grpc.ClientReadableStream<{ status: string }> }
    ).watch({ service: '' });
    call.on('data', (m: { status: string }) => viaGrpc.push(m.status));
    call.on('error', () => {});

    const ac = new AbortController();
    const viaConnect: string[] = [];
    const connect = createClient(Health, createConnectTransport({ baseUrl, httpVersion: '2' }));
    const done = (async () => {
      for await (const m of connect.watch(
        { service: 'quota.v1.QuotaService' },
        { signal: ac.signal },
      ))
        viaConnect.push(Status[m.status]);
    })().catch(() => {});

    try {
      // Two and a half readiness intervals with nothing changing: one message each.
      await sleep(5_000);
      expect(viaGrpc).toEqual(['SERVING']);
      expect(viaConnect).toEqual(['SERVING']);

      p.proxy.cut();
      await until(() => viaGrpc.length === 2 && viaConnect.length === 2, 8_000);
      p.proxy.restore();
      await until(() => viaGrpc.length === 3 && viaConnect.length === 3, 8_000);
      await sleep(2_500); // and nothing more while it stays up
      expect(viaGrpc).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
      expect(viaConnect).toEqual(['SERVING', 'NOT_SERVING', 'SERVING']);
    } finally {
      call.cancel();
      client.close();
      ac.abort();
      await done;
    }
  }, 40_000);

  it('answers Check over Connect and gRPC-Web, NOT_FOUND for a service it does not have', async () => {
    for (const transport of [
      createConnectTransport({ baseUrl, httpVersion: '1.1' }),
      createGrpcWebTransport({ baseUrl, httpVersion: '1.1' }),
    ]) {
      const h = createClient(Health, transport);
      expect((await h.check({ service: 'quota.v1.QuotaAdminService' })).status).toBe(
        Status.SERVING,
      );
      const err = await h.check({ service: 'nope.v1.Nothing' }).catch((e: unknown) => e);
      expect(ConnectError.from(err).code).toBe(Code.NotFound);
      const list = await h.list({});
      expect(Object.keys(list.statuses).sort()).toEqual([
        '',
        'quota.v1.QuotaAdminService',
        'quota.v1.QuotaService',
      ]);
    }
  });

  it('does not hold up a shutdown: a Watch says NOT_SERVING and ends, on either transport', async () => {
    const t = await startTestServer();
    expect(await t.server.readiness.check()).toBe(true);
    const seen: string[] = [];
    let ended = false;
    const h = createClient(
      Health,
      createConnectTransport({ baseUrl: t.baseUrl, httpVersion: '2' }),
    );
    const watching = (async () => {
      for await (const m of h.watch({ service: '' })) seen.push(Status[m.status]);
      ended = true;
    })().catch(() => {});
    const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
    const client = new Client(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure());
    const viaGrpc: string[] = [];
    const call = (
      client as unknown as { watch(req: object): grpc.ClientReadableStream<{ status: string }> }
    ).watch({ service: '' });
    call.on('data', (m: { status: string }) => viaGrpc.push(m.status));
    call.on('error', () => {});
    const grpcEnded = new Promise<void>((ok) => call.on('end', () => ok()));
    await until(() => seen.length === 1 && viaGrpc.length === 1, 5_000);
    const started = Date.now();
    await t.server.close(); // drain timeout: 10 s
    const took = Date.now() - started;
    await watching;
    await grpcEnded;
    client.close();
    t.grpc.close();
    await t.database.drop();
    expect(seen).toEqual(['SERVING', 'NOT_SERVING']);
    expect(ended).toBe(true);
    expect(viaGrpc).toEqual(['SERVING', 'NOT_SERVING']);
    expect(took).toBeLessThan(5_000);
  }, 30_000);
});
