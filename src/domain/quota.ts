import { nextWindow, periodContaining, PERIOD_KINDS, type PeriodKind } from './period.js';

/** The subject whose quotas are the defaults of every subject without its own. */
export const DEFAULT_SUBJECT = '*';

/** A quota definition as stored. */
export interface QuotaDef {
  subject: string;
  metric: string;
  period: PeriodKind;
  limit: bigint;
  timeZone: string;
  anchorDay: number;
  updatedAt: Date;
}

/** The projection row of one (subject, metric, period). */
export interface CounterState {
  used: bigint;
  /** Open holds of this period, as the ledger folds them (expired-but-unswept ones included). */
  reserved: bigint;
  periodStart: Date;
  periodEnd: Date | null;
  lastResetAt: Date | null;
  lastSequence: bigint;
}

/** What a caller sees of one quota. */
export interface QuotaView {
  subject: string;
  metric: string;
  period: PeriodKind;
  timeZone: string;
  anchorDay: number;
  limit: bigint;
  used: bigint;
  /** Open, unexpired holds of this period. */
  reserved: bigint;
  /** max(limit - used - reserved, 0). */
  remaining: bigint;
  periodStart: Date;
  periodEnd: Date | null;
  lastResetAt: Date | null;
  isDefault: boolean;
  exceeded: boolean;
}

/** A counter moving to a new period because the old one has ended. */
export interface RollPlan {
  previousStart: Date;
  previousEnd: Date;
  usedBefore: bigint;
  start: Date;
  end: Date | null;
}

/** A quota that applies to a subject, with its counter brought to the period containing now. */
export interface LiveQuota {
  def: QuotaDef;
  isDefault: boolean;
  counter: CounterState;
  /** False when no counter row exists yet (nothing was ever charged). */
  stored: boolean;
  roll: RollPlan | null;
  /** What open holds take from this period now: counter.reserved less the holds that lapsed. */
  held: bigint;
}

/** An open hold (a reservation not yet settled), as the decisions need it. */
export interface OpenHold {
  reservationId: string;
  metric: string;
  amount: bigint;
  expiresAt: Date;
  sequence: bigint;
  /** The counters (period and its start) the hold was added to when it was made. */
  holds: { period: PeriodKind; periodStart: Date }[];
}

/** Whether `h` was added to the counter of `period` that started at `periodStart`. */
export const holdCounts = (h: OpenHold, period: PeriodKind, periodStart: Date): boolean =>
  h.holds.some((x) => x.period === period && x.periodStart.getTime() === periodStart.getTime());

/**
 * Holds past their expiry no longer count, whether or not the sweep has written their
 * RESERVATION_EXPIRED event yet (the same lazy rule as period rolls). `lapsed` may hold any
 * open holds; those expiring after `now` still count.
 */
function heldOf(q: LiveQuota, lapsed: readonly OpenHold[], now: Date): bigint {
  let held = q.counter.reserved;
  for (const h of lapsed) {
    if (h.expiresAt.getTime() > now.getTime()) continue;
    if (h.metric === q.def.metric && holdCounts(h, q.def.period, q.counter.periodStart))
      held -= h.amount;
  }
  return held > 0n ? held : 0n;
}

export const counterKey = (metric: string, period: PeriodKind): string =>
  `${metric}\u0000${period}`;

const periodOrder = (p: PeriodKind): number => PERIOD_KINDS.indexOf(p);

/**
 * The quotas that apply to `subject`: its own, plus each default ("*") quota on a
 * (metric, period) it has none of its own for. Sorted by metric, then DAY..NEVER.
 */
export function applicableQuotas(
  defs: readonly QuotaDef[],
  subject: string,
): { def: QuotaDef; isDefault: boolean }[] {
  const chosen = new Map<string, { def: QuotaDef; isDefault: boolean }>();
  for (const def of defs) {
    if (def.subject !== subject && def.subject !== DEFAULT_SUBJECT) continue;
    const key = counterKey(def.metric, def.period);
    const isDefault = def.subject === DEFAULT_SUBJECT && subject !== DEFAULT_SUBJECT;
    const prev = chosen.get(key);
    if (!prev || (prev.isDefault && !isDefault)) chosen.set(key, { def, isDefault });
  }
  return [...chosen.values()].sort(
    (a, b) =>
      a.def.metric.localeCompare(b.def.metric) ||
      periodOrder(a.def.period) - periodOrder(b.def.period),
  );
}

/** Brings a stored counter (or none) to the period containing `now`. */
export function liveQuota(
  def: QuotaDef,
  isDefault: boolean,
  stored: CounterState | null,
  now: Date,
): LiveQuota {
  if (!stored) {
    const w = periodContaining(def, now);
    const counter = {
      used: 0n,
      reserved: 0n,
      periodStart: w.start,
      periodEnd: w.end,
      lastResetAt: null,
      lastSequence: 0n,
    };
    return { def, isDefault, counter, stored: false, roll: null, held: 0n };
  }
  if (stored.periodEnd === null || stored.periodEnd.getTime() > now.getTime()) {
    return { def, isDefault, counter: stored, stored: true, roll: null, held: stored.reserved };
  }
  const w = nextWindow(def, stored.periodEnd, now);
  const roll: RollPlan = {
    previousStart: stored.periodStart,
    previousEnd: stored.periodEnd,
    usedBefore: stored.used,
    start: w.start,
    end: w.end,
  };
  // A scheduled reset's last_reset_at is the boundary itself, whoever notices it and when.
  // Holds belong to the period they were made in and vanish with its roll.
  const counter = {
    ...stored,
    used: 0n,
    reserved: 0n,
    periodStart: w.start,
    periodEnd: w.end,
    lastResetAt: w.start,
  };
  return { def, isDefault, counter, stored: true, roll, held: 0n };
}

/** What is left of a limit: max(limit - used - reserved, 0). */
export function remainingOf(limit: bigint, used: bigint, reserved: bigint): bigint {
  const left = limit - used - reserved;
  return left > 0n ? left : 0n;
}

export function viewOf(
  q: LiveQuota,
  subject: string,
  used = q.counter.used,
  exceeded = false,
): QuotaView {
  return {
    subject,
    metric: q.def.metric,
    period: q.def.period,
    timeZone: q.def.timeZone,
    anchorDay: q.def.anchorDay,
    limit: q.def.limit,
    used,
    reserved: q.held,
    remaining: remainingOf(q.def.limit, used, q.held),
    periodStart: q.counter.periodStart,
    periodEnd: q.counter.periodEnd,
    lastResetAt: q.counter.lastResetAt,
    isDefault: q.isDefault,
    exceeded,
  };
}

/** Every quota that applies to `subject` (optionally of one period), brought to `now`. */
export function liveQuotasOf(
  defs: readonly QuotaDef[],
  counters: ReadonlyMap<string, CounterState>,
  subject: string,
  now: Date,
  period: PeriodKind | null = null,
  lapsed: readonly OpenHold[] = [],
): LiveQuota[] {
  return applicableQuotas(defs, subject)
    .filter((a) => period === null || a.def.period === period)
    .map((a) => {
      const q = liveQuota(
        a.def,
        a.isDefault,
        counters.get(counterKey(a.def.metric, a.def.period)) ?? null,
        now,
      );
      q.held = heldOf(q, lapsed, now);
      return q;
    });
}
