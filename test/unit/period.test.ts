import fc from 'fast-check';
import { DateTime, IANAZone, Settings } from 'luxon';
import { describe, expect, it } from 'vitest';
import {
  NEVER_START,
  nextWindow,
  periodContaining,
  workOutPeriod,
  type PeriodKind,
  type PeriodRule,
  type Window,
} from '../../src/domain/period.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Reproducible and quick: a fixed seed, a few hundred cases per property. */
const RUNS = { seed: 20_260_308, numRuns: 300 };

const ZONES = [
  'UTC',
  'America/New_York',
  'Europe/London',
  'Asia/Kolkata',
  'Pacific/Chatham',
  'Australia/Lord_Howe',
  'America/Santiago',
  'Asia/Tehran',
  'Pacific/Apia',
  'America/St_Johns',
  'Africa/Casablanca',
  'Asia/Kathmandu',
];
const FROM = Date.UTC(1990, 0, 1);
const TO = Date.UTC(2061, 0, 1);

const at = (iso: string): Date => new Date(iso);
const rule = (period: PeriodKind, timeZone = 'UTC', anchorDay = 0): PeriodRule => ({
  period,
  timeZone,
  anchorDay,
});
const local = (d: Date | number, zone: string): DateTime => DateTime.fromMillis(+d, { zone });
const dateKey = (l: { year: number; month: number; day: number }): number =>
  l.year * 10_000 + l.month * 100 + l.day;
const hours = (w: Window): number => (w.end!.getTime() - w.start.getTime()) / HOUR;
const iso = (w: Window): { start: string; end: string | null } => ({
  start: w.start.toISOString(),
  end: w.end?.toISOString() ?? null,
});

/** Whether the zone's clocks ever read 00:00 on this date (independently of the code under test). */
function midnightExists(zone: string, year: number, month: number, day: number): boolean {
  const tz = IANAZone.create(zone);
  const wall = Date.UTC(year, month - 1, day);
  const offsets = new Set<number>();
  for (let t = wall - 16 * HOUR; t <= wall + 16 * HOUR; t += 30 * MINUTE) offsets.add(tz.offset(t));
  return [...offsets].some((o) => tz.offset(wall - o * MINUTE) === o);
}

/** Whether any instant shows this date on the zone's clocks. */
function dateExists(zone: string, year: number, month: number, day: number): boolean {
  const wall = Date.UTC(year, month - 1, day);
  const key = dateKey({ year, month, day });
  for (let t = wall - 16 * HOUR; t <= wall + 40 * HOUR; t += 30 * MINUTE) {
    if (dateKey(local(t, zone)) === key) return true;
  }
  return false;
}

/** Every offset change of the zone in [FROM, TO), to aim generated instants at the awkward days. */
function transitions(zone: string): number[] {
  const tz = IANAZone.create(zone);
  const step = 7 * DAY;
  const found: number[] = [];
  let previous = tz.offset(FROM);
  for (let t = FROM + step; t < TO; t += step) {
    const offset = tz.offset(t);
    if (offset === previous) continue;
    let lo = t - step;
    let hi = t;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (tz.offset(mid) === previous) lo = mid;
      else hi = mid;
    }
    found.push(hi);
    previous = offset;
  }
  return found;
}
const TRANSITIONS = new Map(ZONES.map((zone) => [zone, transitions(zone)]));

/** Uniform over 1990-2060, or within days (often within hours) of one of the zone's offset changes. */
function instantIn(zone: string): fc.Arbitrary<Date> {
  const uniform = fc.integer({ min: FROM, max: TO - 1 });
  const changes = TRANSITIONS.get(zone) ?? [];
  if (changes.length === 0) return uniform.map((ms) => new Date(ms));
  const near = fc
    .tuple(
      fc.constantFrom(...changes),
      fc.oneof(
        fc.integer({ min: -3 * DAY, max: 3 * DAY }),
        fc.integer({ min: -2 * HOUR, max: 2 * HOUR }),
      ),
    )
    .map(([t, delta]) => t + delta);
  return fc.oneof(uniform, near).map((ms) => new Date(ms));
}

function ruleIn(zone: string, kinds: readonly PeriodKind[]): fc.Arbitrary<PeriodRule> {
  return fc
    .constantFrom(...kinds)
    .chain((period) =>
      period === 'MONTH'
        ? fc.integer({ min: 0, max: 31 }).map((anchorDay) => rule(period, zone, anchorDay))
        : fc.constant(rule(period, zone)),
    );
}

/** A rule over a random zone (and anchor day, for MONTH) with an instant to look at. */
function ruleAndInstant(
  kinds: readonly PeriodKind[],
): fc.Arbitrary<{ rule: PeriodRule; now: Date }> {
  return fc
    .constantFrom(...ZONES)
    .chain((zone) => fc.record({ rule: ruleIn(zone, kinds), now: instantIn(zone) }));
}

const ALL: readonly PeriodKind[] = ['DAY', 'WEEK', 'MONTH', 'NEVER'];
const BOUNDED: readonly PeriodKind[] = ['DAY', 'WEEK', 'MONTH'];

/** Runs `fn` with luxon believing the real current time is `realNow`. */
function withRealNow<T>(realNow: number, fn: () => T): T {
  const saved = Settings.now;
  Settings.now = () => realNow;
  try {
    return fn();
  } finally {
    Settings.now = saved;
  }
}

describe('periodContaining: properties over 1990-2060 and awkward zones', () => {
  it('contains now: start <= now < end', () => {
    fc.assert(
      fc.property(ruleAndInstant(ALL), ({ rule: r, now }) => {
        const w = periodContaining(r, now);
        expect(w.start.getTime()).toBeLessThanOrEqual(now.getTime());
        if (r.period === 'NEVER') {
          expect(w).toEqual({ start: NEVER_START, end: null });
        } else {
          expect(w.end).not.toBeNull();
          expect(now.getTime()).toBeLessThan(w.end!.getTime());
        }
      }),
      RUNS,
    );
  });

  it('tiles time: the window of `end` starts exactly at `end`, and the instant before `end` is still this window', () => {
    fc.assert(
      fc.property(ruleAndInstant(BOUNDED), ({ rule: r, now }) => {
        // Worked out afresh each time: periodContaining keeps windows on the strength of this.
        const w = workOutPeriod(r, now);
        const end = w.end!;
        expect(workOutPeriod(r, end).start).toEqual(end);
        expect(workOutPeriod(r, new Date(end.getTime() - 1))).toEqual(w);
      }),
      RUNS,
    );
  });

  it('the window of `start` is the same window', () => {
    fc.assert(
      fc.property(ruleAndInstant(ALL), ({ rule: r, now }) => {
        const w = workOutPeriod(r, now);
        expect(workOutPeriod(r, w.start)).toEqual(w);
      }),
      RUNS,
    );
  });

  it('keeping the latest window per rule changes no answer, in any order of instants', () => {
    const instants = fc.array(
      fc.oneof(
        fc.date({ min: new Date('1990-01-01'), max: new Date('2060-01-01'), noInvalidDate: true }),
        // Runs of nearby instants, so that kept windows are hit and left across boundaries.
        fc.integer({ min: -3 * DAY, max: 3 * DAY }).map((d) => new Date(Date.UTC(2026, 2, 29) + d)),
      ),
      { minLength: 1, maxLength: 40 },
    );
    const rule = fc.record({
      period: fc.constantFrom(...ALL),
      timeZone: fc.constantFrom(...ZONES),
      anchorDay: fc.integer({ min: 0, max: 31 }),
    });
    fc.assert(
      fc.property(fc.array(rule, { minLength: 1, maxLength: 3 }), instants, (rules, nows) => {
        for (const now of nows) {
          for (const r of rules) expect(periodContaining(r, now)).toEqual(workOutPeriod(r, now));
        }
      }),
      RUNS,
    );
  });

  it('starts when a local day begins: at 00:00 local, or the first existing time where midnight is skipped', () => {
    fc.assert(
      fc.property(ruleAndInstant(BOUNDED), ({ rule: r, now }) => {
        const { start } = periodContaining(r, now);
        const l = local(start, r.timeZone);
        // The instant before belongs to an earlier local day.
        expect(dateKey(local(start.getTime() - 1, r.timeZone))).toBeLessThan(dateKey(l));
        const atMidnight = l.hour === 0 && l.minute === 0 && l.second === 0 && l.millisecond === 0;
        if (!atMidnight) expect(midnightExists(r.timeZone, l.year, l.month, l.day)).toBe(false);
      }),
      RUNS,
    );
  });

  it('DAY windows last between 22 and 26 hours and end one calendar day later', () => {
    fc.assert(
      fc.property(ruleAndInstant(['DAY']), ({ rule: r, now }) => {
        const w = periodContaining(r, now);
        expect(hours(w)).toBeGreaterThanOrEqual(22);
        expect(hours(w)).toBeLessThanOrEqual(26);
        const startDay = local(w.start, r.timeZone).startOf('day');
        const endDay = local(w.end!, r.timeZone).startOf('day');
        const next = DateTime.utc(startDay.year, startDay.month, startDay.day).plus({ days: 1 });
        // Only a day nobody lived through (Samoa skipped 2011-12-30) makes it two.
        if (dateKey(endDay) !== dateKey(next)) {
          expect(dateExists(r.timeZone, next.year, next.month, next.day)).toBe(false);
        }
      }),
      RUNS,
    );
  });

  it('WEEK windows start on a local Monday and end on the Monday seven calendar days later', () => {
    fc.assert(
      fc.property(ruleAndInstant(['WEEK']), ({ rule: r, now }) => {
        const w = periodContaining(r, now);
        const s = local(w.start, r.timeZone);
        const e = local(w.end!, r.timeZone);
        expect(s.weekday).toBe(1);
        expect(e.weekday).toBe(1);
        const expectedEnd = DateTime.utc(s.year, s.month, s.day).plus({ days: 7 });
        expect(dateKey(e)).toBe(dateKey(expectedEnd));
      }),
      RUNS,
    );
  });

  it('MONTH windows start on day min(anchor, days in month) (1 for calendar months) and end on that day of the next month', () => {
    const anchorDateOf = (year: number, month: number, anchorDay: number): DateTime => {
      const first = DateTime.utc(year, month, 1);
      return first.set({ day: anchorDay === 0 ? 1 : Math.min(anchorDay, first.daysInMonth!) });
    };
    // The boundary starts the expected local date, or the next one if that whole day was skipped.
    const expectBoundary = (zone: string, boundary: Date, expected: DateTime): void => {
      const l = local(boundary, zone);
      if (dateKey(l) !== dateKey(expected)) {
        expect(dateExists(zone, expected.year, expected.month, expected.day)).toBe(false);
        expect(dateKey(local(boundary.getTime() - 1, zone))).toBeLessThan(dateKey(expected));
      }
    };
    fc.assert(
      fc.property(ruleAndInstant(['MONTH']), ({ rule: r, now }) => {
        const w = periodContaining(r, now);
        const s = local(w.start, r.timeZone);
        const startDate = anchorDateOf(s.year, s.month, r.anchorDay);
        expectBoundary(r.timeZone, w.start, startDate);
        const next = startDate.startOf('month').plus({ months: 1 });
        expectBoundary(r.timeZone, w.end!, anchorDateOf(next.year, next.month, r.anchorDay));
      }),
      RUNS,
    );
  });

  it('does not depend on the real current time (luxon resolves ambiguous local times with it)', () => {
    const winter = Date.UTC(2026, 0, 15, 12);
    const summer = Date.UTC(2026, 6, 15, 12);
    fc.assert(
      fc.property(ruleAndInstant(BOUNDED), ({ rule: r, now }) => {
        const a = withRealNow(winter, () => periodContaining(r, now));
        const b = withRealNow(summer, () => periodContaining(r, now));
        expect(b).toEqual(a);
      }),
      RUNS,
    );
  });
});

describe('periodContaining: examples', () => {
  describe('DAY', () => {
    it('is the UTC day in UTC', () => {
      expect(iso(periodContaining(rule('DAY'), at('2026-03-10T12:34:56Z')))).toEqual({
        start: '2026-03-10T00:00:00.000Z',
        end: '2026-03-11T00:00:00.000Z',
      });
      expect(iso(periodContaining(rule('DAY'), at('2026-03-10T00:00:00Z'))).start).toBe(
        '2026-03-10T00:00:00.000Z',
      );
      expect(iso(periodContaining(rule('DAY'), at('2026-03-10T23:59:59.999Z'))).end).toBe(
        '2026-03-11T00:00:00.000Z',
      );
    });

    it('America/New_York: 2026-03-08 lasts 23 hours, 2026-11-01 lasts 25', () => {
      const ny = rule('DAY', 'America/New_York');
      const spring = periodContaining(ny, at('2026-03-08T12:00:00Z'));
      expect(iso(spring)).toEqual({
        start: '2026-03-08T05:00:00.000Z',
        end: '2026-03-09T04:00:00.000Z',
      });
      expect(hours(spring)).toBe(23);
      const autumn = periodContaining(ny, at('2026-11-01T12:00:00Z'));
      expect(iso(autumn)).toEqual({
        start: '2026-11-01T04:00:00.000Z',
        end: '2026-11-02T05:00:00.000Z',
      });
      expect(hours(autumn)).toBe(25);
      // Inside the repeated hour (01:00-02:00 twice): the same day either time.
      expect(periodContaining(ny, at('2026-11-01T05:30:00Z'))).toEqual(autumn);
      expect(periodContaining(ny, at('2026-11-01T06:30:00Z'))).toEqual(autumn);
      // An ordinary day.
      expect(hours(periodContaining(ny, at('2026-07-04T12:00:00Z')))).toBe(24);
    });

    it('Asia/Kolkata: midnight is 18:30Z the day before', () => {
      const kolkata = rule('DAY', 'Asia/Kolkata');
      const w = periodContaining(kolkata, at('2026-03-10T12:00:00Z'));
      expect(iso(w)).toEqual({
        start: '2026-03-09T18:30:00.000Z',
        end: '2026-03-10T18:30:00.000Z',
      });
      expect(periodContaining(kolkata, at('2026-03-10T18:29:59.999Z'))).toEqual(w);
      expect(iso(periodContaining(kolkata, at('2026-03-10T18:30:00Z'))).start).toBe(
        '2026-03-10T18:30:00.000Z',
      );
    });

    it('Asia/Kathmandu: +05:45', () => {
      expect(
        iso(periodContaining(rule('DAY', 'Asia/Kathmandu'), at('2026-03-10T12:00:00Z'))),
      ).toEqual({
        start: '2026-03-09T18:15:00.000Z',
        end: '2026-03-10T18:15:00.000Z',
      });
    });

    it('Australia/Lord_Howe: half-hour daylight saving gives 24.5 and 23.5 hour days', () => {
      const lh = rule('DAY', 'Australia/Lord_Howe');
      // 2026-04-05: 02:00 (+11) back to 01:30 (+10:30).
      const autumn = periodContaining(lh, at('2026-04-05T06:00:00Z'));
      expect(iso(autumn)).toEqual({
        start: '2026-04-04T13:00:00.000Z',
        end: '2026-04-05T13:30:00.000Z',
      });
      expect(hours(autumn)).toBe(24.5);
      // 2026-10-04: 02:00 (+10:30) forward to 02:30 (+11).
      const spring = periodContaining(lh, at('2026-10-04T06:00:00Z'));
      expect(iso(spring)).toEqual({
        start: '2026-10-03T13:30:00.000Z',
        end: '2026-10-04T13:00:00.000Z',
      });
      expect(hours(spring)).toBe(23.5);
    });

    it('Pacific/Chatham: +12:45 in winter, +13:45 in summer', () => {
      const chatham = rule('DAY', 'Pacific/Chatham');
      expect(iso(periodContaining(chatham, at('2026-07-01T00:00:00Z')))).toEqual({
        start: '2026-06-30T11:15:00.000Z',
        end: '2026-07-01T11:15:00.000Z',
      });
      expect(iso(periodContaining(chatham, at('2026-01-15T00:00:00Z')))).toEqual({
        start: '2026-01-14T10:15:00.000Z',
        end: '2026-01-15T10:15:00.000Z',
      });
      // 2026-09-27: 02:45 forward to 03:45, a 23-hour day.
      const spring = periodContaining(chatham, at('2026-09-27T00:00:00Z'));
      expect(iso(spring)).toEqual({
        start: '2026-09-26T11:15:00.000Z',
        end: '2026-09-27T10:15:00.000Z',
      });
      expect(hours(spring)).toBe(23);
    });

    it('America/Santiago: a skipped midnight starts the day at 01:00, a repeated 23:00 stays in the old day', () => {
      const santiago = rule('DAY', 'America/Santiago');
      // 2026-09-06: 00:00 (-04) jumps to 01:00 (-03).
      const spring = periodContaining(santiago, at('2026-09-06T12:00:00Z'));
      expect(iso(spring)).toEqual({
        start: '2026-09-06T04:00:00.000Z',
        end: '2026-09-07T03:00:00.000Z',
      });
      expect(local(spring.start, 'America/Santiago').toISO()).toBe('2026-09-06T01:00:00.000-03:00');
      expect(iso(periodContaining(santiago, at('2026-09-06T03:59:59.999Z'))).end).toBe(
        '2026-09-06T04:00:00.000Z',
      );
      // 2026-04-05: 24:00 (-03) goes back to 23:00 (-04) on the 4th; the 4th lasts 25 hours.
      const autumn = periodContaining(santiago, at('2026-04-04T12:00:00Z'));
      expect(iso(autumn)).toEqual({
        start: '2026-04-04T03:00:00.000Z',
        end: '2026-04-05T04:00:00.000Z',
      });
      expect(periodContaining(santiago, at('2026-04-05T03:30:00Z'))).toEqual(autumn);
    });

    it('Asia/Tehran: 2021-03-22 had no midnight (00:00 +03:30 jumped to 01:00 +04:30)', () => {
      const w = periodContaining(rule('DAY', 'Asia/Tehran'), at('2021-03-22T12:00:00Z'));
      expect(iso(w)).toEqual({
        start: '2021-03-21T20:30:00.000Z',
        end: '2021-03-22T19:30:00.000Z',
      });
      expect(local(w.start, 'Asia/Tehran').toISO()).toBe('2021-03-22T01:00:00.000+04:30');
      expect(hours(w)).toBe(23);
    });

    it('Pacific/Apia: 2011-12-30 never happened; the 29th ends where the 31st begins', () => {
      const apia = rule('DAY', 'Pacific/Apia');
      const dec29 = periodContaining(apia, at('2011-12-29T12:00:00Z'));
      expect(iso(dec29)).toEqual({
        start: '2011-12-29T10:00:00.000Z',
        end: '2011-12-30T10:00:00.000Z',
      });
      const dec31 = periodContaining(apia, dec29.end!);
      expect(iso(dec31)).toEqual({
        start: '2011-12-30T10:00:00.000Z',
        end: '2011-12-31T10:00:00.000Z',
      });
      expect(local(dec31.start, 'Pacific/Apia').toISO()).toBe('2011-12-31T00:00:00.000+14:00');
    });

    it('America/St_Johns before 2011: clocks went back across midnight (00:01 to 23:01), so the day starts at the second midnight', () => {
      const stJohns = rule('DAY', 'America/St_Johns');
      // 2006-10-29 00:00 NDT (02:30Z), then 00:01 NDT became 23:01 NST on the 28th, then 00:00 NST (03:30Z).
      const saturday = { start: '2006-10-28T02:30:00.000Z', end: '2006-10-29T03:30:00.000Z' };
      expect(iso(periodContaining(stJohns, at('2006-10-28T12:00:00Z')))).toEqual(saturday);
      expect(iso(periodContaining(stJohns, at('2006-10-29T02:30:30Z')))).toEqual(saturday); // 00:00:30 NDT, first pass
      expect(iso(periodContaining(stJohns, at('2006-10-29T03:00:00Z')))).toEqual(saturday); // 23:30 NST on the 28th again
      expect(iso(periodContaining(stJohns, at('2006-10-29T03:30:00Z')))).toEqual({
        start: '2006-10-29T03:30:00.000Z',
        end: '2006-10-30T03:30:00.000Z',
      });
    });

    it('America/Havana and Atlantic/Azores: clocks go back to midnight (01:00 to 00:00), so the day starts at the first midnight', () => {
      const havana = rule('DAY', 'America/Havana');
      // 2026-11-01 00:00 CDT (04:00Z) and again 00:00 CST (05:00Z).
      const sunday = { start: '2026-11-01T04:00:00.000Z', end: '2026-11-02T05:00:00.000Z' };
      expect(iso(periodContaining(havana, at('2026-11-01T04:30:00Z')))).toEqual(sunday);
      expect(iso(periodContaining(havana, at('2026-11-01T05:30:00Z')))).toEqual(sunday);
      expect(iso(periodContaining(havana, at('2026-11-01T03:59:59Z'))).end).toBe(
        '2026-11-01T04:00:00.000Z',
      );
      const azores = rule('DAY', 'Atlantic/Azores');
      // 2026-10-25 00:00 (+00, 00:00Z) and again 00:00 (-01, 01:00Z).
      expect(iso(periodContaining(azores, at('2026-10-25T00:30:00Z')))).toEqual({
        start: '2026-10-25T00:00:00.000Z',
        end: '2026-10-26T01:00:00.000Z',
      });
    });

    it('gives the same windows whatever the real current time is', () => {
      const cases: [PeriodRule, Date][] = [
        [rule('DAY', 'America/St_Johns'), at('2006-10-29T03:00:00Z')],
        [rule('DAY', 'America/Havana'), at('2026-11-01T04:30:00Z')],
        [rule('WEEK', 'America/Havana'), at('2026-11-02T04:30:00Z')],
        [rule('DAY', 'Atlantic/Azores'), at('2026-10-25T00:30:00Z')],
        [rule('MONTH', 'America/St_Johns', 29), at('2006-10-29T03:00:00Z')],
      ];
      for (const [r, now] of cases) {
        const seen = [Date.UTC(2026, 0, 15), Date.UTC(2026, 6, 15), Date.UTC(2006, 9, 29, 3)].map(
          (real) => iso(withRealNow(real, () => periodContaining(r, now))),
        );
        expect(seen[1]).toEqual(seen[0]);
        expect(seen[2]).toEqual(seen[0]);
        expect(now.getTime()).toBeGreaterThanOrEqual(Date.parse(seen[0]!.start));
        expect(now.getTime()).toBeLessThan(Date.parse(seen[0]!.end!));
      }
    });
  });

  describe('WEEK', () => {
    it('is the ISO week, Monday 00:00 to Monday 00:00, across a year end', () => {
      const week = { start: '2026-12-28T00:00:00.000Z', end: '2027-01-04T00:00:00.000Z' };
      for (const now of [
        '2026-12-28T00:00:00Z',
        '2026-12-31T12:00:00Z',
        '2027-01-01T00:00:00Z',
        '2027-01-03T23:59:59.999Z',
      ]) {
        expect(iso(periodContaining(rule('WEEK'), at(now)))).toEqual(week);
      }
      expect(iso(periodContaining(rule('WEEK'), at('2027-01-04T00:00:00Z'))).start).toBe(
        '2027-01-04T00:00:00.000Z',
      );
      expect(iso(periodContaining(rule('WEEK'), at('2026-12-27T23:59:59.999Z'))).end).toBe(
        '2026-12-28T00:00:00.000Z',
      );
    });

    it('uses the local Monday', () => {
      expect(
        iso(periodContaining(rule('WEEK', 'America/New_York'), at('2026-12-31T12:00:00Z'))),
      ).toEqual({
        start: '2026-12-28T05:00:00.000Z',
        end: '2027-01-04T05:00:00.000Z',
      });
      // Monday 2026-03-09 04:30Z is still Sunday evening in New York, Monday morning in Kolkata.
      expect(
        iso(periodContaining(rule('WEEK', 'America/New_York'), at('2026-03-09T03:30:00Z'))),
      ).toEqual({
        start: '2026-03-02T05:00:00.000Z',
        end: '2026-03-09T04:00:00.000Z',
      });
      expect(
        iso(periodContaining(rule('WEEK', 'Asia/Kolkata'), at('2026-03-09T03:30:00Z'))),
      ).toEqual({
        start: '2026-03-08T18:30:00.000Z',
        end: '2026-03-15T18:30:00.000Z',
      });
    });

    it('lasts six days in Pacific/Apia over the skipped 2011-12-30', () => {
      const w = periodContaining(rule('WEEK', 'Pacific/Apia'), at('2011-12-31T00:00:00Z'));
      expect(iso(w)).toEqual({
        start: '2011-12-26T10:00:00.000Z',
        end: '2012-01-01T10:00:00.000Z',
      });
      expect(hours(w)).toBe(6 * 24);
    });
  });

  describe('MONTH', () => {
    const walk = (r: PeriodRule, from: Date, count: number): string[] => {
      const starts: string[] = [];
      let w = periodContaining(r, from);
      for (let i = 0; i < count; i++) {
        starts.push(w.start.toISOString().slice(0, 10));
        w = periodContaining(r, w.end!);
      }
      return starts;
    };

    it('calendar month (anchor 0) runs from the 1st to the 1st', () => {
      expect(iso(periodContaining(rule('MONTH'), at('2026-02-14T12:00:00Z')))).toEqual({
        start: '2026-02-01T00:00:00.000Z',
        end: '2026-03-01T00:00:00.000Z',
      });
      // 00:30 BST on 1 April is still 31 March in UTC.
      expect(
        iso(periodContaining(rule('MONTH', 'Europe/London'), at('2026-03-31T23:30:00Z'))),
      ).toEqual({
        start: '2026-03-31T23:00:00.000Z',
        end: '2026-04-30T23:00:00.000Z',
      });
      expect(periodContaining(rule('MONTH', 'UTC', 1), at('2026-02-14T12:00:00Z'))).toEqual(
        periodContaining(rule('MONTH'), at('2026-02-14T12:00:00Z')),
      );
    });

    it('anchor 31 clamps to the end of February and comes back to the 31st (leap year 2028)', () => {
      const r = rule('MONTH', 'UTC', 31);
      expect(iso(periodContaining(r, at('2028-02-15T00:00:00Z')))).toEqual({
        start: '2028-01-31T00:00:00.000Z',
        end: '2028-02-29T00:00:00.000Z',
      });
      expect(iso(periodContaining(r, at('2028-03-01T00:00:00Z')))).toEqual({
        start: '2028-02-29T00:00:00.000Z',
        end: '2028-03-31T00:00:00.000Z',
      });
    });

    it('anchor 31 in common year 2027 never drifts', () => {
      const r = rule('MONTH', 'UTC', 31);
      expect(iso(periodContaining(r, at('2027-02-28T00:00:00Z')))).toEqual({
        start: '2027-02-28T00:00:00.000Z',
        end: '2027-03-31T00:00:00.000Z',
      });
      expect(iso(periodContaining(r, at('2027-02-27T23:59:59.999Z')))).toEqual({
        start: '2027-01-31T00:00:00.000Z',
        end: '2027-02-28T00:00:00.000Z',
      });
      expect(walk(r, at('2027-01-31T00:00:00Z'), 14)).toEqual([
        '2027-01-31',
        '2027-02-28',
        '2027-03-31',
        '2027-04-30',
        '2027-05-31',
        '2027-06-30',
        '2027-07-31',
        '2027-08-31',
        '2027-09-30',
        '2027-10-31',
        '2027-11-30',
        '2027-12-31',
        '2028-01-31',
        '2028-02-29',
      ]);
    });

    it('anchor 30 in February', () => {
      const r = rule('MONTH', 'UTC', 30);
      expect(iso(periodContaining(r, at('2027-02-15T00:00:00Z')))).toEqual({
        start: '2027-01-30T00:00:00.000Z',
        end: '2027-02-28T00:00:00.000Z',
      });
      expect(iso(periodContaining(r, at('2027-03-15T00:00:00Z')))).toEqual({
        start: '2027-02-28T00:00:00.000Z',
        end: '2027-03-30T00:00:00.000Z',
      });
      expect(walk(r, at('2028-01-30T00:00:00Z'), 3)).toEqual([
        '2028-01-30',
        '2028-02-29',
        '2028-03-30',
      ]);
    });

    it('anchor 15 splits the calendar month', () => {
      const r = rule('MONTH', 'UTC', 15);
      expect(iso(periodContaining(r, at('2026-03-14T23:59:59.999Z')))).toEqual({
        start: '2026-02-15T00:00:00.000Z',
        end: '2026-03-15T00:00:00.000Z',
      });
      expect(iso(periodContaining(r, at('2026-03-15T00:00:00Z')))).toEqual({
        start: '2026-03-15T00:00:00.000Z',
        end: '2026-04-15T00:00:00.000Z',
      });
    });

    it('anchored months begin at local midnight in the zone, across a DST change', () => {
      expect(
        iso(periodContaining(rule('MONTH', 'America/New_York', 31), at('2028-03-10T12:00:00Z'))),
      ).toEqual({
        start: '2028-02-29T05:00:00.000Z',
        end: '2028-03-31T04:00:00.000Z',
      });
    });

    it('anchor 30 in Pacific/Apia, December 2011: the skipped 30th starts the period with the 31st', () => {
      expect(
        iso(periodContaining(rule('MONTH', 'Pacific/Apia', 30), at('2011-12-31T00:00:00Z'))),
      ).toEqual({
        start: '2011-12-30T10:00:00.000Z',
        end: '2012-01-29T10:00:00.000Z',
      });
    });
  });

  describe('NEVER', () => {
    it('is one window from the epoch with no end', () => {
      for (const now of ['1970-01-01T00:00:00Z', '2026-03-10T12:00:00Z', '2059-12-31T23:59:59Z']) {
        const w = periodContaining(rule('NEVER', 'Asia/Kolkata'), at(now));
        expect(w.start).toEqual(new Date(0));
        expect(w.start).toEqual(NEVER_START);
        expect(w.end).toBeNull();
      }
    });
  });
});

describe('nextWindow', () => {
  it('with an unchanged rule is the period containing now, for any now at or after a real boundary', () => {
    fc.assert(
      fc.property(
        ruleAndInstant(BOUNDED),
        fc.oneof(fc.integer({ min: 0, max: 3 * DAY }), fc.integer({ min: 0, max: 400 * DAY })),
        ({ rule: r, now: earlier }, later) => {
          const endedAt = periodContaining(r, earlier).end!;
          const now = new Date(endedAt.getTime() + later);
          expect(nextWindow(r, endedAt, now)).toEqual(periodContaining(r, now));
        },
      ),
      RUNS,
    );
  });

  it('jumps a counter that was idle for several periods straight to the period containing now', () => {
    expect(
      iso(nextWindow(rule('DAY'), at('2026-03-01T00:00:00Z'), at('2026-03-10T12:00:00Z'))),
    ).toEqual({
      start: '2026-03-10T00:00:00.000Z',
      end: '2026-03-11T00:00:00.000Z',
    });
    expect(
      iso(
        nextWindow(
          rule('MONTH', 'UTC', 31),
          at('2027-01-31T00:00:00Z'),
          at('2027-05-01T00:00:00Z'),
        ),
      ),
    ).toEqual({ start: '2027-04-30T00:00:00.000Z', end: '2027-05-31T00:00:00.000Z' });
    expect(
      iso(nextWindow(rule('WEEK'), at('2026-12-21T00:00:00Z'), at('2027-01-02T00:00:00Z'))),
    ).toEqual({
      start: '2026-12-28T00:00:00.000Z',
      end: '2027-01-04T00:00:00.000Z',
    });
  });

  it('moves on at the exact boundary', () => {
    expect(
      iso(nextWindow(rule('DAY'), at('2026-03-11T00:00:00Z'), at('2026-03-11T00:00:00Z'))),
    ).toEqual({
      start: '2026-03-11T00:00:00.000Z',
      end: '2026-03-12T00:00:00.000Z',
    });
  });

  it('after a time zone change starts at the old end rather than going back in time', () => {
    // The UTC day ended at 00:00Z; in Kolkata the day containing 01:00Z began at 18:30Z the day before.
    const w = nextWindow(
      rule('DAY', 'Asia/Kolkata'),
      at('2026-03-11T00:00:00Z'),
      at('2026-03-11T01:00:00Z'),
    );
    expect(iso(w)).toEqual({ start: '2026-03-11T00:00:00.000Z', end: '2026-03-11T18:30:00.000Z' });
    // The other way round the new period simply begins later.
    const back = nextWindow(
      rule('DAY', 'America/New_York'),
      at('2026-03-11T00:00:00Z'),
      at('2026-03-11T06:00:00Z'),
    );
    expect(iso(back)).toEqual({
      start: '2026-03-11T04:00:00.000Z',
      end: '2026-03-12T04:00:00.000Z',
    });
  });

  it('after an anchor day change starts at the old end', () => {
    const w = nextWindow(
      rule('MONTH', 'UTC', 1),
      at('2026-03-15T00:00:00Z'),
      at('2026-03-20T00:00:00Z'),
    );
    expect(iso(w)).toEqual({ start: '2026-03-15T00:00:00.000Z', end: '2026-04-01T00:00:00.000Z' });
  });

  it('with a changed rule never starts before endedAt and still contains now', () => {
    const changed = fc
      .tuple(fc.constantFrom(...BOUNDED), fc.constantFrom(...ZONES), fc.constantFrom(...ZONES))
      .chain(([period, fromZone, toZone]) =>
        fc.record({
          before: ruleIn(fromZone, [period]),
          after: ruleIn(toZone, [period]),
          earlier: instantIn(fromZone),
          later: fc.oneof(
            fc.integer({ min: 0, max: 2 * DAY }),
            fc.integer({ min: 0, max: 100 * DAY }),
          ),
        }),
      );
    fc.assert(
      fc.property(changed, ({ before, after, earlier, later }) => {
        const endedAt = periodContaining(before, earlier).end!;
        const now = new Date(endedAt.getTime() + later);
        const w = nextWindow(after, endedAt, now);
        const current = periodContaining(after, now);
        expect(w.start.getTime()).toBeGreaterThanOrEqual(endedAt.getTime());
        expect(w.start.getTime()).toBeLessThanOrEqual(now.getTime());
        expect(w.end).toEqual(current.end);
        expect(now.getTime()).toBeLessThan(w.end!.getTime());
        // Either the new rule's own period, or that period cut short at the front.
        expect(w.start.getTime()).toBe(Math.max(endedAt.getTime(), current.start.getTime()));
      }),
      RUNS,
    );
  });
});
