import { DateTime, IANAZone } from 'luxon';

export type PeriodKind = 'DAY' | 'WEEK' | 'MONTH' | 'NEVER';
export const PERIOD_KINDS: readonly PeriodKind[] = ['DAY', 'WEEK', 'MONTH', 'NEVER'];

/** How a quota cuts time into periods. anchorDay is 1-31 for billing months, 0 otherwise. */
export interface PeriodRule {
  period: PeriodKind;
  timeZone: string;
  anchorDay: number;
}

/** A half-open window [start, end). end is null for NEVER. */
export interface Window {
  start: Date;
  end: Date | null;
}

/** A lifetime allowance counts from the beginning of time. */
export const NEVER_START = new Date(0);

export function isValidTimeZone(zone: string): boolean {
  return IANAZone.isValidZone(zone);
}

interface CalendarDate {
  year: number;
  month: number;
  day: number;
}

// Calendar arithmetic runs in UTC, where every day has 24 hours; only the final
// conversion to an instant uses the quota's zone.
function shiftDays(date: CalendarDate, days: number): CalendarDate {
  const d = DateTime.utc(date.year, date.month, date.day).plus({ days });
  return { year: d.year, month: d.month, day: d.day };
}

function shiftMonths(year: number, month: number, months: number): { year: number; month: number } {
  const d = DateTime.utc(year, month, 1).plus({ months });
  return { year: d.year, month: d.month };
}

function daysInMonth(year: number, month: number): number {
  return DateTime.utc(year, month, 1).daysInMonth ?? 28;
}

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/**
 * The instant a local calendar day begins: when the zone's clocks last pass its midnight.
 * Usually they pass it once. Where a daylight-saving jump skips midnight the day begins at
 * the jump. Where the clocks go back to midnight (Havana, the Azores: 01:00 back to 00:00)
 * they show it twice but pass it once, at the first. Where they go back across it (St. John's
 * until 2011: 00:01 back to 23:01) they pass it twice and show the day before in between, so
 * the day begins at the second pass.
 *
 * Worked out from the zone's offsets rather than with DateTime.fromObject, which resolves a
 * repeated local time with the offset in force at the real current time (Settings.now), so
 * its answer changed with the season the code ran in.
 */
function localMidnight(zone: string, date: CalendarDate): Date {
  const tz = IANAZone.create(zone);
  // The clocks read midnight at instant t when t + offset(t) is this, midnight taken as UTC.
  const midnight = Date.UTC(date.year, date.month - 1, date.day);
  const reading = (t: number): number => t + tz.offset(t) * MINUTE_MS;
  // No zone changes its offset twice within a day, so these are all it uses around midnight.
  const offsets = [tz.offset(midnight - DAY_MS), tz.offset(midnight + DAY_MS)];
  const passes = offsets
    .map((offset) => midnight - offset * MINUTE_MS)
    .filter((t) => reading(t) === midnight && reading(t - 1) < midnight);
  if (passes.length > 0) return new Date(Math.max(...passes));
  // Midnight skipped: find the jump, the first instant the clocks read later than midnight.
  let before = midnight - Math.max(...offsets) * MINUTE_MS;
  let after = midnight - Math.min(...offsets) * MINUTE_MS;
  while (after - before > 1) {
    const mid = Math.floor((before + after) / 2);
    if (reading(mid) >= midnight) after = mid;
    else before = mid;
  }
  return new Date(after);
}

function anchorDate(year: number, month: number, anchorDay: number): CalendarDate {
  return { year, month, day: Math.min(anchorDay, daysInMonth(year, month)) };
}

/**
 * Picks the window around `now` from the boundary of the calendar unit now falls in
 * (`here`), the one before it and the one after it. Comparing instants rather than local
 * times keeps the answer right on days where local midnight is skipped or repeated.
 */
function pick(now: Date, previous: Date, here: Date, next: Date): Window {
  return now.getTime() < here.getTime()
    ? { start: previous, end: here }
    : { start: here, end: next };
}

// Working a window out asks the zone for its offset several times, through Intl, which was about
// a tenth of a Consume's CPU. Windows partition time, so every instant of a window has that same
// window: the latest one of each rule is kept and serves every `now` inside it.
const latest = new Map<string, { start: number; end: number }>();
const LATEST_MAX = 4096;

/** The period of `rule` that contains `now`: start <= now < end. */
export function periodContaining(rule: PeriodRule, now: Date): Window {
  if (rule.period === 'NEVER') return { start: NEVER_START, end: null };
  const key = `${rule.period} ${rule.anchorDay} ${rule.timeZone}`;
  const t = now.getTime();
  let w = latest.get(key);
  if (!w || t < w.start || t >= w.end) {
    const fresh = workOutPeriod(rule, now);
    w = { start: fresh.start.getTime(), end: fresh.end!.getTime() };
    if (latest.size >= LATEST_MAX) latest.clear();
    latest.set(key, w);
  }
  // New Date objects each time: callers own what they get.
  return { start: new Date(w.start), end: new Date(w.end) };
}

/** periodContaining without the kept windows; exported for the test that compares the two. */
export function workOutPeriod(rule: PeriodRule, now: Date): Window {
  if (rule.period === 'NEVER') return { start: NEVER_START, end: null };
  const zone = rule.timeZone;
  const local = DateTime.fromJSDate(now, { zone });
  const today: CalendarDate = { year: local.year, month: local.month, day: local.day };
  switch (rule.period) {
    case 'DAY':
      return pick(
        now,
        localMidnight(zone, shiftDays(today, -1)),
        localMidnight(zone, today),
        localMidnight(zone, shiftDays(today, 1)),
      );
    case 'WEEK': {
      const monday = shiftDays(today, 1 - local.weekday);
      return pick(
        now,
        localMidnight(zone, shiftDays(monday, -7)),
        localMidnight(zone, monday),
        localMidnight(zone, shiftDays(monday, 7)),
      );
    }
    case 'MONTH': {
      const boundary = (months: number): Date => {
        const m = shiftMonths(local.year, local.month, months);
        const day = rule.anchorDay === 0 ? 1 : anchorDate(m.year, m.month, rule.anchorDay).day;
        return localMidnight(zone, { year: m.year, month: m.month, day });
      };
      return pick(now, boundary(-1), boundary(0), boundary(1));
    }
  }
}

/**
 * The window a counter moves to when its period has ended. With an unchanged rule that is
 * simply the period containing now (skipping any periods nobody used). If the rule changed
 * (a new time zone or anchor day) the new rule takes over at the old period's end, so no
 * instant is counted in two periods and period starts only ever move forward.
 */
export function nextWindow(rule: PeriodRule, endedAt: Date, now: Date): Window {
  const current = periodContaining(rule, now);
  const start = current.start.getTime() < endedAt.getTime() ? endedAt : current.start;
  return { start, end: current.end };
}
