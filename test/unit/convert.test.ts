import { create, equals, toBinary } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { QuotaView } from '../../src/domain/quota.js';
import { QuotaStatusSchema } from '../../src/gen/quota/v1/types_pb.js';
import { PERIODS, statusToProto, ts } from '../../src/rpc/convert.js';

const date = fc.date({ noInvalidDate: true });
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });

describe('answers built as plain objects', () => {
  it('makes the Timestamp protobuf-es makes, before and after 1970', () => {
    fc.assert(
      fc.property(date, (d) => {
        expect(ts(d)).toStrictEqual(timestampFromDate(d));
      }),
    );
  });

  it('makes the QuotaStatus create() makes, field for field', () => {
    const view = fc.record({
      subject: fc.string(),
      metric: fc.string(),
      period: fc.constantFrom('DAY', 'WEEK', 'MONTH', 'NEVER') as fc.Arbitrary<QuotaView['period']>,
      timeZone: fc.string(),
      anchorDay: fc.integer({ min: 0, max: 28 }),
      limit: int64,
      used: int64,
      reserved: int64,
      remaining: int64,
      periodStart: date,
      periodEnd: fc.option(date),
      lastResetAt: fc.option(date),
      isDefault: fc.boolean(),
      exceeded: fc.boolean(),
    });
    fc.assert(
      fc.property(view, (v) => {
        const expected = create(QuotaStatusSchema, {
          ...v,
          period: PERIODS[v.period],
          periodStart: timestampFromDate(v.periodStart),
          periodEnd: v.periodEnd ? timestampFromDate(v.periodEnd) : undefined,
          lastResetAt: v.lastResetAt ? timestampFromDate(v.lastResetAt) : undefined,
        });
        const got = statusToProto(v as QuotaView);
        expect(equals(QuotaStatusSchema, got, expected)).toBe(true);
        expect(toBinary(QuotaStatusSchema, got)).toEqual(toBinary(QuotaStatusSchema, expected));
      }),
    );
  });
});
