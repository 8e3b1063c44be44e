import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProposedQuota } from '../../src/domain/backtest.js';
import { QuotaError } from '../../src/domain/errors.js';
import { backtestPages, runBacktest } from '../../src/ledger/backtest.js';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { refund } from '../../src/ledger/refund.js';
import {
  consumeCommand,
  createTestDatabase,
  defineQuota,
  TestClock,
  type TestDatabase,
} from '../support/db.js';

let t: TestDatabase;
let deps: LedgerDeps;
const clock = new TestClock(new Date('2026-03-01T00:00:00Z'));
beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());

const FAR = { start: new Date('2000-01-01T00:00:00Z'), end: new Date('2100-01-01T00:00:00Z') };

describe('BacktestQuota over the ledger', () => {
  it('streams in keyset pages: the answer does not depend on the page size', async () => {
    const subject = 'pages';
    await defineQuota(deps, { subject, metric: 'pages', period: 'DAY', limit: 1000n });
    for (let i = 0; i < 25; i++) {
      await consume(deps, consumeCommand(subject, { metric: 'pages', amount: 3n }), 't');
      clock.advance(3_600_000);
    }
    const proposed: ProposedQuota[] = [
      { period: 'DAY', limit: 20n, timeZone: 'UTC', anchorDay: 0 },
    ];
    const q = { metric: 'pages', subject, quotas: proposed, ...FAR };
    const progress: number[] = [];
    const small = await runBacktest(t.db, q, { pageSize: 4, onProgress: (n) => progress.push(n) });
    const big = await runBacktest(t.db, q);
    expect(small.backtest.result()).toEqual(big.backtest.result());
    expect(small.eventsScanned).toBe(25);
    expect(progress.at(-1)).toBe(25);
    expect(progress.length).toBeGreaterThan(5);
    const [r] = big.backtest.result();
    // 3 an hour: 6 calls (18) fit a day of 20, the 7th does not.
    expect(r!.callsRefused).toBeGreaterThan(0n);
    expect(r!.periods.every((p) => p.peak <= 20n)).toBe(true);
  });

  it('yields progress per page: events, position and time reached, share of the range', async () => {
    const subject = 'progress';
    await defineQuota(deps, { subject, metric: 'progress', period: 'DAY', limit: 1000n });
    const start = clock.now();
    for (let i = 0; i < 10; i++) {
      await consume(deps, consumeCommand(subject, { metric: 'progress', amount: 1n }), 't');
      clock.advance(3_600_000);
    }
    // Ten events an hour apart in a range of 20 hours: pages of 4 reach hours 3 and 7, then 9.
    const end = new Date(start.getTime() + 20 * 3_600_000);
    const q = { metric: 'progress', subject, quotas: [], start, end };
    const pages = backtestPages(t.db, q, { pageSize: 4 });
    const seen = [];
    let next;
    while (!(next = await pages.next()).done) seen.push(next.value);
    expect(next.value.eventsScanned).toBe(10);
    expect(
      seen.map((p) => [p.eventsScanned, p.reached.getTime() - start.getTime(), p.covered]),
    ).toEqual([
      [4, 3 * 3_600_000, 3 / 20],
      [8, 7 * 3_600_000, 7 / 20],
      // The last page covers the rest of the range, empty as it is.
      [10, 9 * 3_600_000, 1],
    ]);
    expect(seen[0]!.position).toBeLessThan(seen[1]!.position);
    expect(seen[1]!.position).toBeLessThan(seen[2]!.position);
  });

  it('property: replaying the limits actually in force refuses nothing the live service allowed', async () => {
    let run = 0;
    const step = fc.oneof(
      fc.record({
        k: fc.constant('consume' as const),
        amount: fc.integer({ min: 1, max: 30 }),
        key: fc.option(fc.integer({ min: 0, max: 4 })),
      }),
      fc.record({
        k: fc.constant('refund' as const),
        amount: fc.integer({ min: 1, max: 20 }),
        usageKey: fc.option(fc.integer({ min: 0, max: 4 })),
      }),
      fc.record({
        k: fc.constant('advance' as const),
        minutes: fc.integer({ min: 1, max: 60 * 80 }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 5, maxLength: 40 }),
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 1, max: 200 }),
        fc.constantFrom('UTC', 'America/New_York', 'Asia/Kolkata'),
        async (steps, dayLimit, weekLimit, zone) => {
          const metric = `bt${++run}`;
          const subject = `s${run}`;
          const quotas: ProposedQuota[] = [
            { period: 'DAY', limit: BigInt(dayLimit), timeZone: zone, anchorDay: 0 },
            { period: 'WEEK', limit: BigInt(weekLimit), timeZone: zone, anchorDay: 0 },
          ];
          for (const q of quotas) await defineQuota(deps, { subject, metric, ...q });
          const start = clock.now();
          let allowed = 0n;
          for (const s of steps) {
            if (s.k === 'advance') clock.advance(s.minutes * 60_000);
            else if (s.k === 'consume') {
              const key = s.key === null ? null : `k${s.key}`;
              try {
                const r = await consume(
                  deps,
                  consumeCommand(subject, {
                    metric,
                    amount: BigInt(s.amount),
                    idempotencyKey: key,
                  }),
                  't',
                );
                if (r.allowed && !r.replayed) allowed += 1n;
              } catch (err) {
                if (!(err instanceof QuotaError)) throw err; // a key reused for another amount
              }
            } else {
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
              ).catch((err: unknown) => {
                if (!(err instanceof QuotaError)) throw err; // refunding more than the usage
              });
            }
          }
          clock.advance(1);
          const { backtest } = await runBacktest(t.db, {
            metric,
            subject,
            quotas,
            start,
            end: clock.now(),
          });
          const r = backtest.result()[0];
          expect(r?.callsRefused ?? 0n).toBe(0n);
          expect(r?.callsAllowed ?? 0n).toBe(allowed);
        },
      ),
      { numRuns: 30, seed: 19 },
    );
  }, 120_000);
});
