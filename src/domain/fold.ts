import { evolveCounters, type CountedEvent } from './counter.js';
import type { StoredEvent } from './events.js';
import { counterKey, type CounterState, type QuotaDef } from './quota.js';

/**
 * The counters of one subject as its ledger says they are: the definition of the projection,
 * built from evolveCounter like every writer's counters. Events must be in sequence order.
 */
export function foldCounters(events: Iterable<CountedEvent>): Map<string, CounterState> {
  const counters = new Map<string, CounterState>();
  for (const e of events) evolveCounters(counters, e);
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
