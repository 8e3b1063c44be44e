import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedPort } from '../support/ports.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { callJson, startService, type ServiceProcess } from '../support/process.js';

// kill -9 of the service under load, five times. Every Consume the client saw acknowledged is
// in the ledger exactly once; every one it did not see is retried with its idempotency key
// and ends up there exactly once too; afterwards the counters are exactly the ledger's fold.

let t: TestDatabase;
let port: number;
let env: Record<string, string>;
let service: ServiceProcess | null = null;

beforeAll(async () => {
  t = await createTestDatabase();
  port = await fixedPort();
  env = {
    DATABASE_URL: t.url,
    QUOTA_ADDR: `127.0.0.1:${port}`,
    QUOTA_RESET_ENABLED: 'false',
    LOG_LEVEL: 'info',
  };
});
afterAll(async () => {
  service?.child.kill('SIGKILL');
  await t.drop();
});

const consume = (key: string) =>
  callJson(port, 'quota.v1.QuotaService/Consume', {
    subject: 'crash',
    metric: 'api_calls',
    amount: '1',
    idempotencyKey: key,
  });

describe('kill -9 under load', () => {
  it('loses nothing acknowledged and doubles nothing retried, five times over', async () => {
    service = await startService(env);
    await callJson(port, 'quota.v1.QuotaAdminService/SetQuota', {
      subject: 'crash',
      metric: 'api_calls',
      period: 'PERIOD_NEVER',
      limit: '1000000000',
    });
    const acked = new Set<string>();
    const unsure = new Set<string>();
    let next = 0;
    for (let round = 0; round < 5; round++) {
      let running = true;
      // The kill comes once this round has had 40 calls acknowledged, so calls are flowing
      // (and some in flight) when it lands, however fast or slow the machine.
      const target = acked.size + 40;
      let flowing!: () => void;
      const enoughAcked = new Promise<void>((ok) => (flowing = ok));
      const workers = Array.from({ length: 16 }, async () => {
        while (running) {
          const key = `k-${next++}`;
          try {
            const r = await consume(key);
            if (r.status === 200 && r.body.recorded) acked.add(key);
            else unsure.add(key);
            if (acked.size >= target) flowing();
          } catch {
            unsure.add(key); // the connection died with the process: maybe committed, maybe not
            return;
          }
        }
      });
      await enoughAcked;
      service.child.kill('SIGKILL');
      await service.exited;
      running = false;
      await Promise.all(workers);
      service = await startService(env);
      // The client retries everything it is unsure of, with the same keys.
      for (const key of [...unsure]) {
        const r = await consume(key);
        expect(r.status).toBe(200);
        acked.add(key);
        unsure.delete(key);
      }
    }
    expect(acked.size).toBeGreaterThan(100);
    const rows = await t.db.query(
      `SELECT idempotency_key, count(*)::int AS n FROM ledger_events WHERE subject = 'crash' AND type = 'USAGE' GROUP BY 1`,
    );
    const inLedger = new Map(
      rows.rows.map((r: { idempotency_key: string; n: number }) => [r.idempotency_key, r.n]),
    );
    expect([...inLedger.values()].every((n) => n === 1)).toBe(true);
    expect([...acked].filter((k) => !inLedger.has(k))).toEqual([]);
    expect(inLedger.size).toBe(acked.size);
    const used = await t.db.query(`SELECT used FROM counters WHERE subject = 'crash'`);
    expect(used.rows[0].used).toBe(BigInt(acked.size));
    expect((await verifyProjection(t.db)).differences).toEqual([]);
  }, 180_000);
});
