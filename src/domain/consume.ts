import { QuotaError } from './errors.js';
import { viewOf, type LiveQuota, type QuotaView } from './quota.js';
import { INT64_MAX } from './validate.js';

export type ConsumeMode = 'ENFORCE' | 'RECORD' | 'DRY_RUN';

export interface ConsumeDecision {
  /** The amount fits every quota. */
  allowed: boolean;
  /** A usage event is to be appended. */
  record: boolean;
  /** Every quota after the call (before it when nothing is recorded), with `exceeded` marked. */
  quotas: QuotaView[];
  /** When refused: the earliest instant every refusing quota has reset; null if that never comes. */
  retryAt: Date | null;
}

/**
 * Decides a Consume against quotas already rolled to the current period. Pure: the caller
 * holds the subject's lock, so nothing changes between this and the write.
 */
export function decideConsume(
  quotas: readonly LiveQuota[],
  subject: string,
  amount: bigint,
  mode: ConsumeMode,
): ConsumeDecision {
  // Held amounts count like usage: a hold is a promise that the amount is there at commit.
  const over = quotas.map((q) => q.counter.used + q.held + amount > q.def.limit);
  const allowed = !over.includes(true);
  const record = mode === 'RECORD' || (mode === 'ENFORCE' && allowed);
  if (record) {
    for (const q of quotas) {
      if (q.counter.used + q.held + amount > INT64_MAX) {
        throw new QuotaError(
          'OUT_OF_RANGE',
          `amount: ${amount} more would overflow the ${q.def.period} counter of ${q.def.metric} (used ${q.counter.used}, reserved ${q.held}, int64 maximum ${INT64_MAX})`,
        );
      }
    }
  }
  const views = quotas.map((q, i) =>
    viewOf(q, subject, record ? q.counter.used + amount : q.counter.used, over[i]),
  );
  return {
    allowed,
    record,
    quotas: views,
    retryAt: allowed ? null : retryAt(quotas, amount, over),
  };
}

function retryAt(quotas: readonly LiveQuota[], amount: bigint, over: boolean[]): Date | null {
  let latest: Date | null = null;
  for (const [i, q] of quotas.entries()) {
    if (!over[i]) continue;
    // Waiting helps only if a fresh period could hold the amount and one is coming.
    if (amount > q.def.limit || q.counter.periodEnd === null) return null;
    if (!latest || q.counter.periodEnd > latest) latest = q.counter.periodEnd;
  }
  return latest;
}

/** How much of `amount` each counter can give back without going below zero. */
export function refundCredits(used: readonly bigint[], amount: bigint): bigint[] {
  return used.map((u) => (u < amount ? u : amount));
}
