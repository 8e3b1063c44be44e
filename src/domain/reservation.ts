import { judgeConsume } from './consume.js';
import { invalid, QuotaError } from './errors.js';
import type { Effect } from './events.js';
import type { PeriodKind } from './period.js';
import { holdCounts, viewOf, type LiveQuota, type OpenHold, type QuotaView } from './quota.js';
import { INT64_MAX } from './counter.js';

export interface ReserveCommand {
  subject: string;
  metric: string;
  amount: bigint;
  ttlMs: number;
  idempotencyKey: string | null;
  attributes: Record<string, string>;
}

export interface CommitCommand {
  subject: string;
  reservationId: string;
  amount: bigint;
  allowOverrun: boolean;
  reason: string | null;
}

export interface CancelCommand {
  subject: string;
  reservationId: string;
  reason: string | null;
}

export interface ReserveDecision {
  allowed: boolean;
  /** Every quota after the hold (before it when refused), with `exceeded` marked. */
  quotas: QuotaView[];
  retryAt: Date | null;
  /** When allowed: what the hold adds to each counter's `reserved`. */
  holds: Effect[];
}

const overflow = (q: LiveQuota, what: bigint): QuotaError =>
  new QuotaError(
    'OUT_OF_RANGE',
    `amount: ${what} more would overflow the ${q.def.period} counter of ${q.def.metric} (used ${q.counter.used}, reserved ${q.held}, int64 maximum ${INT64_MAX})`,
  );

/**
 * Decides a Reserve exactly like an ENFORCE Consume against used + reserved of every quota
 * (all or nothing); the amount is held, not used. Pure: quotas are rolled to now and `held`
 * already leaves lapsed holds out.
 */
export function judgeReserve(
  live: readonly LiveQuota[],
  subject: string,
  amount: bigint,
): ReserveDecision {
  const d = judgeConsume(live, subject, amount, 'DRY_RUN');
  if (!d.allowed) return { allowed: false, quotas: d.quotas, retryAt: d.retryAt, holds: [] };
  for (const q of live) {
    if (q.counter.used + q.held + amount > INT64_MAX) throw overflow(q, amount);
  }
  return {
    allowed: true,
    quotas: live.map((q) => viewOf({ ...q, held: q.held + amount }, subject)),
    retryAt: null,
    holds: live.map((q) => ({
      period: q.def.period,
      periodStart: q.counter.periodStart,
      periodEnd: q.counter.periodEnd,
      delta: amount,
    })),
  };
}

/**
 * What settling `hold` gives back: -amount on each counter still in the period the hold was
 * made in. A counter that rolled since has already dropped the hold (with its period).
 */
export function releasesOf(
  hold: OpenHold,
  counters: readonly {
    period: PeriodKind;
    counter: { periodStart: Date; periodEnd: Date | null };
  }[],
): Effect[] {
  return counters
    .filter((c) => holdCounts(hold, c.period, c.counter.periodStart))
    .map((c) => ({
      period: c.period,
      periodStart: c.counter.periodStart,
      periodEnd: c.counter.periodEnd,
      delta: -hold.amount,
    }));
}

export const expiredError = (hold: OpenHold): QuotaError =>
  new QuotaError(
    'FAILED_PRECONDITION',
    `reservation_id: reservation "${hold.reservationId}" expired at ${hold.expiresAt.toISOString()}; its hold no longer counts and cannot be settled (reserve again)`,
  );

export interface CommitDecision {
  /** Usage charged to each current period (+amount). */
  effects: Effect[];
  /** Holds released (-held amount), only on counters still in the hold's period. */
  holds: Effect[];
  /** Some quota ends above its limit (possible only for a hold made before a period roll). */
  overLimit: boolean;
  /** Every quota after the commit. */
  quotas: QuotaView[];
}

/**
 * Settles a hold with the actual usage, charged to the periods current now. Up to the held
 * amount it is always recorded: the quota was promised when the hold was made (if the period
 * rolled since, the usage lands in the new period and may push it over). Above the hold only
 * with `allowOverrun`, and only if the whole amount fits every quota once the hold is released.
 */
export function judgeCommit(
  hold: OpenHold,
  live: readonly LiveQuota[],
  subject: string,
  amount: bigint,
  allowOverrun: boolean,
  now: Date,
): CommitDecision {
  if (hold.expiresAt.getTime() <= now.getTime()) throw expiredError(hold);
  const holds = releasesOf(
    hold,
    live.map((q) => ({ period: q.def.period, counter: q.counter })),
  );
  const released = (q: LiveQuota): bigint =>
    holds.some((h) => h.period === q.def.period) ? hold.amount : 0n;
  if (amount > hold.amount) {
    if (!allowOverrun) {
      throw invalid(
        'amount',
        `${amount} is more than the ${hold.amount} held by reservation "${hold.reservationId}"; set allow_overrun to charge more if it still fits`,
      );
    }
    const refusing = live.filter(
      (q) => q.counter.used + q.held - released(q) + amount > q.def.limit,
    );
    if (refusing.length > 0) {
      const q = refusing[0]!;
      throw new QuotaError(
        'FAILED_PRECONDITION',
        `amount: ${amount} does not fit the ${q.def.period} quota of ${q.def.metric} (limit ${q.def.limit}, used ${q.counter.used}, reserved by others ${q.held - released(q)}); the reservation stays open`,
      );
    }
  }
  for (const q of live) {
    if (q.counter.used + q.held - released(q) + amount > INT64_MAX) throw overflow(q, amount);
  }
  const after = live.map((q) => ({
    ...q,
    held: q.held - released(q),
    counter: { ...q.counter, used: q.counter.used + amount },
  }));
  const over = after.map((q) => q.counter.used + q.held > q.def.limit);
  return {
    effects: live.map((q) => ({
      period: q.def.period,
      periodStart: q.counter.periodStart,
      periodEnd: q.counter.periodEnd,
      delta: amount,
    })),
    holds,
    overLimit: over.includes(true),
    quotas: after.map((q, i) => viewOf(q, subject, q.counter.used, over[i])),
  };
}
