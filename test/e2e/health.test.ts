import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import type { QuotaServer } from '../../src/server.js';
import { GrpcCaller } from '../support/server.js';
import { startProxiedServer, type ProxiedServer, type TcpProxy } from '../support/tcp-proxy.js';

// Health that means something: the database behind a proxy the test can cut.

let p: ProxiedServer;
let proxy: TcpProxy;
let server: QuotaServer;
let port: number;
let caller: GrpcCaller;
let health: grpc.Client & {
  check(req: object, cb: (err: grpc.ServiceError | null, res: { status: string }) => void): void;
};

const readyz = async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
const healthz = async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
const grpcHealth = (service = '') =>
  new Promise<string>((ok, fail) =>
    health.check({ service }, (err, res) => (err ? fail(err) : ok(res.status))),
  );
const metric = async (name: string) => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(
    text
      .split('\n')
      .find((l) => l.startsWith(name + ' '))
      ?.split(' ')[1],
  );
};

beforeAll(async () => {
  p = await startProxiedServer('2026-04-01T00:00:00Z');
  ({ proxy, server, port } = p);
  caller = new GrpcCaller(`127.0.0.1:${port}`);
  const Health = grpc.makeGenericClientConstructor(healthService, 'Health');
  health = new Health(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  ) as unknown as typeof health;
  await server.readiness.check();
});
afterAll(async () => {
  health.close();
  caller.close();
  await p.close();
});

describe('health', () => {
  it('is SERVING and ready while the database answers', async () => {
    expect(await readyz()).toBe(200);
    expect(await grpcHealth()).toBe('SERVING');
    expect(await grpcHealth('quota.v1.QuotaService')).toBe('SERVING');
    expect(await metric('quota_db_up')).toBe(1);
  });

  it('reports NOT_SERVING while the database is unreachable, answers UNAVAILABLE, and recovers by itself', async () => {
    const { QuotaAdminService } = await import('../../src/gen/quota/v1/quota_admin_service_pb.js');
    await caller.call(QuotaAdminService, QuotaAdminService.method.setQuota, {
      subject: 'a',
      metric: 'm',
      period: Period.DAY,
      limit: 5n,
    });
    proxy.cut();
    await new Promise((r) => setTimeout(r, 600)); // readiness pings are shared for 0.5 s
    expect(await readyz()).toBe(503);
    expect(await healthz()).toBe(200); // the process is alive
    expect(await grpcHealth()).toBe('NOT_SERVING');
    expect(await metric('quota_db_up')).toBe(0);
    await expect(
      caller.call(QuotaService, QuotaService.method.consume, {
        subject: 'a',
        metric: 'm',
        amount: 1n,
      }),
    ).rejects.toMatchObject({
      code: grpc.status.UNAVAILABLE,
      details: expect.stringMatching(/unreachable/),
    });

    proxy.restore();
    const back = Date.now();
    let ready = false;
    while (!ready && Date.now() - back < 5_000) {
      await new Promise((r) => setTimeout(r, 100));
      ready = (await grpcHealth()) === 'SERVING';
    }
    expect(ready).toBe(true);
    expect(await readyz()).toBe(200);
    const r = await caller.call(QuotaService, QuotaService.method.consume, {
      subject: 'a',
      metric: 'm',
      amount: 1n,
    });
    expect(r.allowed).toBe(true);
  });

  it('reports NOT_SERVING once draining', async () => {
    server.readiness.drain();
    expect(await grpcHealth()).toBe('NOT_SERVING');
    expect(await readyz()).toBe(503);
  });
});
