import { foldCounters } from '../domain/fold.js';
import type { StoredEvent } from '../domain/events.js';
import type { PeriodKind } from '../domain/period.js';
import { counterKey, type CounterState } from '../domain/quota.js';
import {
  COUNTER_COLUMNS,
  counterFromRow,
  EVENT_COLUMNS,
  eventFromRow,
  type CounterRow,
  type EventRow,
} from './codec.js';
import { inTransaction, query, type Db, type Tx } from './db.js';

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

export interface VerifyResult {
  subjectsChecked: number;
  differences: CounterDifference[];
  /** Counters rewritten from the ledger (repair mode). */
  repaired: number;
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

async function readSubject(
  tx: Tx,
  subject: string,
): Promise<[StoredEvent[], Map<string, CounterState>]> {
  const e = await tx.query<EventRow>(
    `SELECT ${EVENT_COLUMNS} FROM ledger_events WHERE subject = $1 ORDER BY sequence`,
    [subject],
  );
  const c = await tx.query<CounterRow>(
    `SELECT ${COUNTER_COLUMNS} FROM counters WHERE subject = $1`,
    [subject],
  );
  return [
    e.rows.map(eventFromRow),
    new Map(c.rows.map((r) => [counterKey(r.metric, r.period), counterFromRow(r)])),
  ];
}

/** Checks one subject in a read-only snapshot, or (repair) under its lock, rewriting what differs. */
async function checkSubject(
  db: Db,
  subject: string,
  repair: boolean,
): Promise<CounterDifference[]> {
  return inTransaction(db, async (tx) => {
    if (repair) {
      // The lock every writer takes: nothing changes this subject until the repair commits.
      // An UPDATE rather than SELECT ... FOR UPDATE, so the row gets a new version: a Consume
      // that read the subject before the repair then sees the change and redoes its work.
      await tx.query('UPDATE subjects SET last_sequence = last_sequence WHERE subject = $1', [
        subject,
      ]);
    } else {
      // One snapshot for both reads, so a write landing between them is not a difference.
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
    }
    const [events, projection] = await readSubject(tx, subject);
    const diffs = compareSubject(subject, events, projection);
    if (repair) {
      for (const d of diffs) {
        if (d.ledger) {
          await tx.query(
            `INSERT INTO counters (${COUNTER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (subject, metric, period) DO UPDATE SET used = EXCLUDED.used,
               reserved = EXCLUDED.reserved,
               period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end,
               last_reset_at = EXCLUDED.last_reset_at, last_sequence = EXCLUDED.last_sequence`,
            [
              subject,
              d.metric,
              d.period,
              d.ledger.used,
              d.ledger.periodStart,
              d.ledger.periodEnd,
              d.ledger.lastResetAt,
              d.ledger.lastSequence,
              d.ledger.reserved,
            ],
          );
        } else {
          await tx.query(
            'DELETE FROM counters WHERE subject = $1 AND metric = $2 AND period = $3',
            [subject, d.metric, d.period],
          );
        }
      }
    }
    return diffs;
  });
}

/**
 * Folds the ledger and compares it with every counter (or one subject's), reporting each
 * difference with the positions of the events involved. With `repair`, rewrites differing
 * counters from the ledger, one subject per transaction under that subject's lock, so the
 * service keeps running meanwhile.
 */
export async function verifyProjection(
  db: Db,
  opts: { subject?: string | null; repair?: boolean } = {},
): Promise<VerifyResult> {
  const result: VerifyResult = { subjectsChecked: 0, differences: [], repaired: 0 };
  let after = '';
  for (;;) {
    const subjects = opts.subject
      ? [{ subject: opts.subject }]
      : await query<{ subject: string }>(
          db,
          `SELECT subject FROM (SELECT subject FROM subjects UNION SELECT subject FROM counters) s
            WHERE subject > $1 ORDER BY subject LIMIT 500`,
          [after],
        );
    for (const { subject } of subjects) {
      const diffs = await checkSubject(db, subject, opts.repair ?? false);
      result.subjectsChecked++;
      result.differences.push(...diffs);
      if (opts.repair) result.repaired += diffs.length;
    }
    if (opts.subject || subjects.length < 500) return result;
    after = subjects.at(-1)!.subject;
  }
}
