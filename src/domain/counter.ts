import type { Effect, StoredEvent } from './events.js';
import type { PeriodKind } from './period.js';
import { counterKey, type CounterState } from './quota.js';

/** An event with its place in its subject's ledger: all a counter transition needs of it. */
export type CountedEvent = Pick<
  StoredEvent,
  'type' | 'metric' | 'period' | 'periodStart' | 'periodEnd' | 'recordedAt' | 'data' | 'sequence'
>;

/** The largest count a counter holds (PostgreSQL bigint); a change past it is refused. */
export const INT64_MAX = 2n ** 63n - 1n;

const fresh = (fx: Effect): CounterState => ({
  used: 0n,
  reserved: 0n,
  periodStart: fx.periodStart,
  periodEnd: fx.periodEnd,
  lastResetAt: null,
  lastSequence: 0n,
});

/**
 * The counter of (event.metric, period) after `event`, or null while there is none: the only
 * place a counter changes. Usage and refunds add their effect for the period (a counter
 * starts at zero in the effect's period); a scheduled reset starts the new period from zero,
 * holds included (they belong to the period they were made in); a manual reset zeroes the
 * usage of an existing counter; reservation events add their holds to a counter still in the
 * period the hold was made in, and a commit also adds its usage.
 */
export function evolveCounter(
  counter: CounterState | null,
  event: CountedEvent,
  period: PeriodKind,
): CounterState | null {
  let c = counter;
  const at = event.sequence;
  switch (event.type) {
    case 'USAGE':
    case 'REFUND':
    case 'RESERVATION_COMMITTED':
      for (const fx of event.data.effects ?? []) {
        if (fx.period !== period) continue;
        const base = c ?? fresh(fx);
        c = { ...base, used: base.used + fx.delta, lastSequence: at };
      }
      break;
    case 'RESET_SCHEDULED':
      if (event.period === period && event.periodStart) {
        c = {
          used: 0n,
          reserved: 0n,
          periodStart: event.periodStart,
          periodEnd: event.periodEnd,
          lastResetAt: event.periodStart,
          lastSequence: at,
        };
      }
      break;
    case 'RESET_MANUAL':
      if (event.period === period && c) {
        c = { ...c, used: 0n, lastResetAt: event.recordedAt, lastSequence: at };
      }
      break;
    default:
      break;
  }
  for (const fx of event.data.holds ?? []) {
    if (fx.period !== period) continue;
    const base = c ?? fresh(fx);
    // A hold's release lands only on the period it was made in; a rolled counter dropped it.
    if (base.periodStart.getTime() !== fx.periodStart.getTime()) continue;
    c = { ...base, reserved: base.reserved + fx.delta, lastSequence: at };
  }
  return c;
}

/** A counter an event changed, and what it was before (null: it did not exist). */
export interface CounterChange {
  key: string;
  metric: string;
  period: PeriodKind;
  before: CounterState | null;
}

/**
 * Applies `event` to a subject's counters (keyed by counterKey) with evolveCounter.
 * Returns the keys of the counters it changed.
 */
export function evolveCounters(
  counters: Map<string, CounterState>,
  event: CountedEvent,
): CounterChange[] {
  const changed: CounterChange[] = [];
  const metric = event.metric;
  if (!metric) return changed;
  const seen: PeriodKind[] = [];
  const apply = (period: PeriodKind): void => {
    if (seen.includes(period)) return;
    seen.push(period);
    const key = counterKey(metric, period);
    const before = counters.get(key) ?? null;
    const after = evolveCounter(before, event, period);
    if (after === null || after === before) return;
    counters.set(key, after);
    changed.push({ key, metric, period, before });
  };
  // The periods the event may change: its own, and those of its effects and holds.
  if (event.period) apply(event.period);
  for (const fx of event.data.effects ?? []) apply(fx.period);
  for (const fx of event.data.holds ?? []) apply(fx.period);
  return changed;
}
