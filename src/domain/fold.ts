import type { Effect, StoredEvent } from './events.js';
import { counterKey, type CounterState, type QuotaDef } from './quota.js';

/**
 * The counters of one subject as its ledger says they are: the definition of the projection.
 * Events must be in sequence order.
 */
export function foldCounters(events: Iterable<StoredEvent>): Map<string, CounterState> {
  const counters = new Map<string, CounterState>();
  for (const e of events) {
    if (!e.metric) continue;
    switch (e.type) {
      case 'USAGE':
      case 'REFUND':
        for (const fx of e.data.effects ?? []) {
          const key = counterKey(e.metric, fx.period);
          const c = counters.get(key) ?? {
            used: 0n,
            reserved: 0n,
            periodStart: fx.periodStart,
            periodEnd: fx.periodEnd,
            lastResetAt: null,
            lastSequence: 0n,
          };
          counters.set(key, { ...c, used: c.used + fx.delta, lastSequence: e.sequence });
        }
        break;
      case 'RESET_SCHEDULED':
        if (e.period && e.periodStart) {
          // Holds belong to the period they were made in and vanish with its roll.
          counters.set(counterKey(e.metric, e.period), {
            used: 0n,
            reserved: 0n,
            periodStart: e.periodStart,
            periodEnd: e.periodEnd,
            lastResetAt: e.periodStart,
            lastSequence: e.sequence,
          });
        }
        break;
      case 'RESET_MANUAL': {
        const key = e.period ? counterKey(e.metric, e.period) : null;
        const c = key ? counters.get(key) : undefined;
        if (key && c)
          counters.set(key, {
            ...c,
            used: 0n,
            lastResetAt: e.recordedAt,
            lastSequence: e.sequence,
          });
        break;
      }
      default:
        break;
    }
    foldHolds(counters, e);
  }
  return counters;
}

/** The quota definitions as QUOTA_SET / QUOTA_DELETED events left them. */
export function foldQuotaDefs(events: Iterable<StoredEvent>): QuotaDef[] {
  const defs = new Map<string, QuotaDef>();
  for (const e of events) {
    if (!e.metric || !e.period) continue;
    const key = `${e.subject}\u0000${counterKey(e.metric, e.period)}`;
    if (e.type === 'QUOTA_SET' && e.data.quota) {
      defs.set(key, {
        subject: e.subject,
        metric: e.metric,
        period: e.period,
        ...e.data.quota,
        updatedAt: e.recordedAt,
      });
    } else if (e.type === 'QUOTA_DELETED') {
      defs.delete(key);
    }
  }
  return [...defs.values()];
}

/**
 * The `reserved` side of reservation events. A hold is added to the counters of the periods
 * current when it was made; a release subtracts only from a counter still in that period (the
 * event lists only those). A commit's usage is in `effects`, folded like a USAGE above.
 */
function foldHolds(counters: Map<string, CounterState>, e: StoredEvent): void {
  if (!e.metric) return;
  if (e.type === 'RESERVATION_COMMITTED') {
    for (const fx of e.data.effects ?? []) {
      const key = counterKey(e.metric, fx.period);
      const c = counters.get(key) ?? fresh(fx);
      counters.set(key, { ...c, used: c.used + fx.delta, lastSequence: e.sequence });
    }
  }
  for (const fx of e.data.holds ?? []) {
    const key = counterKey(e.metric, fx.period);
    const c = counters.get(key) ?? fresh(fx);
    if (c.periodStart.getTime() !== fx.periodStart.getTime()) continue;
    counters.set(key, { ...c, reserved: c.reserved + fx.delta, lastSequence: e.sequence });
  }
}

const fresh = (fx: Effect): CounterState => ({
  used: 0n,
  reserved: 0n,
  periodStart: fx.periodStart,
  periodEnd: fx.periodEnd,
  lastResetAt: null,
  lastSequence: 0n,
});
