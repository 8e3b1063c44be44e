// Pure functions of the console: no DOM, no network, so they are unit-tested without a browser
// (test/unit/console-logic.test.ts).
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import {
  EventType,
  Period,
  type LedgerEvent,
  type QuotaStatus,
} from '../../src/gen/quota/v1/types_pb.js';

export const PERIOD_NAMES: Record<Period, string> = {
  [Period.UNSPECIFIED]: 'any',
  [Period.DAY]: 'day',
  [Period.WEEK]: 'week',
  [Period.MONTH]: 'month',
  [Period.NEVER]: 'never',
};

export const EVENT_NAMES: Record<EventType, string> = {
  [EventType.UNSPECIFIED]: 'UNSPECIFIED',
  [EventType.USAGE]: 'USAGE',
  [EventType.REFUND]: 'REFUND',
  [EventType.QUOTA_SET]: 'QUOTA_SET',
  [EventType.QUOTA_DELETED]: 'QUOTA_DELETED',
  [EventType.RESET_SCHEDULED]: 'RESET_SCHEDULED',
  [EventType.RESET_MANUAL]: 'RESET_MANUAL',
  [EventType.RESERVED]: 'RESERVED',
  [EventType.RESERVATION_COMMITTED]: 'RESERVATION_COMMITTED',
  [EventType.RESERVATION_CANCELLED]: 'RESERVATION_CANCELLED',
  [EventType.RESERVATION_EXPIRED]: 'RESERVATION_EXPIRED',
};

/** 1234567n -> "1,234,567": fixed grouping, so screenshots and tests read the same anywhere. */
export function formatCount(n: bigint | number): string {
  const s = (typeof n === 'bigint' ? n : BigInt(Math.trunc(n))).toString();
  const neg = s.startsWith('-');
  const digits = neg ? s.slice(1) : s;
  return (neg ? '-' : '') + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** used/limit as a whole percentage, floored, so "100%" only when the limit is reached. */
export function percentUsed(used: bigint, limit: bigint): number {
  if (limit <= 0n) return used > 0n ? 100 : 0;
  return Number((used * 100n) / limit);
}

/**
 * "used / limit (pct%)", and "+ N held" for open reservations: the bar's value in words,
 * readable without its colour.
 */
export const usageText = (used: bigint, limit: bigint, reserved = 0n): string =>
  `${formatCount(used)} / ${formatCount(limit)} (${percentUsed(used, limit)}%)` +
  (reserved > 0n ? ` + ${formatCount(reserved)} held` : '');

/** A span of time in words, largest two units: "2 d 3 h", "5 min", "40 s". */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(Math.abs(ms) / 1000));
  const units: [string, number][] = [
    ['d', 86_400],
    ['h', 3_600],
    ['min', 60],
    ['s', 1],
  ];
  const parts: string[] = [];
  let rest = s;
  for (const [name, size] of units) {
    if (rest >= size || (name === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(rest / size)} ${name}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** "in 3 h 20 min" or "5 min ago", relative to now. */
export const formatRelative = (atMs: number, nowMs: number): string =>
  atMs >= nowMs ? `in ${formatDuration(atMs - nowMs)}` : `${formatDuration(nowMs - atMs)} ago`;

/** An instant as "2026-03-10 12:00:00 UTC": one unambiguous form everywhere. */
export function formatTime(t: Timestamp | undefined): string {
  if (!t) return '—';
  return new Date(timestampMs(t))
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');
}

/** How full a quota is, for sorting: over-full first; a zero limit with usage is the fullest. */
export function fullness(q: Pick<QuotaStatus, 'used' | 'limit'>): number {
  if (q.limit <= 0n) return q.used > 0n ? Number.POSITIVE_INFINITY : 1;
  return Number(q.used) / Number(q.limit);
}

/** Quotas sorted by how close they are to their limit, fullest first; ties by name. */
export function sortByCloseness<
  T extends Pick<QuotaStatus, 'used' | 'limit' | 'subject' | 'metric' | 'period'>,
>(quotas: readonly T[]): T[] {
  return [...quotas].sort(
    (a, b) =>
      fullness(b) - fullness(a) ||
      a.subject.localeCompare(b.subject) ||
      a.metric.localeCompare(b.metric) ||
      a.period - b.period,
  );
}

/** Subjects (not the "*" defaults) that start with the prefix, each once, in order. */
export function subjectsMatching(subjects: readonly string[], prefix: string): string[] {
  return [...new Set(subjects.filter((s) => s !== '*' && s.startsWith(prefix)))].sort();
}

export interface ChartPoint {
  /** Milliseconds since the start of its period. */
  offsetMs: number;
  used: number;
}

export interface UsageChart {
  current: ChartPoint[];
  previous: ChartPoint[];
  /** The length of a period (the current one), for the x axis. */
  periodMs: number;
}

/**
 * The counter of one quota (metric, period) over the current and the previous period, step by
 * step from its ledger events (oldest first). Each period starts at zero; usage adds, a refund
 * takes back what it credited to this period (or its amount), a reset of this period (or of
 * every period) goes back to zero. The previous period is taken to be as long as the current
 * one (a DST day is off by an hour; the chart is a picture, GetQuota is the truth).
 */
export function usageChart(
  events: readonly LedgerEvent[],
  q: { metric: string; period: Period; periodStartMs: number; periodEndMs: number | null },
  nowMs: number,
): UsageChart {
  const end = q.periodEndMs ?? nowMs;
  const periodMs = Math.max(1, end - q.periodStartMs);
  // NEVER: one period from the quota's start, nothing before it.
  const prevStart = q.periodEndMs === null ? q.periodStartMs : q.periodStartMs - periodMs;
  const current: ChartPoint[] = [{ offsetMs: 0, used: 0 }];
  const previous: ChartPoint[] = [{ offsetMs: 0, used: 0 }];
  let usedNow = 0;
  let usedPrev = 0;
  for (const e of events) {
    if (e.metric !== q.metric || !e.recordedAt) continue;
    const at = timestampMs(e.recordedAt);
    if (at < prevStart || at >= end) continue;
    const inCurrent = at >= q.periodStartMs;
    let used = inCurrent ? usedNow : usedPrev;
    if (e.type === EventType.USAGE) used += Number(e.amount);
    else if (e.type === EventType.REFUND) {
      const credited = e.credited.find((c) => c.period === q.period);
      used = Math.max(0, used - Number(credited ? credited.amount : e.amount));
    } else if (e.type === EventType.RESET_MANUAL || e.type === EventType.RESET_SCHEDULED) {
      if (e.period === q.period || e.period === Period.UNSPECIFIED) used = 0;
    } else continue;
    const point = { offsetMs: at - (inCurrent ? q.periodStartMs : prevStart), used };
    if (inCurrent) {
      usedNow = used;
      current.push(point);
    } else {
      usedPrev = used;
      previous.push(point);
    }
  }
  // The current period is drawn up to now, the previous one to its end; a NEVER quota has
  // no previous period.
  if (q.periodEndMs === null) previous.length = 0;
  else previous.push({ offsetMs: periodMs, used: usedPrev });
  current.push({
    offsetMs: Math.min(periodMs, Math.max(0, nowMs - q.periodStartMs)),
    used: usedNow,
  });
  return { current, previous, periodMs };
}

/**
 * Where a live follower resumes: positions are taken when an event is written, not when it
 * commits, so an event can appear below one already seen. Re-read from the oldest event seen
 * in the last `windowMs` of server time (the set of positions shown removes the repeats).
 */
export function followAfter(events: readonly LedgerEvent[], windowMs = 30_000): bigint {
  if (events.length === 0) return 0n;
  const newest = Math.max(...events.map((e) => (e.recordedAt ? timestampMs(e.recordedAt) : 0)));
  let after = events.reduce((m, e) => (e.position > m ? e.position : m), 0n);
  for (const e of events) {
    const at = e.recordedAt ? timestampMs(e.recordedAt) : 0;
    if (at >= newest - windowMs && e.position - 1n < after) after = e.position - 1n;
  }
  return after;
}
