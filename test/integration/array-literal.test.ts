import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrayLiteral, bareElement, textElement } from '../../src/ledger/array-literal.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(() => t.drop());

// Any text PostgreSQL can hold: every code point but NUL, quotes, backslashes, braces, commas,
// spaces and the word NULL included.
const pgText = fc
  .oneof(
    fc.string({ unit: 'grapheme' }),
    fc.string({ unit: fc.constantFrom('"', '\\', '{', '}', ',', ' ', 'N', 'U', 'L', 'l', "'") }),
    fc.constantFrom('', 'NULL', 'null', ' x ', '"', '\\'),
  )
  .filter((s) => !s.includes('\u0000'));

describe('array literals written for the append', () => {
  it('are read by PostgreSQL as exactly the values given', async () => {
    const texts = fc.array(fc.option(pgText, { nil: null }), { maxLength: 20 });
    const ints = fc.array(
      fc.option(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { nil: null }),
      {
        maxLength: 20,
      },
    );
    const instants = fc.array(
      fc.option(
        fc.date({
          min: new Date('0001-01-01T00:00:00Z'),
          max: new Date('9999-12-31T23:59:59Z'),
          noInvalidDate: true,
        }),
        { nil: null },
      ),
      { maxLength: 20 },
    );
    await fc.assert(
      fc.asyncProperty(texts, ints, instants, async (ts, is, ds) => {
        const { rows } = await t.db.query<{
          t: (string | null)[];
          i: (string | null)[];
          d: (Date | null)[];
        }>('SELECT $1::text[] AS t, $2::int8[]::text[] AS i, $3::timestamptz[] AS d', [
          arrayLiteral(ts.map(textElement)),
          arrayLiteral(is.map(bareElement)),
          arrayLiteral(ds.map((d) => bareElement(d && d.toISOString()))),
        ]);
        expect(rows[0]!.t).toEqual(ts);
        expect(rows[0]!.i).toEqual(is.map((v) => (v === null ? null : String(v))));
        expect(rows[0]!.d.map((d) => d && d.getTime())).toEqual(ds.map((d) => d && d.getTime()));
      }),
      { seed: 20_261_201, numRuns: 300 },
    );
  });
});
