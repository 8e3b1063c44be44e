import { ConnectError, Code } from '@connectrpc/connect';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { ConsumeMode, Period } from '../../src/gen/quota/v1/types_pb.js';
import { MAX_BATCH_ITEMS } from '../../src/rpc/quota-service.js';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;

beforeAll(async () => {
  s = await startTestServer();
  await s.connect.admin.setQuota({
    subject: 'meter-1',
    metric: 'tokens',
    period: Period.DAY,
    limit: 10n,
  });
});
afterAll(() => s.close());

const item = (amount: bigint, extra: Record<string, unknown> = {}) => ({
  subject: 'meter-1',
  metric: 'tokens',
  amount,
  ...extra,
});

describe('ConsumeBatch', () => {
  it('applies items in order and answers each on its own', async () => {
    const r = await s.grpc.call(QuotaService, QuotaService.method.consumeBatch, {
      items: [
        item(4n, { idempotencyKey: 'b1' }),
        item(0n), // invalid amount
        item(5n),
        item(3n), // 4 + 5 + 3 > 10: denied
        { subject: 'meter-1', metric: 'unknown', amount: 1n },
        item(1n, { mode: ConsumeMode.DRY_RUN }),
        item(4n, { idempotencyKey: 'b1' }), // a replay of the first
        item(1n),
      ],
    });
    const summary = r.results.map((x) =>
      x.result.case === 'response'
        ? `${x.result.value.allowed ? 'allowed' : 'denied'}:${x.result.value.quotas[0]?.used}${x.result.value.replayed ? ':replayed' : ''}`
        : `error:${x.result.value?.code}`,
    );
    expect(summary).toEqual([
      'allowed:4',
      `error:${status.INVALID_ARGUMENT}`,
      'allowed:9',
      'denied:9',
      `error:${status.NOT_FOUND}`,
      'allowed:9',
      'allowed:4:replayed',
      'allowed:10',
    ]);
    const bad = r.results[1]!.result;
    expect(bad.case === 'error' && bad.value.message).toMatch(/^items\[1\]: amount/);
    const q = await s.connect.quota.getQuota({ subject: 'meter-1', metric: 'tokens' });
    expect(q.quotas[0]!.used).toBe(10n);
  });

  it('is served over Connect as well', async () => {
    const r = await s.connect.quota.consumeBatch({ items: [item(1n)] });
    expect(r.results[0]!.result.case).toBe('response');
  });

  it('refuses an empty batch and one over the bound, naming the field', async () => {
    for (const items of [[], Array.from({ length: MAX_BATCH_ITEMS + 1 }, () => item(1n))]) {
      const err = await s.connect.quota.consumeBatch({ items }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.InvalidArgument);
      expect((err as ConnectError).rawMessage).toMatch(/^items: must hold 1 to 1000/);
    }
  });

  it('takes a full batch of distinct subjects and records every item', async () => {
    await s.connect.admin.setQuota({
      subject: '*',
      metric: 'rows',
      period: Period.MONTH,
      limit: 5n,
    });
    const items = Array.from({ length: MAX_BATCH_ITEMS }, (_, i) => ({
      subject: `bulk-${i % 250}`,
      metric: 'rows',
      amount: 2n,
    }));
    const r = await s.grpc.call(QuotaService, QuotaService.method.consumeBatch, { items });
    const allowed = r.results.filter((x) => x.result.case === 'response' && x.result.value.allowed);
    // Each subject fits two of its four items (2 + 2 <= 5 < 6).
    expect(allowed).toHaveLength(500);
    const n = await s.database.db.query(
      `SELECT count(*)::int AS n, sum(used)::int AS used FROM counters WHERE metric = 'rows'`,
    );
    expect(n.rows[0]).toEqual({ n: 250, used: 1000 });
  });
});
