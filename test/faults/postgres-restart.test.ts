import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPool } from '../../src/ledger/db.js';
import { startEmbedded, type EmbeddedDatabase } from '../../src/database/embedded.js';
import { fixedPort } from '../support/ports.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import { callJson, startService, type ServiceProcess } from '../support/process.js';

// PostgreSQL itself stopped and restarted under load: callers get UNAVAILABLE while it is
// down, the service serves again within 5 s of its return without a restart, and nothing
// acknowledged is lost or doubled.

let dir: string;
let database: EmbeddedDatabase | null = null;
let service: ServiceProcess | null = null;

afterAll(async () => {
  service?.child.kill('SIGKILL');
  await database?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('PostgreSQL restarted under load', () => {
  it('answers UNAVAILABLE while it is down and recovers by itself within 5 s', async () => {
    dir = await mkdtemp(join(tmpdir(), 'quota-pg-restart-'));
    await chmod(dir, 0o755);
    const pgPort = await fixedPort();
    database = await startEmbedded(dir, { port: pgPort });
    const port = await fixedPort();
    service = await startService({
      DATABASE_URL: database.url,
      QUOTA_ADDR: `127.0.0.1:${port}`,
      QUOTA_RESET_ENABLED: 'false',
      LOG_LEVEL: 'info',
    });
    const consume = (key: string) =>
      callJson(port, 'quota.v1.QuotaService/Consume', {
        subject: 'pg',
        metric: 'api_calls',
        amount: '1',
        idempotencyKey: key,
      });
    await callJson(port, 'quota.v1.QuotaAdminService/SetQuota', {
      subject: 'pg',
      metric: 'api_calls',
      period: 'PERIOD_NEVER',
      limit: '1000000000',
    });

    const acked = new Set<string>();
    const unsure = new Set<string>();
    const codes = new Set<string>();
    let next = 0;
    let running = true;
    const workers = Array.from({ length: 8 }, async () => {
      while (running) {
        const key = `k-${next++}`;
        const r = await consume(key).catch(() => null);
        if (r?.status === 200 && r.body.recorded) acked.add(key);
        else {
          unsure.add(key);
          if (r) codes.add(String(r.body.code));
          await new Promise((res) => setTimeout(res, 20));
        }
      }
    });
    // Stop the database once calls are flowing, and bring it back once callers have been told
    // UNAVAILABLE: waiting for those, not for a time, decides that both paths are taken.
    const until = async (what: string, done: () => boolean): Promise<void> => {
      for (const deadline = Date.now() + 20_000; !done();) {
        if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await until('20 calls are acknowledged', () => acked.size >= 20);
    await database.stop();
    await until('a caller is told UNAVAILABLE', () => codes.has('unavailable'));
    expect(service.child.exitCode, service.output().slice(-1500)).toBeNull(); // still up
    expect(codes).toContain('unavailable');
    database = await startEmbedded(dir, { port: pgPort });
    const back = Date.now();
    let served = false;
    while (!served && Date.now() - back < 5_000) {
      const r = await consume(`probe-${Date.now()}`).catch(() => null);
      served = r?.status === 200;
      if (!served) await new Promise((res) => setTimeout(res, 100));
    }
    expect(served).toBe(true);
    running = false;
    await Promise.all(workers);
    for (const key of [...unsure]) {
      const r = await consume(key);
      expect(r.status).toBe(200);
      acked.add(key);
    }

    const db = createPool({ connectionString: database.url, max: 2 });
    try {
      const rows = await db.query<{ idempotency_key: string; n: number }>(
        `SELECT idempotency_key, count(*)::int AS n FROM ledger_events WHERE subject = 'pg' AND type = 'USAGE' AND idempotency_key LIKE 'k-%' GROUP BY 1`,
      );
      expect(rows.rows.every((r) => r.n === 1)).toBe(true);
      expect(new Set(rows.rows.map((r) => r.idempotency_key))).toEqual(acked);
      expect((await verifyProjection(db)).differences).toEqual([]);
    } finally {
      await db.end();
    }
  }, 120_000);
});
