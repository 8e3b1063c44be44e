import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { create } from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  ConsumeRequestSchema,
  createQuotaClient,
  Period,
} from '../../src/client/index.js';
import { startProxiedServer, type ProxiedServer } from '../support/tcp-proxy.js';

let p: ProxiedServer;
let url: string;

beforeAll(async () => {
  p = await startProxiedServer('2026-06-01T10:00:00Z');
  url = `http://127.0.0.1:${p.port}`;
  await createQuotaClient(url).admin.setQuota({
    subject: 'acme',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 100n,
  });
});
afterAll(() => p.close());

const usageEvents = async () =>
  (
    await p.database.db.query(
      `SELECT idempotency_key FROM ledger_events WHERE type = 'USAGE' ORDER BY sequence`,
    )
  ).rows as {
    idempotency_key: string | null;
  }[];

describe('createQuotaClient', () => {
  for (const transport of ['grpc', 'connect'] as const) {
    it(`calls the service over ${transport}`, async () => {
      const c = createQuotaClient(url, { transport });
      const r = await c.quota.consume({ subject: 'acme', metric: 'api_calls', amount: 1n });
      expect(r.allowed).toBe(true);
      const q = await c.quota.getQuota({ subject: 'acme', metric: 'api_calls' });
      expect(q.quotas[0]!.limit).toBe(100n);
    });
  }

  it('gives every Consume an idempotency key, so a retry after a lost answer is not counted twice', async () => {
    const before = (await usageEvents()).length;
    const c = createQuotaClient(url, { retries: 6, retryDelayMs: 100 });
    p.proxy.cut();
    // The database comes back once the first attempt has failed on it, so the call is retried.
    const refusedBefore = p.proxy.refused;
    void p.proxy.waitForRefused(refusedBefore + 1).then(() => p.proxy.restore());
    const r = await c.quota.consume({ subject: 'acme', metric: 'api_calls', amount: 3n });
    expect(p.proxy.refused).toBeGreaterThan(refusedBefore);
    expect(r.allowed).toBe(true);
    const after = await usageEvents();
    expect(after).toHaveLength(before + 1);
    expect(after.at(-1)!.idempotency_key).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("leaves the caller's message alone, so reusing it charges again", async () => {
    const before = (await usageEvents()).length;
    const c = createQuotaClient(url);
    const req = create(ConsumeRequestSchema, { subject: 'acme', metric: 'api_calls', amount: 1n });
    const a = await c.quota.consume(req);
    const b = await c.quota.consume(req);
    expect(req.idempotencyKey).toBe('');
    expect([a.replayed, b.replayed]).toEqual([false, false]);
    const after = await usageEvents();
    expect(after).toHaveLength(before + 2);
    expect(after.at(-1)!.idempotency_key).not.toBe(after.at(-2)!.idempotency_key);
  });

  it("gives up after its retries with the service's UNAVAILABLE", async () => {
    const c = createQuotaClient(url, { retries: 1, retryDelayMs: 10 });
    p.proxy.cut();
    try {
      const err = await c.quota
        .consume({ subject: 'acme', metric: 'api_calls', amount: 1n })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unavailable);
    } finally {
      p.proxy.restore();
    }
  });

  it('never retries a call that is not safe to repeat', async () => {
    const c = createQuotaClient(url, { retries: 5, retryDelayMs: 1 });
    // How many ResetQuota calls the service has answered (counted by the service itself).
    const resets = async () =>
      (await p.server.metrics.rpcRequests.get()).values
        .filter((v) => v.labels.method === 'quota.v1.QuotaAdminService/ResetQuota')
        .reduce((sum, v) => sum + v.value, 0);
    const before = await resets();
    p.proxy.cut();
    try {
      const err = await c.admin
        .resetQuota({ subject: 'acme', reason: 'x' })
        .catch((e: unknown) => e);
      expect((err as ConnectError).code).toBe(Code.Unavailable);
      // One attempt reached the service, not six.
      expect((await resets()) - before).toBe(1);
    } finally {
      p.proxy.restore();
    }
  });

  it('applies its deadline', async () => {
    const c = createQuotaClient(url, { timeoutMs: 1, retries: 0 });
    const err = await c.quota.getQuota({ subject: 'acme' }).catch((e: unknown) => e);
    expect((err as ConnectError).code).toBe(Code.DeadlineExceeded);
  });
});
