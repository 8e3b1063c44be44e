import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { judgeConsume, type ConsumeMode } from '../../src/domain/consume.js';
import { refundCredits } from '../../src/domain/refund.js';
import { QuotaError } from '../../src/domain/errors.js';
import { nextWindow, periodContaining, type PeriodKind } from '../../src/domain/period.js';
import {
  applicableQuotas,
  liveQuota,
  type CounterState,
  type LiveQuota,
  type QuotaDef,
} from '../../src/domain/quota.js';
import { INT64_MAX } from '../../src/domain/counter.js';

const RUNS = { seed: 424_242, numRuns: 300 };
const NOW = new Date('2026-03-10T12:00:00Z');
const at = (iso: string): Date => new Date(iso);

const def = (over: Partial<QuotaDef> = {}): QuotaDef => ({
  subject: 'alice',
  metric: 'messages',
  period: 'DAY',
  limit: 10n,
  timeZone: 'UTC',
  anchorDay: 0,
  updatedAt: at('2026-01-01T00:00:00Z'),
  ...over,
});

/** A stored counter in the period of `d` containing NOW. */
const counterNow = (d: QuotaDef, used: bigint, over: Partial<CounterState> = {}): CounterState => {
  const w = periodContaining(d, NOW);
  return {
    used,
    reserved: 0n,
    periodStart: w.start,
    periodEnd: w.end,
    lastResetAt: null,
    lastSequence: 7n,
    ...over,
  };
};

/** A quota already brought to NOW with `used` charged in the current period. */
const live = (over: Partial<QuotaDef>, used: bigint, isDefault = false): LiveQuota => {
  const d = def(over);
  return liveQuota(d, isDefault, counterNow(d, used), NOW);
};

const keys = (list: { def: QuotaDef; isDefault: boolean }[]): string[] =>
  list.map(
    (a) => `${a.def.subject}/${a.def.metric}/${a.def.period}${a.isDefault ? ' (default)' : ''}`,
  );

describe('applicableQuotas', () => {
  it('takes the subject’s own quota over the "*" default for the same metric and period, whatever the order', () => {
    const own = def({ limit: 5n });
    const fallback = def({ subject: '*', limit: 100n });
    for (const defs of [
      [own, fallback],
      [fallback, own],
    ]) {
      const chosen = applicableQuotas(defs, 'alice');
      expect(chosen).toHaveLength(1);
      expect(chosen[0]).toEqual({ def: own, isDefault: false });
    }
  });

  it('fills in defaults for the (metric, period) pairs the subject has none of its own for', () => {
    const defs = [
      def({ subject: '*', period: 'DAY', limit: 100n }),
      def({ subject: '*', period: 'MONTH', limit: 1000n }),
      def({ subject: 'alice', period: 'DAY', limit: 5n }),
      def({ subject: '*', metric: 'storage', period: 'NEVER', limit: 9n }),
    ];
    expect(keys(applicableQuotas(defs, 'alice'))).toEqual([
      'alice/messages/DAY',
      '*/messages/MONTH (default)',
      '*/storage/NEVER (default)',
    ]);
    // Someone without quotas of their own gets only the defaults.
    expect(keys(applicableQuotas(defs, 'bob'))).toEqual([
      '*/messages/DAY (default)',
      '*/messages/MONTH (default)',
      '*/storage/NEVER (default)',
    ]);
  });

  it('ignores other subjects’ quotas', () => {
    const defs = [def({ subject: 'bob' }), def({ subject: 'alice2' }), def({ subject: 'ALICE' })];
    expect(applicableQuotas(defs, 'alice')).toEqual([]);
  });

  it('treats "*" asking for itself as its own quotas, not defaults', () => {
    const defs = [def({ subject: '*' }), def({ subject: 'alice', period: 'WEEK' })];
    expect(keys(applicableQuotas(defs, '*'))).toEqual(['*/messages/DAY']);
  });

  it('sorts by metric, then DAY, WEEK, MONTH, NEVER', () => {
    const defs = [
      def({ metric: 'storage', period: 'NEVER' }),
      def({ metric: 'messages', period: 'NEVER' }),
      def({ metric: 'messages', period: 'MONTH', anchorDay: 15 }),
      def({ subject: '*', metric: 'api.calls', period: 'WEEK' }),
      def({ metric: 'messages', period: 'DAY' }),
      def({ metric: 'messages', period: 'WEEK' }),
      def({ metric: 'api.calls', period: 'DAY' }),
    ];
    expect(keys(applicableQuotas(defs, 'alice'))).toEqual([
      'alice/api.calls/DAY',
      '*/api.calls/WEEK (default)',
      'alice/messages/DAY',
      'alice/messages/WEEK',
      'alice/messages/MONTH',
      'alice/messages/NEVER',
      'alice/storage/NEVER',
    ]);
  });

  it('property: one quota per (metric, period), the own one whenever there is one', () => {
    const periods: PeriodKind[] = ['DAY', 'WEEK', 'MONTH', 'NEVER'];
    const defArb = fc
      .record({
        subject: fc.constantFrom('alice', 'bob', '*'),
        metric: fc.constantFrom('a', 'b', 'c.d'),
        period: fc.constantFrom(...periods),
        limit: fc.bigInt({ min: 0n, max: 100n }),
      })
      .map((r) => def(r));
    fc.assert(
      fc.property(
        fc.array(defArb, { maxLength: 12 }),
        fc.constantFrom('alice', 'bob'),
        (defs, subject) => {
          const chosen = applicableQuotas(defs, subject);
          const pairs = chosen.map((c) => `${c.def.metric}/${c.def.period}`);
          expect(new Set(pairs).size).toBe(pairs.length);
          const wanted = new Set(
            defs
              .filter((d) => d.subject === subject || d.subject === '*')
              .map((d) => `${d.metric}/${d.period}`),
          );
          expect(new Set(pairs)).toEqual(wanted);
          for (const c of chosen) {
            const hasOwn = defs.some(
              (d) =>
                d.subject === subject && d.metric === c.def.metric && d.period === c.def.period,
            );
            expect(c.isDefault).toBe(!hasOwn);
            expect(c.def.subject).toBe(hasOwn ? subject : '*');
          }
          const order = chosen.map((c) => [c.def.metric, periods.indexOf(c.def.period)] as const);
          const sorted = [...order].sort((x, y) => x[0].localeCompare(y[0]) || x[1] - y[1]);
          expect(order).toEqual(sorted);
        },
      ),
      RUNS,
    );
  });
});

describe('liveQuota', () => {
  it('without a counter: a virtual zero counter for the period containing now, not stored, nothing to roll', () => {
    const d = def({ period: 'WEEK', timeZone: 'America/New_York' });
    const q = liveQuota(d, true, null, NOW);
    expect(q).toEqual({
      def: d,
      isDefault: true,
      stored: false,
      roll: null,
      held: 0n,
      counter: {
        used: 0n,
        reserved: 0n,
        periodStart: at('2026-03-09T04:00:00Z'),
        periodEnd: at('2026-03-16T04:00:00Z'),
        lastResetAt: null,
        lastSequence: 0n,
      },
    });
  });

  it('without a counter for a lifetime quota: from the epoch, no end', () => {
    const q = liveQuota(def({ period: 'NEVER' }), false, null, NOW);
    expect(q.counter.periodStart).toEqual(new Date(0));
    expect(q.counter.periodEnd).toBeNull();
  });

  it('with a counter whose period has not ended: the counter as stored', () => {
    const d = def();
    const stored = counterNow(d, 4n, { lastResetAt: at('2026-03-10T00:00:00Z') });
    const q = liveQuota(d, false, stored, NOW);
    expect(q).toEqual({
      def: d,
      isDefault: false,
      counter: stored,
      stored: true,
      roll: null,
      held: 0n,
    });
    // One millisecond before the end is still inside.
    expect(liveQuota(d, false, stored, at('2026-03-10T23:59:59.999Z')).roll).toBeNull();
  });

  it('a lifetime counter never rolls', () => {
    const d = def({ period: 'NEVER' });
    const stored: CounterState = {
      used: 99n,
      reserved: 0n,
      periodStart: new Date(0),
      periodEnd: null,
      lastResetAt: null,
      lastSequence: 3n,
    };
    const q = liveQuota(d, false, stored, at('2059-01-01T00:00:00Z'));
    expect(q.roll).toBeNull();
    expect(q.counter).toBe(stored);
  });

  it('with an ended counter: a roll plan keeping usedBefore, and lastResetAt = the new start', () => {
    const d = def();
    const stored: CounterState = {
      used: 8n,
      reserved: 0n,
      periodStart: at('2026-03-09T00:00:00Z'),
      periodEnd: at('2026-03-10T00:00:00Z'),
      lastResetAt: null,
      lastSequence: 12n,
    };
    const q = liveQuota(d, false, stored, NOW);
    expect(q.stored).toBe(true);
    expect(q.roll).toEqual({
      previousStart: at('2026-03-09T00:00:00Z'),
      previousEnd: at('2026-03-10T00:00:00Z'),
      usedBefore: 8n,
      start: at('2026-03-10T00:00:00Z'),
      end: at('2026-03-11T00:00:00Z'),
    });
    expect(q.counter).toEqual({
      used: 0n,
      reserved: 0n,
      periodStart: at('2026-03-10T00:00:00Z'),
      periodEnd: at('2026-03-11T00:00:00Z'),
      lastResetAt: at('2026-03-10T00:00:00Z'),
      lastSequence: 12n,
    });
    // The stored row is left alone.
    expect(stored.used).toBe(8n);
  });

  it('rolls at exactly the end instant (windows are half-open)', () => {
    const d = def();
    const stored = counterNow(d, 3n);
    const q = liveQuota(d, false, stored, stored.periodEnd!);
    expect(q.roll?.start).toEqual(at('2026-03-11T00:00:00Z'));
    expect(q.counter.used).toBe(0n);
  });

  it('after several idle periods: straight to the period containing now, lastResetAt at that start', () => {
    const d = def({ period: 'MONTH', anchorDay: 31 });
    const stored: CounterState = {
      used: 5n,
      reserved: 0n,
      periodStart: at('2025-10-31T00:00:00Z'),
      periodEnd: at('2025-11-30T00:00:00Z'),
      lastResetAt: null,
      lastSequence: 2n,
    };
    const q = liveQuota(d, false, stored, NOW);
    expect(q.roll).toEqual({
      previousStart: at('2025-10-31T00:00:00Z'),
      previousEnd: at('2025-11-30T00:00:00Z'),
      usedBefore: 5n,
      start: at('2026-02-28T00:00:00Z'),
      end: at('2026-03-31T00:00:00Z'),
    });
    expect(q.counter.lastResetAt).toEqual(at('2026-02-28T00:00:00Z'));
  });

  it('after a time zone change: the new period starts where the old one ended', () => {
    const d = def({ timeZone: 'Asia/Kolkata' });
    const stored: CounterState = {
      used: 1n,
      reserved: 0n,
      periodStart: at('2026-03-10T00:00:00Z'),
      periodEnd: at('2026-03-11T00:00:00Z'),
      lastResetAt: null,
      lastSequence: 1n,
    };
    const now = at('2026-03-11T01:00:00Z');
    const q = liveQuota(d, false, stored, now);
    expect(q.roll?.start).toEqual(at('2026-03-11T00:00:00Z'));
    expect(q.roll?.end).toEqual(at('2026-03-11T18:30:00Z'));
    expect(q.counter.lastResetAt).toEqual(at('2026-03-11T00:00:00Z'));
    expect(q.roll).toMatchObject(nextWindow(d, stored.periodEnd!, now));
  });
});

describe('judgeConsume', () => {
  const day = (used: bigint, limit = 10n): LiveQuota => live({ period: 'DAY', limit }, used);
  const week = (used: bigint, limit = 10n): LiveQuota => live({ period: 'WEEK', limit }, used);
  const month = (used: bigint, limit = 10n): LiveQuota => live({ period: 'MONTH', limit }, used);
  const lifetime = (used: bigint, limit = 10n): LiveQuota => live({ period: 'NEVER', limit }, used);
  const DAY_END = at('2026-03-11T00:00:00Z');
  const WEEK_END = at('2026-03-16T00:00:00Z');
  const MONTH_END = at('2026-04-01T00:00:00Z');

  describe('ENFORCE', () => {
    it('charges every quota when the amount fits all of them', () => {
      const d = judgeConsume([day(3n), month(7n, 100n)], 'alice', 4n, 'ENFORCE');
      expect(d.allowed).toBe(true);
      expect(d.record).toBe(true);
      expect(d.retryAt).toBeNull();
      expect(d.quotas.map((v) => [v.period, v.used, v.remaining, v.exceeded])).toEqual([
        ['DAY', 7n, 3n, false],
        ['MONTH', 11n, 89n, false],
      ]);
    });

    it('allows an amount that exactly reaches the limit', () => {
      const d = judgeConsume([day(6n)], 'alice', 4n, 'ENFORCE');
      expect(d.allowed).toBe(true);
      expect(d.quotas[0]).toMatchObject({ used: 10n, remaining: 0n, exceeded: false });
    });

    it('is all-or-nothing: one refusing quota means nothing is charged anywhere', () => {
      const d = judgeConsume([day(3n), week(8n), month(0n, 100n)], 'alice', 4n, 'ENFORCE');
      expect(d.allowed).toBe(false);
      expect(d.record).toBe(false);
      expect(d.quotas.map((v) => [v.period, v.used, v.remaining, v.exceeded])).toEqual([
        ['DAY', 3n, 7n, false],
        ['WEEK', 8n, 2n, true],
        ['MONTH', 0n, 100n, false],
      ]);
      expect(d.retryAt).toEqual(WEEK_END);
    });

    it('retryAt is the latest period end among the refusing quotas only', () => {
      // DAY and WEEK refuse; MONTH (ending later) has room and does not count.
      const d = judgeConsume([day(9n), week(9n), month(0n, 100n)], 'alice', 2n, 'ENFORCE');
      expect(d.quotas.map((v) => v.exceeded)).toEqual([true, true, false]);
      expect(d.retryAt).toEqual(WEEK_END);
      expect(judgeConsume([day(9n), month(99n, 100n)], 'alice', 2n, 'ENFORCE').retryAt).toEqual(
        MONTH_END,
      );
      expect(judgeConsume([day(9n), week(0n)], 'alice', 2n, 'ENFORCE').retryAt).toEqual(DAY_END);
    });

    it('retryAt is null when a refusing quota never resets', () => {
      const d = judgeConsume([day(9n), lifetime(9n)], 'alice', 2n, 'ENFORCE');
      expect(d.allowed).toBe(false);
      expect(d.retryAt).toBeNull();
      // A lifetime quota with room does not matter.
      expect(judgeConsume([day(9n), lifetime(0n, 100n)], 'alice', 2n, 'ENFORCE').retryAt).toEqual(
        DAY_END,
      );
    });

    it('retryAt is null when the amount exceeds a refusing quota’s whole limit', () => {
      expect(judgeConsume([day(0n, 10n)], 'alice', 11n, 'ENFORCE').retryAt).toBeNull();
      expect(judgeConsume([day(0n, 0n)], 'alice', 1n, 'ENFORCE').retryAt).toBeNull();
      // Even when another refusing quota would reset: the WEEK limit of 5 can never hold 6.
      const d = judgeConsume([day(5n, 10n), week(0n, 5n)], 'alice', 6n, 'ENFORCE');
      expect(d.quotas.map((v) => v.exceeded)).toEqual([true, true]);
      expect(d.retryAt).toBeNull();
    });

    it('refuses without throwing when the counter is already near int64', () => {
      const d = judgeConsume([day(INT64_MAX - 1n, INT64_MAX)], 'alice', 5n, 'ENFORCE');
      expect(d.allowed).toBe(false);
      expect(d.record).toBe(false);
    });

    it('with no quotas at all: allowed and recorded', () => {
      expect(judgeConsume([], 'alice', 5n, 'ENFORCE')).toEqual({
        allowed: true,
        record: true,
        quotas: [],
        retryAt: null,
      });
    });
  });

  describe('RECORD', () => {
    it('records even beyond the limit and marks the exceeded quotas', () => {
      const d = judgeConsume([day(8n), month(8n, 100n)], 'alice', 5n, 'RECORD');
      expect(d.allowed).toBe(false);
      expect(d.record).toBe(true);
      expect(d.quotas.map((v) => [v.period, v.used, v.remaining, v.exceeded])).toEqual([
        ['DAY', 13n, 0n, true],
        ['MONTH', 13n, 87n, false],
      ]);
      expect(d.retryAt).toEqual(DAY_END);
    });

    it('records within the limit like ENFORCE', () => {
      const d = judgeConsume([day(1n)], 'alice', 1n, 'RECORD');
      expect(d).toMatchObject({ allowed: true, record: true, retryAt: null });
      expect(d.quotas[0]?.used).toBe(2n);
    });

    it('fails with OUT_OF_RANGE when a counter would pass the int64 maximum', () => {
      const quotas = [day(0n), week(INT64_MAX - 2n)];
      let error: unknown;
      try {
        judgeConsume(quotas, 'alice', 3n, 'RECORD');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(QuotaError);
      expect((error as QuotaError).code).toBe('OUT_OF_RANGE');
      expect((error as QuotaError).message).toContain('WEEK');
      // Reaching the maximum exactly is fine.
      expect(judgeConsume(quotas, 'alice', 2n, 'RECORD').quotas[1]?.used).toBe(INT64_MAX);
      // Only recording can overflow.
      expect(() => judgeConsume(quotas, 'alice', 3n, 'DRY_RUN')).not.toThrow();
      expect(() => judgeConsume(quotas, 'alice', 3n, 'ENFORCE')).not.toThrow();
    });
  });

  describe('DRY_RUN', () => {
    it('never records, but says whether it would fit', () => {
      const fits = judgeConsume([day(3n)], 'alice', 4n, 'DRY_RUN');
      expect(fits).toMatchObject({ allowed: true, record: false, retryAt: null });
      expect(fits.quotas[0]).toMatchObject({ used: 3n, remaining: 7n, exceeded: false });
      const over = judgeConsume([day(3n), week(3n, 20n)], 'alice', 8n, 'DRY_RUN');
      expect(over).toMatchObject({ allowed: false, record: false, retryAt: DAY_END });
      expect(over.quotas.map((v) => [v.used, v.exceeded])).toEqual([
        [3n, true],
        [3n, false],
      ]);
      expect(judgeConsume([], 'alice', 1n, 'DRY_RUN').record).toBe(false);
    });
  });

  it('views carry the quota and counter as they are', () => {
    const q = liveQuota(
      def({ subject: '*', period: 'MONTH', anchorDay: 15, timeZone: 'Asia/Kolkata', limit: 50n }),
      true,
      null,
      NOW,
    );
    const [v] = judgeConsume([q], 'alice', 2n, 'ENFORCE').quotas;
    expect(v).toEqual({
      subject: 'alice',
      metric: 'messages',
      period: 'MONTH',
      timeZone: 'Asia/Kolkata',
      anchorDay: 15,
      limit: 50n,
      used: 2n,
      reserved: 0n,
      remaining: 48n,
      periodStart: at('2026-02-14T18:30:00Z'),
      periodEnd: at('2026-03-14T18:30:00Z'),
      lastResetAt: null,
      isDefault: true,
      exceeded: false,
    });
  });

  /** What every decision must satisfy, whatever the quotas and the amount. */
  const checkDecisions = (quotas: LiveQuota[], amount: bigint): void => {
    const fits = quotas.map((q) => q.counter.used + amount <= q.def.limit);
    const decisions = (['ENFORCE', 'RECORD', 'DRY_RUN'] as ConsumeMode[]).map((mode) =>
      judgeConsume(quotas, 'alice', amount, mode),
    );
    const [enforce, record, dryRun] = decisions as [
      ReturnType<typeof judgeConsume>,
      ReturnType<typeof judgeConsume>,
      ReturnType<typeof judgeConsume>,
    ];
    expect(enforce.allowed).toBe(fits.every(Boolean));
    expect(enforce.record).toBe(enforce.allowed);
    if (enforce.record) {
      for (const v of enforce.quotas) expect(v.used).toBeLessThanOrEqual(v.limit);
    }
    expect(record.record).toBe(true);
    expect(dryRun.record).toBe(false);
    for (const d of decisions) {
      expect(d.allowed).toBe(enforce.allowed);
      expect(d.retryAt).toEqual(enforce.retryAt);
      expect(d.quotas).toHaveLength(quotas.length);
      d.quotas.forEach((v, i) => {
        const q = quotas[i]!;
        expect(v.exceeded).toBe(!fits[i]);
        expect(v.used).toBe(d.record ? q.counter.used + amount : q.counter.used);
        expect(v.remaining).toBe(v.used < v.limit ? v.limit - v.used : 0n);
      });
    }
    // retryAt: null when allowed; otherwise the latest end of the refusing quotas, unless waiting cannot help.
    const refusing = quotas.filter((_, i) => !fits[i]);
    if (refusing.length === 0) {
      expect(enforce.retryAt).toBeNull();
    } else if (refusing.some((q) => q.counter.periodEnd === null || amount > q.def.limit)) {
      expect(enforce.retryAt).toBeNull();
    } else {
      const latest = Math.max(...refusing.map((q) => q.counter.periodEnd!.getTime()));
      expect(enforce.retryAt).toEqual(new Date(latest));
      expect(latest).toBeGreaterThan(NOW.getTime());
    }
  };

  it('property: ENFORCE records exactly when allowed and never leaves a view over its limit', () => {
    const periods: PeriodKind[] = ['DAY', 'WEEK', 'MONTH', 'NEVER'];
    const quotaArb = fc
      .record({
        period: fc.constantFrom(...periods),
        limit: fc.bigInt({ min: 0n, max: 1000n }),
        // Counters can already be over their limit (RECORD mode, or a lowered limit).
        used: fc.bigInt({ min: 0n, max: 1500n }),
      })
      .map(({ period, limit, used }) =>
        live({ period, limit, metric: `m${period.toLowerCase()}` }, used),
      );
    fc.assert(
      fc.property(
        fc.array(quotaArb, { maxLength: 4 }),
        fc.bigInt({ min: 1n, max: 1500n }),
        checkDecisions,
      ),
      RUNS,
    );
  });

  it('property: at the edge, used + amount = limit - 1, limit or limit + 1 on every quota', () => {
    // Uniform random counters almost never land on the limit; these always do, so an
    // off-by-one in the comparison cannot pass.
    const periods: PeriodKind[] = ['DAY', 'WEEK', 'MONTH', 'NEVER'];
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: 50n }),
        fc.array(
          fc.record({
            period: fc.constantFrom(...periods),
            room: fc.bigInt({ min: 1n, max: 1000n }),
            edge: fc.constantFrom(-1n, 0n, 1n),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        (amount, specs) => {
          const quotas = specs.map(({ period, room, edge }, i) => {
            // used + amount - limit = edge
            const limit = room + amount;
            return live({ period, limit, metric: `m${i}` }, limit - amount + edge);
          });
          checkDecisions(quotas, amount);
          const d = judgeConsume(quotas, 'alice', amount, 'ENFORCE');
          expect(d.allowed).toBe(specs.every((x) => x.edge <= 0n));
          if (d.allowed) expect(d.quotas.map((v) => v.used <= v.limit)).not.toContain(false);
        },
      ),
      RUNS,
    );
  });

  it('property: RECORD throws OUT_OF_RANGE exactly when some counter would pass int64', () => {
    const near = fc.bigInt({ min: INT64_MAX - 100n, max: INT64_MAX });
    fc.assert(
      fc.property(
        fc.array(fc.oneof(near, fc.bigInt({ min: 0n, max: 100n })), { minLength: 1, maxLength: 3 }),
        fc.bigInt({ min: 1n, max: 100n }),
        (useds, amount) => {
          const quotas = useds.map((used, i) => live({ metric: `m${i}`, limit: INT64_MAX }, used));
          const overflows = useds.some((u) => u + amount > INT64_MAX);
          let code: string | null = null;
          try {
            judgeConsume(quotas, 'alice', amount, 'RECORD');
          } catch (e) {
            code = e instanceof QuotaError ? e.code : 'other';
          }
          expect(code).toBe(overflows ? 'OUT_OF_RANGE' : null);
        },
      ),
      RUNS,
    );
  });
});

describe('refundCredits', () => {
  it('gives back at most what each counter has used', () => {
    expect(refundCredits([0n, 3n, 5n, 10n], 5n)).toEqual([0n, 3n, 5n, 5n]);
    expect(refundCredits([], 5n)).toEqual([]);
  });
});
