import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeJson, isoString } from '../../src/ledger/codec.js';

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
