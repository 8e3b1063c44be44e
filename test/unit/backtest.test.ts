import { describe, expect, it } from 'vitest';
import { Backtest, totalsOf, type ReplayEvent } from '../../src/domain/backtest.js';

// Given recorded events / when replayed against proposed quotas / then who would be refused.

let seq = 0n;
const ev = (
  subject: string,
  at: string,
  amount: number,
  type: ReplayEvent['type'] = 'USAGE',
  refundedSequence: bigint | null = null,
): ReplayEvent => ({
  subject,
  type,
  sequence: ++seq,
  amount: BigInt(amount),
  recordedAt: new Date(at),
  refundedSequence,
});

const DAY5 = { period: 'DAY' as const, limit: 5n, timeZone: 'UTC', anchorDay: 0 };

describe('Backtest', () => {
  it('given usage over a proposed daily limit, then the calls past it are refused and the day starts fresh', () => {
    const b = new Backtest([DAY5]);
    for (const e of [
      ev('a', '2026-03-10T01:00:00Z', 3),
      ev('a', '2026-03-10T02:00:00Z', 2),
      ev('a', '2026-03-10T03:00:00Z', 1), // 6 > 5: refused
      ev('a', '2026-03-11T00:00:00Z', 5), // a new day
    ])
      b.apply(e);
    const [a] = b.result();
    expect(a).toMatchObject({
      callsAllowed: 3n,
      amountAllowed: 10n,
      callsRefused: 1n,
      amountRefused: 1n,
      firstRefusedAt: new Date('2026-03-10T03:00:00Z'),
    });
    expect(a!.periods.map((p) => [p.periodStart.toISOString(), p.peak, p.limit])).toEqual([
      ['2026-03-10T00:00:00.000Z', 5n, 5n],
      ['2026-03-11T00:00:00.000Z', 5n, 5n],
    ]);
  });

  it('given two proposed quotas, then a call must fit both (all or nothing)', () => {
    const week = { period: 'WEEK' as const, limit: 6n, timeZone: 'UTC', anchorDay: 0 };
    const b = new Backtest([DAY5, week]);
    b.apply(ev('a', '2026-03-10T01:00:00Z', 4));
    b.apply(ev('a', '2026-03-11T01:00:00Z', 3)); // day fits, week does not
    b.apply(ev('a', '2026-03-11T02:00:00Z', 2));
    expect(b.result()[0]).toMatchObject({ callsAllowed: 2n, callsRefused: 1n, amountAllowed: 6n });
  });

  it('given refunds, then they give room back, never below zero, except for a refused usage', () => {
    const b = new Backtest([DAY5]);
    const big = ev('a', '2026-03-10T01:00:00Z', 9); // refused
    b.apply(big);
    b.apply(ev('a', '2026-03-10T02:00:00Z', 9, 'REFUND', big.sequence)); // gives nothing back
    b.apply(ev('a', '2026-03-10T03:00:00Z', 5));
    b.apply(ev('a', '2026-03-10T04:00:00Z', 2, 'REFUND'));
    b.apply(ev('a', '2026-03-10T05:00:00Z', 2));
    b.apply(ev('a', '2026-03-10T06:00:00Z', 99, 'REFUND'));
    b.apply(ev('a', '2026-03-10T07:00:00Z', 5));
    expect(b.result()[0]).toMatchObject({ callsAllowed: 3n, callsRefused: 1n, amountRefused: 9n });
  });

  it('follows the live period rules: local midnight in the quota zone, billing months that never drift', () => {
    const month = { period: 'MONTH' as const, limit: 10n, timeZone: 'Europe/Paris', anchorDay: 31 };
    const b = new Backtest([month]);
    b.apply(ev('a', '2026-01-31T12:00:00Z', 10));
    b.apply(ev('a', '2026-02-27T12:00:00Z', 1)); // still the period from Jan 31: refused
    b.apply(ev('a', '2026-02-28T12:00:00Z', 1)); // Feb 28 (the month's last day) starts a new one
    b.apply(ev('a', '2026-03-31T12:00:00Z', 10)); // and Mar 31 the next
    const [a] = b.result();
    expect(a!.callsRefused).toBe(1n);
    expect(a!.periods.map((p) => p.periodStart.toISOString())).toEqual([
      '2026-01-30T23:00:00.000Z',
      '2026-02-27T23:00:00.000Z',
      '2026-03-30T22:00:00.000Z',
    ]);
  });

  it('answers per subject, sorted, and totals the first refusal of any', () => {
    const b = new Backtest([DAY5]);
    b.apply(ev('b', '2026-03-10T01:00:00Z', 6));
    b.apply(ev('a', '2026-03-10T00:30:00Z', 6));
    b.apply(ev('c', '2026-03-10T00:10:00Z', 1));
    const r = b.result();
    expect(r.map((x) => x.subject)).toEqual(['a', 'b', 'c']);
    expect(totalsOf(r)).toMatchObject({
      callsRefused: 2n,
      callsAllowed: 1n,
      firstRefusedAt: new Date('2026-03-10T00:30:00Z'),
    });
  });
});
