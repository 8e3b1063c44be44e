import { describe, expect, it } from 'vitest';
import { QuotaError } from '../../src/domain/errors.js';
import type { StoredEvent } from '../../src/domain/events.js';
import { foldCounters } from '../../src/domain/fold.js';
import { periodContaining } from '../../src/domain/period.js';
import {
  counterKey,
  liveQuotasOf,
  type CounterState,
  type OpenHold,
  type QuotaDef,
} from '../../src/domain/quota.js';
import { judgeCommit, judgeReserve, releasesOf } from '../../src/domain/reservation.js';
import { checkTtlMs } from '../../src/rpc/validate.js';

// Given / when / then, without a database: the rules of reservations as pure functions.

const NOW = new Date('2026-03-10T12:00:00Z');
const def = (over: Partial<QuotaDef> = {}): QuotaDef => ({
  subject: 'alice',
  metric: 'videos',
  period: 'DAY',
  limit: 10n,
  timeZone: 'UTC',
  anchorDay: 0,
  updatedAt: new Date(0),
  ...over,
});
const counter = (d: QuotaDef, used: bigint, reserved: bigint, at = NOW): CounterState => {
  const w = periodContaining(d, at);
  return {
    used,
    reserved,
    periodStart: w.start,
    periodEnd: w.end,
    lastResetAt: null,
    lastSequence: 1n,
  };
};
const holdOf = (d: QuotaDef, amount: bigint, expiresAt: Date, madeAt = NOW): OpenHold => ({
  reservationId: 'r1',
  metric: d.metric,
  amount,
  expiresAt,
  sequence: 1n,
  holds: [{ period: d.period, periodStart: periodContaining(d, madeAt).start }],
});
const live = (defs: QuotaDef[], counters: [QuotaDef, CounterState][], holds: OpenHold[] = []) =>
  liveQuotasOf(
    defs,
    new Map(counters.map(([d, c]) => [counterKey(d.metric, d.period), c])),
    'alice',
    NOW,
    null,
    holds,
  );

describe('judgeReserve', () => {
  it('given 2 used and 5 held of 10, when 3 more are reserved, then it fits exactly', () => {
    const d = def();
    const r = judgeReserve(live([d], [[d, counter(d, 2n, 5n)]]), 'alice', 3n);
    expect(r.allowed).toBe(true);
    expect(r.quotas[0]).toMatchObject({ used: 2n, reserved: 8n, remaining: 0n });
    expect(r.holds.map((h) => h.delta)).toEqual([3n]);
  });

  it('given two quotas, when one refuses, then nothing is held on either (all or nothing)', () => {
    const day = def();
    const week = def({ period: 'WEEK', limit: 4n });
    const r = judgeReserve(
      live(
        [day, week],
        [
          [day, counter(day, 0n, 2n)],
          [week, counter(week, 0n, 2n)],
        ],
      ),
      'alice',
      3n,
    );
    expect(r.allowed).toBe(false);
    expect(r.holds).toEqual([]);
    expect(r.quotas.map((q) => [q.period, q.reserved, q.exceeded])).toEqual([
      ['DAY', 2n, false],
      ['WEEK', 2n, true],
    ]);
    expect(r.retryAt).toEqual(new Date('2026-03-16T00:00:00Z'));
  });

  it('given a hold that expired (sweep not yet run), when reserving, then the expired hold no longer counts', () => {
    const d = def();
    const expired = holdOf(d, 8n, NOW); // expires_at == now: no longer counts
    const stillOpen = holdOf(d, 1n, new Date(NOW.getTime() + 1));
    const q = live([d], [[d, counter(d, 0n, 9n)]], [expired, stillOpen]);
    expect(q[0]!.held).toBe(1n);
    expect(judgeReserve(q, 'alice', 9n).allowed).toBe(true);
  });

  it('given a counter whose period ended, when reserving, then the old holds vanish with the roll', () => {
    const d = def();
    const yesterday = counter(d, 4n, 6n, new Date('2026-03-09T12:00:00Z'));
    const q = live([d], [[d, yesterday]]);
    expect(q[0]!.roll).not.toBeNull();
    expect(q[0]!.held).toBe(0n);
    expect(judgeReserve(q, 'alice', 10n).allowed).toBe(true);
  });

  it('ttl is bounded to 1 s .. 24 h, naming the field', () => {
    expect(checkTtlMs(1_000)).toBe(1_000);
    expect(checkTtlMs(86_400_000)).toBe(86_400_000);
    for (const bad of [null, 999, 86_400_001, Number.NaN]) {
      expect(() => checkTtlMs(bad)).toThrow(/^ttl: /);
    }
  });
});

describe('judgeCommit', () => {
  const d = def();
  const later = new Date(NOW.getTime() + 60_000);

  it('given a hold of 6, when 4 are committed, then 4 are used and the 6 released', () => {
    const h = holdOf(d, 6n, later);
    const c = judgeCommit(h, live([d], [[d, counter(d, 1n, 6n)]]), 'alice', 4n, false, NOW);
    expect(c.effects.map((e) => e.delta)).toEqual([4n]);
    expect(c.holds.map((e) => e.delta)).toEqual([-6n]);
    expect(c.quotas[0]).toMatchObject({ used: 5n, reserved: 0n, remaining: 5n });
    expect(c.overLimit).toBe(false);
  });

  it('given a hold of 6, when 7 are committed without allow_overrun, then INVALID_ARGUMENT on amount', () => {
    const h = holdOf(d, 6n, later);
    expect(() =>
      judgeCommit(h, live([d], [[d, counter(d, 0n, 6n)]]), 'alice', 7n, false, NOW),
    ).toThrow(/^amount: 7 is more than the 6 held/);
  });

  it('given other holds, when overrunning, then only what still fits is allowed', () => {
    const h = holdOf(d, 6n, later);
    const q = () => live([d], [[d, counter(d, 0n, 9n)]]); // 6 ours + 3 someone else's
    expect(judgeCommit(h, q(), 'alice', 7n, true, NOW).quotas[0]).toMatchObject({
      used: 7n,
      reserved: 3n,
    });
    expect(() => judgeCommit(h, q(), 'alice', 8n, true, NOW)).toThrow(QuotaError);
  });

  it('given an expired hold, when committing, then FAILED_PRECONDITION saying when it expired', () => {
    const h = holdOf(d, 6n, NOW);
    let err: unknown;
    try {
      judgeCommit(h, live([d], [[d, counter(d, 0n, 6n)]]), 'alice', 1n, false, NOW);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect((err as Error).message).toMatch(/expired at 2026-03-10T12:00:00.000Z/);
  });

  it('given a hold made yesterday, when committed today, then the usage lands today and nothing is released', () => {
    const h = holdOf(d, 6n, later, new Date('2026-03-09T23:00:00Z'));
    const today = live([d], [[d, counter(d, 8n, 0n)]]);
    const c = judgeCommit(h, today, 'alice', 5n, false, NOW);
    expect(c.holds).toEqual([]);
    expect(c.effects[0]!.periodStart).toEqual(new Date('2026-03-10T00:00:00Z'));
    // Promised yesterday, so recorded even though it pushes today over: said, not refused.
    expect(c.overLimit).toBe(true);
    expect(c.quotas[0]).toMatchObject({ used: 13n, exceeded: true });
  });
});

describe('the fold of reservation events', () => {
  const d = def();
  const w = periodContaining(d, NOW);
  const ev = (e: Partial<StoredEvent> & Pick<StoredEvent, 'type' | 'sequence'>): StoredEvent => ({
    position: e.sequence,
    subject: 'alice',
    metric: 'videos',
    amount: null,
    period: null,
    periodStart: null,
    periodEnd: null,
    actor: 't',
    reason: null,
    idempotencyKey: null,
    attributes: null,
    recordedAt: NOW,
    data: {},
    ...e,
  });
  const fx = (delta: bigint, start = w.start) => ({
    period: 'DAY' as const,
    periodStart: start,
    periodEnd: w.end,
    delta,
  });

  it('adds holds, moves a commit from reserved to used, and ignores releases of another period', () => {
    const c = foldCounters([
      ev({ type: 'RESERVED', sequence: 1n, data: { reservationId: 'a', holds: [fx(5n)] } }),
      ev({ type: 'RESERVED', sequence: 2n, data: { reservationId: 'b', holds: [fx(3n)] } }),
      ev({
        type: 'RESERVATION_COMMITTED',
        sequence: 3n,
        amount: 4n,
        data: { reservationId: 'a', effects: [fx(4n)], holds: [fx(-5n)] },
      }),
      ev({
        type: 'RESERVATION_EXPIRED',
        sequence: 4n,
        data: { reservationId: 'old', holds: [fx(-7n, new Date(0))] },
      }),
    ]).get(counterKey('videos', 'DAY'))!;
    expect([c.used, c.reserved, c.lastSequence]).toEqual([4n, 3n, 3n]);
  });

  it('releasesOf touches only counters still in the period the hold was made in', () => {
    const h = holdOf(d, 5n, NOW);
    expect(releasesOf(h, [{ period: 'DAY', counter: counter(d, 0n, 5n) }])).toHaveLength(1);
    const tomorrow = counter(d, 0n, 0n, new Date('2026-03-11T12:00:00Z'));
    expect(releasesOf(h, [{ period: 'DAY', counter: tomorrow }])).toEqual([]);
  });
});
