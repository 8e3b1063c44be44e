import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { createPool, type Db } from '../../src/ledger/db.js';
import { resetSubject } from '../../src/ledger/reset.js';
import { sweep } from '../../src/ledger/reset-sweep.js';
import {
  createTestDatabase,
  defineQuota,
  TestClock,
  type TestDatabase,
  expectProjectionClean,
} from '../support/db.js';

// The README's production set-up, done for real: the service runs as a role that may only
// read and append to the ledger, so even a bug in the service cannot rewrite history.

let t: TestDatabase;
let app: Db;
const role = `quota_app_${randomBytes(4).toString('hex')}`;
const password = randomBytes(12).toString('hex');

beforeAll(async () => {
  t = await createTestDatabase();
  const sql = (await readFile(new URL('../../ops/db/app-role.sql', import.meta.url), 'utf8'))
    .replaceAll('quota_app', role)
    .replace("'change-me'", `'${password}'`);
  await t.db.query(sql);
  const url = new URL(t.url);
  url.username = role;
  url.password = password;
  app = createPool({ connectionString: url.toString(), max: 4 });
});
afterAll(async () => {
  await app.end();
  await t.drop();
  const c = new pg.Client({ connectionString: t.url.replace(/\/[^/]+$/, '/postgres') });
  await c.connect();
  await c.query(`DROP ROLE IF EXISTS ${role}`);
  await c.end();
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
    await expect(t.db.query('DELETE FROM ledger_events')).rejects.toThrow(/append-only/);
  });
});
