import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import { createTestDatabase, defineQuota, TestClock, type TestDatabase } from '../support/db.js';

// The ledger is the truth: a counter changed behind the service's back is found, with the
// events that made the right value, and rebuilt from the ledger.

let t: TestDatabase;
let deps: LedgerDeps;

beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock: new TestClock(new Date('2026-07-01T09:00:00Z')) };
  for (const subject of ['good', 'tampered']) {
    await defineQuota(deps, { subject, period: 'DAY', limit: 100n });
    for (const amount of [3n, 4n]) {
      await consume(
        deps,
        {
          subject,
          metric: 'api_calls',
          amount,
          idempotencyKey: null,
          mode: 'ENFORCE',
          attributes: {},
        },
        't',
      );
    }
  }
});
afterAll(() => t.drop());

describe('verify and rebuild', () => {
  it('finds a corrupted counter, with the positions of the events involved, and a stray one', async () => {
    expect((await verifyProjection(t.db)).differences).toEqual([]);
    // Tampering, as only someone with the owner's rights could.
    await t.owner.query("UPDATE counters SET used = used + 50 WHERE subject = 'tampered'");
    await t.owner.query(
      `INSERT INTO counters (subject, metric, period, used, period_start, period_end, last_reset_at, last_sequence)
       VALUES ('tampered', 'ghost', 'DAY', 9, '2026-07-01T00:00:00Z', '2026-07-02T00:00:00Z', NULL, 0)`,
    );
    const r = await verifyProjection(t.db);
    expect(r.subjectsChecked).toBe(2);
    expect(
      r.differences.map((d) => [
        d.subject,
        d.metric,
        d.ledger?.used ?? null,
        d.projection?.used ?? null,
      ]),
    ).toEqual([
      ['tampered', 'api_calls', 7n, 57n],
      ['tampered', 'ghost', null, 9n],
    ]);
    const usage = await t.db.query(
      "SELECT position FROM ledger_events WHERE subject = 'tampered' AND type = 'USAGE' ORDER BY position",
    );
    expect(r.differences[0]!.positions).toEqual(
      usage.rows.map((x: { position: bigint }) => x.position),
    );
    expect(r.repaired).toBe(0);
  });

  it('rebuilds the counters from the ledger, after which everything agrees', async () => {
    const r = await verifyProjection(t.db, { subject: 'tampered', repair: true });
    expect(r).toMatchObject({ subjectsChecked: 1, repaired: 2 });
    expect((await verifyProjection(t.db)).differences).toEqual([]);
    const c = await t.db.query("SELECT metric, used FROM counters WHERE subject = 'tampered'");
    expect(c.rows).toEqual([{ metric: 'api_calls', used: 7n }]);
  });
});
