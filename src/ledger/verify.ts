import type { StoredEvent } from '../domain/events.js';
import { compareSubject, type CounterDifference } from '../domain/projection-check.js';
import { counterKey, type CounterState } from '../domain/quota.js';
import {
  COUNTER_COLUMNS,
  counterFromRow,
  EVENT_COLUMNS,
  eventFromRow,
  type CounterRow,
  type EventRow,
} from './codec.js';
import { append } from './append.js';
import { inTransaction, query, storeOf, type Db, type Store, type Tx } from './db.js';

export type { CounterDifference } from '../domain/projection-check.js';

export interface VerifyResult {
  subjectsChecked: number;
  differences: CounterDifference[];
  /** Counters rewritten from the ledger (repair mode). */
  repaired: number;
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
  db: Store,
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
      // The ledger's counters go in through the one append (no events, so the subject keeps
      // its sequence); a counter the ledger has none of is a stray of the projection.
      const counters = diffs.flatMap((d) =>
        d.ledger ? [{ metric: d.metric, period: d.period, state: d.ledger }] : [],
      );
      const last = events.at(-1)?.sequence ?? 0n;
      await append(tx, [{ subject, events: [], counters, version: null, lastSequence: last }]);
      for (const d of diffs.filter((x) => !x.ledger)) {
        await tx.query('DELETE FROM counters WHERE subject = $1 AND metric = $2 AND period = $3', [
          subject,
          d.metric,
          d.period,
        ]);
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
  store: Db | Store,
  opts: { subject?: string | null; repair?: boolean } = {},
): Promise<VerifyResult> {
  const db = storeOf(store);
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
