import { foldCounters } from '../domain/fold.js';
import type { StoredEvent } from '../domain/events.js';
import { counterKey, type CounterState } from '../domain/quota.js';
import {
  COUNTER_COLUMNS,
  counterFromRow,
  EVENT_COLUMNS,
  eventFromRow,
  type CounterRow,
  type EventRow,
} from './codec.js';
import { inTransaction, query, type Db } from './db.js';

export interface CounterDifference {
  subject: string;
  key: string;
  ledger: CounterState | null;
  projection: CounterState | null;
}

const same = (a: CounterState, b: CounterState): boolean =>
  a.used === b.used &&
  a.periodStart.getTime() === b.periodStart.getTime() &&
  (a.periodEnd?.getTime() ?? null) === (b.periodEnd?.getTime() ?? null) &&
  (a.lastResetAt?.getTime() ?? null) === (b.lastResetAt?.getTime() ?? null) &&
  a.lastSequence === b.lastSequence;

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
    if (!l || !p || !same(l, p)) out.push({ subject, key, ledger: l, projection: p });
  }
  return out;
}

/** Folds the whole ledger and reports every counter that differs from it. */
export async function verifyProjection(db: Db): Promise<CounterDifference[]> {
  const subjects = await query<{ subject: string }>(
    db,
    'SELECT subject FROM subjects UNION SELECT subject FROM counters ORDER BY subject',
  );
  const out: CounterDifference[] = [];
  for (const { subject } of subjects) {
    // One snapshot for both reads, so a write landing between them is not a difference.
    const [events, counters] = await inTransaction(db, async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const e = await tx.query<EventRow>(
        `SELECT ${EVENT_COLUMNS} FROM ledger_events WHERE subject = $1 ORDER BY sequence`,
        [subject],
      );
      const c = await tx.query<CounterRow>(
        `SELECT ${COUNTER_COLUMNS} FROM counters WHERE subject = $1`,
        [subject],
      );
      return [e.rows, c.rows] as const;
    });
    const projection = new Map(
      counters.map((r) => [counterKey(r.metric, r.period), counterFromRow(r)]),
    );
    out.push(...compareSubject(subject, events.map(eventFromRow), projection));
  }
  return out;
}
