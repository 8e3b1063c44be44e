import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { newEvent } from '../../src/domain/events.js';
import { append } from '../../src/ledger/append.js';
import { consume } from '../../src/ledger/consume.js';
import { createPool, type Db } from '../../src/ledger/db.js';
import { resetSubject } from '../../src/ledger/reset.js';
import { sweep } from '../../src/ledger/reset-sweep.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import {
  consumeCommand,
  createAppRole,
  createTestDatabase,
  defineQuota,
  dropRole,
  expectProjectionClean,
  TestClock,
  type TestDatabase,
} from '../support/db.js';

// The production set-up of docs/security.md, done for real: the service runs as a role that may
// only read and append to the ledger, so even a bug in the service cannot rewrite history.

let t: TestDatabase;
let app: Db;
let role: string;

beforeAll(async () => {
  t = await createTestDatabase();
  const made = await createAppRole(t.ownerUrl, t.owner);
  role = made.role;
  app = createPool({ connectionString: made.url, max: 4 });
});
afterAll(async () => {
  await app.end();
  await t.drop();
  await dropRole(role);
});
// Whatever a test wrote, its projection must equal the fold of its ledger.
afterEach(async () => {
  await expectProjectionClean(t.db);
});

describe('running as the least-privileged application role', () => {
  it('serves every write path', async () => {
    const clock = new TestClock(new Date('2026-05-01T10:00:00Z'));
    const deps: LedgerDeps = { db: app, clock };
    await defineQuota(deps, { subject: 'acme', period: 'DAY', limit: 5n });
    const r = await consume(
      deps,
      {
        subject: 'acme',
        metric: 'api_calls',
        amount: 2n,
        idempotencyKey: 'k',
        mode: 'ENFORCE',
        attributes: {},
      },
      'svc',
    );
    expect(r.allowed).toBe(true);
    await resetSubject(
      deps,
      'acme',
      { subject: 'acme', metric: null, period: null, reason: 'test' },
      'ops',
    );
    clock.set('2026-05-02T10:00:00Z');
    expect(
      await sweep(app, {
        now: clock.now(),
        batchSize: 10,
        runId: '00000000-0000-4000-8000-000000000009',
      }),
    ).toEqual({ rolled: 1, complete: true });
  });

  it('is refused any change to the ledger by the database itself', async () => {
    await expect(
      app.query("UPDATE ledger_events SET amount = 100 WHERE type = 'USAGE'"),
    ).rejects.toThrow(/permission denied/);
    await expect(app.query('DELETE FROM ledger_events')).rejects.toThrow(/permission denied/);
    await expect(app.query('TRUNCATE ledger_events')).rejects.toThrow(/permission denied/);
    await expect(app.query('DROP TABLE ledger_events')).rejects.toThrow(/must be owner/);
    // And the owner is stopped by the trigger.
    await expect(t.owner.query('DELETE FROM ledger_events')).rejects.toThrow(/append-only/);
  });

  it('appends only through quota_append, which refuses a stale expected sequence', async () => {
    const refused = [
      `INSERT INTO ledger_events (subject, sequence, type, actor, recorded_at)
       VALUES ('intruder', 1, 'USAGE', 'x', now())`,
      `INSERT INTO counters (subject, metric, period, used, period_start, last_sequence)
       VALUES ('intruder', 'api_calls', 'DAY', 0, now(), 1)`,
      `INSERT INTO quotas (subject, metric, period, quota_limit, time_zone, updated_at)
       VALUES ('intruder', 'api_calls', 'DAY', 1000000, 'UTC', now())`,
      `DELETE FROM quotas`,
      `INSERT INTO reservations (subject, reservation_id, metric, amount, expires_at, sequence, holds)
       VALUES ('intruder', 'r', 'api_calls', 1, now(), 1, '[]')`,
    ];
    for (const sql of refused) await expect(app.query(sql)).rejects.toThrow(/permission denied/);
    // 'acme' has events: an append that expects it to have none is refused, whoever calls.
    const usage = {
      ...newEvent({ type: 'USAGE', subject: 'acme', actor: 'x', recordedAt: new Date() }),
      sequence: 1n,
    };
    await expect(
      append(app, [
        { subject: 'acme', events: [usage], counters: [], version: null, lastSequence: 0n },
      ]),
    ).rejects.toThrow(/concurrent change/);
  });

  // A brand-new subject whose first call records nothing: the row made to lock it must go
  // again, and the role may not DELETE from subjects.
  it('answers a first call on a new subject that records nothing', async () => {
    const clock = new TestClock(new Date('2026-05-01T10:00:00Z'));
    const deps: LedgerDeps = { db: app, clock };
    // Only the default quota exists, so these subjects have no row of their own yet.
    await defineQuota(deps, { subject: '*', metric: 'images', period: 'DAY', limit: 1n });
    const img = { metric: 'images' };
    const denied = await consume(deps, consumeCommand('new-a', { ...img, amount: 2n }), 'svc');
    expect(denied.allowed).toBe(false);
    const dry = await consume(deps, consumeCommand('new-b', { ...img, mode: 'DRY_RUN' }), 'svc');
    expect(dry.allowed).toBe(true);
    await expect(
      consume(deps, consumeCommand('new-c', { metric: 'videos' }), 'svc'),
    ).rejects.toThrow(/no quota/i);
    const rows = await t.owner.query(
      "SELECT subject FROM subjects WHERE subject IN ('new-a', 'new-b', 'new-c')",
    );
    expect(rows.rows).toEqual([]);
    // The first call that records something does create the row.
    expect((await consume(deps, consumeCommand('new-a', img), 'svc')).allowed).toBe(true);
    expect((await t.owner.query("SELECT 1 FROM subjects WHERE subject = 'new-a'")).rowCount).toBe(
      1,
    );
  });

  it('repairs a counter the ledger does not know (rebuild)', async () => {
    await t.owner.query(
      `INSERT INTO counters (subject, metric, period, used, period_start, period_end, last_sequence)
       VALUES ('stray', 'api_calls', 'DAY', 3, '2026-05-01Z', '2026-05-02Z', 0)`,
    );
    const result = await verifyProjection(app, { subject: 'stray', repair: true });
    expect(result.repaired).toBe(1);
    const left = await t.owner.query("SELECT 1 FROM counters WHERE subject = 'stray'");
    expect(left.rowCount).toBe(0);
  });
});
