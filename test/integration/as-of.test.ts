import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaError } from '../../src/domain/errors.js';
import { foldCounters } from '../../src/domain/fold.js';
import type { PeriodKind } from '../../src/domain/period.js';
import { countersAsOf, getQuotaAsOf } from '../../src/ledger/as-of.js';
import { EVENT_COLUMNS, eventFromRow, type EventRow } from '../../src/ledger/codec.js';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { refund } from '../../src/ledger/refund.js';
import { resetSubject } from '../../src/ledger/reset.js';
import {
  consumeCommand,
  createTestDatabase,
  defineQuota,
  TestClock,
  type TestDatabase,
} from '../support/db.js';

// GetQuota with as_of is answered by PostgreSQL's aggregation, not by folding the subject's
// whole history in memory. It must still be exactly the fold, at any moment of the history.

let t: TestDatabase;
let deps: LedgerDeps;
const clock = new TestClock(new Date('2026-01-01T00:00:00Z'));
beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());

type Step =
  | { k: 'use'; amount: number; key: number | null }
  | { k: 'refund'; amount: number; usageKey: number | null }
  | { k: 'reset'; period: PeriodKind | null }
  | { k: 'advance'; hours: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant('use' as const),
      amount: fc.integer({ min: 1, max: 30 }),
      key: fc.option(fc.integer({ min: 0, max: 4 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('refund' as const),
      amount: fc.integer({ min: 1, max: 20 }),
      usageKey: fc.option(fc.integer({ min: 0, max: 4 })),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('reset' as const),
      period: fc.constantFrom<PeriodKind | null>('DAY', 'WEEK', 'NEVER', null),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('advance' as const),
      hours: fc.integer({ min: 1, max: 60 }),
    }),
  },
);

let run = 0;
async function apply(subject: string, s: Step): Promise<void> {
  const metric = 'api_calls';
  switch (s.k) {
    case 'use':
      await consume(
        deps,
        consumeCommand(subject, {
          amount: BigInt(s.amount),
          mode: 'RECORD',
          idempotencyKey: s.key === null ? null : `k${s.key}`,
        }),
        't',
      );
      return;
    case 'refund':
      await refund(
        deps,
        {
          subject,
          metric,
          amount: BigInt(s.amount),
          idempotencyKey: null,
          usageIdempotencyKey: s.usageKey === null ? null : `k${s.usageKey}`,
          reason: null,
        },
        't',
      );
      return;
    case 'reset':
      await resetSubject(deps, subject, { subject, metric, period: s.period, reason: null }, 't');
      return;
    case 'advance':
      clock.advance(s.hours * 3_600_000);
  }
}

async function events(subject: string) {
  const rows = await t.db.query<EventRow>(
    `SELECT ${EVENT_COLUMNS} FROM ledger_events WHERE subject = $1 ORDER BY sequence`,
    [subject],
  );
  return rows.rows.map(eventFromRow);
}

describe('GetQuota as_of', () => {
  it('equals the fold of the events recorded by then, at every moment of random histories', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 5, maxLength: 30 }), async (steps) => {
        const subject = `h${++run}`;
        clock.set('2026-01-01T10:00:00Z');
        for (const period of ['DAY', 'WEEK', 'NEVER'] as const)
          await defineQuota(deps, { subject, period, limit: 100n });
        const moments: Date[] = [clock.now()];
        for (const s of steps) {
          await apply(subject, s).catch((err: unknown) => {
            if (!(err instanceof QuotaError)) throw err; // a refund too large, a reused key
          });
          moments.push(clock.now());
        }
        const all = await events(subject);
        for (const at of moments) {
          const expected = foldCounters(all.filter((e) => e.recordedAt <= at));
          expect(await countersAsOf(deps, subject, null, at)).toEqual(expected);
        }
      }),
      { numRuns: 25, seed: 20261130 },
    );
  }, 120_000);

  it('answers for a subject with 1,000,000 events within the statement timeout, in bounded memory', async () => {
    clock.set('2026-02-01T00:00:00Z');
    await defineQuota(deps, { subject: 'huge', period: 'NEVER', limit: 10_000_000n });
    // One set-based insert: a million usages, one a second, all in the one lifetime period
    // (the worst case: no reset bounds what must be summed).
    const bulk = await t.owner.connect();
    try {
      await bulk.query('SET statement_timeout = 0');
      await bulk.query(
        `INSERT INTO ledger_events (subject, sequence, type, metric, amount, actor, recorded_at, data)
         SELECT 'huge', 1 + g, 'USAGE', 'api_calls', 1, 'bulk',
                timestamptz '2026-02-01T00:00:00Z' + g * interval '1 second',
                '{"effects":[{"period":"NEVER","periodStart":"2026-02-01T00:00:00.000Z","periodEnd":null,"delta":"1"}]}'
           FROM generate_series(1, 1000000) g`,
      );
    } finally {
      bulk.release();
    }
    const heapBefore = process.memoryUsage().heapUsed;
    const t0 = Date.now();
    const at = new Date('2026-02-08T00:00:00Z'); // 604,800 of the million
    const views = await getQuotaAsOf(deps, 'huge', 'api_calls', at);
    const ms = Date.now() - t0;
    const never = views.find((v) => v.period === 'NEVER')!;
    expect(never.used).toBe(604_800n);
    expect(ms).toBeLessThan(10_000); // QUOTA_STATEMENT_TIMEOUT_MS's default
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(32 * 1024 * 1024);
  }, 180_000);
});
