import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Effect, NewEvent } from '../../src/domain/events.js';
import { newEvent } from '../../src/domain/events.js';
import type { PeriodKind } from '../../src/domain/period.js';
import type { QuotaView } from '../../src/domain/quota.js';
import { decodeData, encodeJson, eventDataJson, isoString } from '../../src/ledger/codec.js';

// What encodeJson replaced: JSON.stringify, with bigints written as decimal strings.
const reference = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? 'null';

// Any UTF-16 code unit, lone surrogates and control characters included.
const text = fc.string({
  unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
});
const leaf = fc.oneof(
  fc.string(),
  text,
  fc.double(),
  fc.integer(),
  fc.bigInt(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.date(),
);
const value = fc.letrec((tie) => ({
  any: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('object')),
  array: fc.array(tie('any'), { maxLength: 5 }),
  object: fc.dictionary(fc.oneof(fc.string(), text), tie('any'), { maxKeys: 5 }),
})).any;

describe('encodeJson', () => {
  it('writes what JSON.stringify with bigints as strings writes, for any payload', () => {
    fc.assert(
      fc.property(value, (v) => {
        expect(encodeJson(v)).toBe(reference(v));
      }),
      { seed: 20_261_130, numRuns: 2000 },
    );
  });

  it('writes an event payload as the ledger stores it', () => {
    const at = new Date('2026-11-30T00:00:00Z');
    const data = { effects: [{ period: 'DAY', periodStart: at, periodEnd: null, delta: 5n }] };
    expect(encodeJson([data, null])).toBe(
      '[{"effects":[{"period":"DAY","periodStart":"2026-11-30T00:00:00.000Z","periodEnd":null,"delta":"5"}]},null]',
    );
  });
});

describe('isoString', () => {
  it('gives what toISOString gives, for instants asked again and after the cache is cleared', () => {
    const valid = fc.date({ noInvalidDate: true });
    fc.assert(
      fc.property(fc.array(valid, { maxLength: 2000 }), fc.array(fc.nat()), (dates, again) => {
        const asked = [...dates, ...again.map((i) => dates[i % Math.max(1, dates.length)])];
        for (const d of asked)
          if (d) expect(isoString(new Date(d.getTime()))).toBe(d.toISOString());
      }),
      { numRuns: 50 },
    );
  });

  it('throws for an invalid date, as toISOString does', () => {
    expect(() => isoString(new Date(NaN))).toThrow(RangeError);
  });
});

// A USAGE event as decideConsume makes it: quota n is the counter of effect n, after the call.
const instant = fc.date({
  min: new Date('2000-01-01T00:00:00Z'),
  max: new Date('2100-01-01T00:00:00Z'),
  noInvalidDate: true,
});
const period = fc.constantFrom<PeriodKind>('DAY', 'WEEK', 'MONTH', 'NEVER');
const amount = fc.bigInt({ min: 0n, max: 2n ** 63n - 1n });
const usage = fc
  .record({
    subject: text,
    metric: text,
    amount,
    overLimit: fc.boolean(),
    quotas: fc.array(
      fc.record({
        period,
        periodStart: instant,
        periodEnd: fc.option(instant),
        timeZone: fc.oneof(fc.constantFrom('UTC', 'Europe/Berlin', 'America/New_York'), text),
        anchorDay: fc.integer({ min: 0, max: 31 }),
        limit: amount,
        used: amount,
        reserved: fc.oneof(fc.constant(0n), amount),
        lastResetAt: fc.option(instant),
        isDefault: fc.boolean(),
        exceeded: fc.boolean(),
      }),
      { maxLength: 4 },
    ),
  })
  .map(({ subject, metric, amount: delta, overLimit, quotas }): NewEvent => {
    const views: QuotaView[] = quotas.map((q) => {
      const left = q.limit - q.used - q.reserved;
      return { ...q, subject, metric, remaining: left > 0n ? left : 0n };
    });
    const effects: Effect[] = quotas.map((q) => ({
      period: q.period,
      periodStart: q.periodStart,
      periodEnd: q.periodEnd,
      delta,
    }));
    return newEvent({
      type: 'USAGE',
      subject,
      metric,
      amount: delta,
      actor: 'a',
      recordedAt: new Date(0),
      data: { overLimit, effects, quotas: views },
    });
  });

const stored = (ev: NewEvent) => decodeData(JSON.parse(eventDataJson(ev)) as never, ev);

describe('eventDataJson', () => {
  it("keeps a usage's answer compact and gives it back whole", () => {
    fc.assert(
      fc.property(usage, (ev) => {
        const json = eventDataJson(ev);
        expect(Object.keys(JSON.parse(json) as object)).toEqual(['overLimit', 'effects', 'answer']);
        // The effects as every other event writes them: the fold reads them all alike.
        expect(json).toContain(`"effects":${encodeJson(ev.data.effects)},`);
        expect(stored(ev)).toEqual(ev.data);
      }),
      { seed: 20_261_201, numRuns: 1000 },
    );
  });

  it('reads the full answers earlier releases stored', () => {
    fc.assert(
      fc.property(usage, (ev) => {
        const earlier = JSON.parse(encodeJson(ev.data)) as never;
        expect(decodeData(earlier, ev)).toEqual(ev.data);
      }),
      { numRuns: 300 },
    );
  });

  it('stores in full an answer that does not pair with its effects, and gives it back', () => {
    fc.assert(
      fc.property(
        usage,
        fc.nat(),
        fc.constantFrom('subject', 'remaining', 'period'),
        (ev, n, odd) => {
          const quotas = ev.data.quotas!;
          fc.pre(quotas.length > 0);
          const i = n % quotas.length;
          const q = quotas[i]!;
          quotas[i] =
            odd === 'subject'
              ? { ...q, subject: `${q.subject}x` }
              : odd === 'remaining'
                ? { ...q, remaining: q.remaining + 1n }
                : { ...q, period: q.period === 'DAY' ? 'WEEK' : 'DAY' };
          expect(Object.keys(JSON.parse(eventDataJson(ev)) as object)).toContain('quotas');
          expect(stored(ev)).toEqual(ev.data);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('writes other events as encodeJson does', () => {
    const ev = newEvent({
      type: 'REFUND',
      subject: 's',
      actor: 'a',
      recordedAt: new Date(0),
      data: { refundedSequence: 3n, effects: [] },
    });
    expect(eventDataJson(ev)).toBe(encodeJson(ev.data));
  });
});
