import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import {
  followAfter,
  formatCount,
  formatDuration,
  formatRelative,
  formatTime,
  percentUsed,
  sortByCloseness,
  subjectsMatching,
  usageChart,
  usageText,
} from '../../console/src/logic.js';
import {
  EventType,
  LedgerEventSchema,
  Period,
  PeriodAmountSchema,
  type LedgerEvent,
} from '../../src/gen/quota/v1/types_pb.js';

const T0 = Date.parse('2026-03-10T00:00:00Z');
const DAY = 86_400_000;
let position = 0n;
const ev = (
  type: EventType,
  atMs: number,
  more: MessageInitShape<typeof LedgerEventSchema> = {},
): LedgerEvent =>
  create(LedgerEventSchema, {
    position: ++position,
    subject: 'acme',
    metric: 'api_calls',
    type,
    recordedAt: timestampFromMs(atMs),
    ...more,
  });

describe('console formatting', () => {
  it('groups digits and writes usage in words', () => {
    expect(formatCount(0n)).toBe('0');
    expect(formatCount(1234567n)).toBe('1,234,567');
    expect(formatCount(-1000)).toBe('-1,000');
    expect(formatCount(9223372036854775807n)).toBe('9,223,372,036,854,775,807');
    expect(usageText(3n, 4n)).toBe('3 / 4 (75%)');
    expect(usageText(3n, 10n, 2n)).toBe('3 / 10 (30%) + 2 held');
    expect(percentUsed(999n, 1000n)).toBe(99); // floored: 100% only at the limit
    expect(percentUsed(5n, 0n)).toBe(100);
    expect(percentUsed(0n, 0n)).toBe(0);
  });

  it('writes durations and instants', () => {
    expect(formatDuration(0)).toBe('0 s');
    expect(formatDuration(40_000)).toBe('40 s');
    expect(formatDuration(12_000_000)).toBe('3 h 20 min');
    expect(formatDuration(2 * DAY + 3_600_000 + 5_000)).toBe('2 d 1 h');
    expect(formatRelative(T0 + 300_000, T0)).toBe('in 5 min');
    expect(formatRelative(T0 - 300_000, T0)).toBe('5 min ago');
    expect(formatTime(timestampFromMs(T0 + 1_500))).toBe('2026-03-10 00:00:01 UTC');
    expect(formatTime(undefined)).toBe('—');
  });
});

describe('console sorting', () => {
  it('puts the fullest quota first, a used zero limit before everything', () => {
    const q = (subject: string, used: bigint, limit: bigint) => ({
      subject,
      metric: 'm',
      period: Period.DAY,
      used,
      limit,
    });
    const sorted = sortByCloseness([
      q('half', 5n, 10n),
      q('empty', 0n, 10n),
      q('over', 12n, 10n),
      q('zero-used', 1n, 0n),
      q('full', 10n, 10n),
      q('also-half', 50n, 100n),
    ]);
    expect(sorted.map((x) => x.subject)).toEqual([
      'zero-used',
      'over',
      'full',
      'also-half',
      'half',
      'empty',
    ]);
  });

  it('matches subjects by prefix, never the "*" defaults, each once', () => {
    expect(subjectsMatching(['b', 'a1', '*', 'a2', 'a1'], 'a')).toEqual(['a1', 'a2']);
    expect(subjectsMatching(['b', '*'], '')).toEqual(['b']);
  });
});

describe('console chart data', () => {
  const q = { metric: 'api_calls', period: Period.DAY, periodStartMs: T0, periodEndMs: T0 + DAY };

  it('steps through usage, refunds and resets in each period', () => {
    const events = [
      ev(EventType.USAGE, T0 - DAY / 2, { amount: 4n }), // previous period
      ev(EventType.RESET_SCHEDULED, T0, { period: Period.DAY, usedBefore: 4n }),
      ev(EventType.USAGE, T0 + 1_000, { amount: 3n }),
      ev(EventType.USAGE, T0 + 2_000, { amount: 2n, metric: 'other' }), // another metric
      ev(EventType.REFUND, T0 + 3_000, {
        amount: 5n,
        credited: [create(PeriodAmountSchema, { period: Period.DAY, amount: 1n })],
      }),
      ev(EventType.RESET_MANUAL, T0 + 4_000, { period: Period.WEEK }), // another period
      ev(EventType.USAGE, T0 + 5_000, { amount: 6n }),
      ev(EventType.RESET_MANUAL, T0 + 6_000, { period: Period.DAY }),
      ev(EventType.QUOTA_SET, T0 + 7_000),
    ];
    const chart = usageChart(events, q, T0 + 10_000);
    expect(chart.periodMs).toBe(DAY);
    expect(chart.previous).toEqual([
      { offsetMs: 0, used: 0 },
      { offsetMs: DAY / 2, used: 4 },
      { offsetMs: DAY, used: 4 },
    ]);
    expect(chart.current).toEqual([
      { offsetMs: 0, used: 0 },
      { offsetMs: 0, used: 0 }, // the scheduled reset at the boundary
      { offsetMs: 1_000, used: 3 },
      { offsetMs: 3_000, used: 2 }, // refund: only what it credited to the day
      { offsetMs: 4_000, used: 2 }, // the week's reset leaves the day alone
      { offsetMs: 5_000, used: 8 },
      { offsetMs: 6_000, used: 0 },
      { offsetMs: 10_000, used: 0 }, // drawn up to now
    ]);
  });

  it('ignores what lies outside the two periods and never goes below zero', () => {
    const events = [
      ev(EventType.USAGE, T0 - 2 * DAY, { amount: 9n }),
      ev(EventType.REFUND, T0 + 1_000, { amount: 5n }),
      ev(EventType.USAGE, T0 + DAY, { amount: 9n }),
    ];
    const chart = usageChart(events, q, T0 + 2_000);
    expect(chart.previous).toEqual([
      { offsetMs: 0, used: 0 },
      { offsetMs: DAY, used: 0 },
    ]);
    expect(chart.current.map((p) => p.used)).toEqual([0, 0, 0]);
  });
});

describe('console chart data for a NEVER quota', () => {
  it('has one period, from its start up to now, and no previous one', () => {
    const never = {
      metric: 'api_calls',
      period: Period.NEVER,
      periodStartMs: T0,
      periodEndMs: null,
    };
    const events = [
      ev(EventType.USAGE, T0 - 1_000, { amount: 9n }),
      ev(EventType.USAGE, T0 + 1_000, { amount: 2n }),
    ];
    const chart = usageChart(events, never, T0 + 4_000);
    expect(chart).toEqual({
      periodMs: 4_000,
      previous: [],
      current: [
        { offsetMs: 0, used: 0 },
        { offsetMs: 1_000, used: 2 },
        { offsetMs: 4_000, used: 2 },
      ],
    });
  });
});

describe('console live follow', () => {
  it('resumes from the oldest event of the last 30 s of server time', () => {
    expect(followAfter([])).toBe(0n);
    const events = [
      ev(EventType.USAGE, T0, { position: 10n }),
      ev(EventType.USAGE, T0 + 40_000, { position: 12n }),
      ev(EventType.USAGE, T0 + 50_000, { position: 11n }),
      ev(EventType.USAGE, T0 + 60_000, { position: 13n }),
    ];
    expect(followAfter(events)).toBe(10n); // positions 11.. are re-read
    expect(followAfter(events, 5_000)).toBe(12n);
  });
});
