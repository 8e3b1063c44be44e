import { foldCounters } from './fold.js';
import type { StoredEvent } from './events.js';
import type { PeriodKind } from './period.js';
import type { CounterState } from './quota.js';

export interface CounterDifference {
  subject: string;
  metric: string;
  period: PeriodKind;
  /** What the ledger's fold says; null if the ledger has no such counter. */
  ledger: CounterState | null;
  /** What the counters table holds; null if it has no row. */
  projection: CounterState | null;
  /** Positions of the events that made the ledger's value (since its last reset), newest last. */
  positions: bigint[];
}

const MAX_POSITIONS = 20;

const same = (a: CounterState, b: CounterState): boolean =>
  a.used === b.used &&
  a.reserved === b.reserved &&
  a.periodStart.getTime() === b.periodStart.getTime() &&
  (a.periodEnd?.getTime() ?? null) === (b.periodEnd?.getTime() ?? null) &&
  (a.lastResetAt?.getTime() ?? null) === (b.lastResetAt?.getTime() ?? null) &&
  a.lastSequence === b.lastSequence;

/** The events that built a counter's current value: everything since its last reset. */
function positionsOf(events: StoredEvent[], metric: string, period: PeriodKind): bigint[] {
  let out: bigint[] = [];
  for (const e of events) {
    if (e.metric !== metric) continue;
    if ((e.type === 'RESET_SCHEDULED' || e.type === 'RESET_MANUAL') && e.period === period)
      out = [e.position];
    else if (
      [...(e.data.effects ?? []), ...(e.data.holds ?? [])].some((fx) => fx.period === period)
    )
      out.push(e.position);
  }
  return out.slice(-MAX_POSITIONS);
}

/** Compares one subject's counters with the fold of its ledger. */
export function compareSubject(
  subject: string,
  events: StoredEvent[],
  projection: Map<string, CounterState>,
): CounterDifference[] {
  const folded = foldCounters(events);
  const out: CounterDifference[] = [];
  for (const key of new Set([...folded.keys(), ...projection.keys()])) {
    const l = folded.get(key) ?? null;
    const p = projection.get(key) ?? null;
    if (l && p && same(l, p)) continue;
    const [metric, period] = key.split('\u0000') as [string, PeriodKind];
    out.push({
      subject,
      metric,
      period,
      ledger: l,
      projection: p,
      positions: positionsOf(events, metric, period),
    });
  }
  return out;
}
