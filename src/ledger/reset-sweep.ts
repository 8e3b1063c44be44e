import { nextWindow, type PeriodKind, type Window } from '../domain/period.js';
import { counterKey } from '../domain/quota.js';
import { rollEvent } from '../domain/roll.js';
import { Stage, type SubjectChanges } from '../domain/subject-state.js';
import { append } from './append.js';
import {
  inTransaction,
  query,
  reportAppended,
  storeOf,
  type Db,
  type Store,
  type Tx,
} from './db.js';

/** A counter is due when its period has ended and a quota (own or default) still applies to it. */
const DUE = `c.period_end <= $1 AND EXISTS (
  SELECT 1 FROM quotas q
   WHERE q.subject IN (c.subject, '*') AND q.metric = c.metric AND q.period = c.period)`;

interface DueRow {
  subject: string;
  metric: string;
  period: PeriodKind;
  used: bigint;
  reserved: bigint;
  period_start: Date;
  period_end: Date;
  last_reset_at: Date | null;
  counter_sequence: bigint;
  time_zone: string;
  anchor_day: number;
}

// A due counter with the settings of the quota that applies to it (its own, else the default).
const DUE_COLUMNS = `c.subject, c.metric, c.period, c.used, c.reserved, c.period_start,
  c.period_end, c.last_reset_at, c.last_sequence AS counter_sequence,
  coalesce(own.time_zone, def.time_zone) AS time_zone,
  coalesce(own.anchor_day, def.anchor_day) AS anchor_day`;
const DUE_QUOTAS = `
  LEFT JOIN quotas own ON own.subject = c.subject AND own.metric = c.metric AND own.period = c.period
  LEFT JOIN quotas def ON def.subject = '*' AND def.metric = c.metric AND def.period = c.period`;

// Workers of the main pass in flight at once.
const WORKERS = 2;

export interface SweepOptions {
  now: Date;
  batchSize: number;
  runId: string;
  /** Checked between batches: a stopping service finishes the batch in hand and no more. */
  shouldStop?: () => boolean;
  /** Told of every committed batch, so a sweep that fails later still counts what it did. */
  onRolled?: (n: number) => void;
}

export interface SweepResult {
  rolled: number;
  /** False when the sweep was told to stop before it had taken everything due. */
  complete: boolean;
}

type Cursor = [subject: string, metric: string, period: string];

const after = (a: Cursor, b: Cursor): boolean => {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! > b[i]!;
  return false;
};

/**
 * Rolls every due counter to the period containing `now`, one RESET_SCHEDULED event each.
 *
 * The main pass works in batches in key order, each batch one transaction that locks its
 * counters and their subjects (the lock every writer of a subject takes) with SKIP LOCKED,
 * so replicas and this sweep's own workers take different rows and nobody waits; locked
 * rows are re-read at their newest version, and events, counters and sequences are written
 * with one set-based statement. Rows that were busy (a call, another sweep) are skipped
 * there; a final pass then takes whatever is still due, waiting for each subject's lock,
 * so a sweep that reports success leaves nothing due behind. The unique index on (subject,
 * metric, period, period_start) makes a duplicate impossible whatever happens.
 */
export async function sweep(store: Db | Store, o: SweepOptions): Promise<SweepResult> {
  const db = storeOf(store);
  const windows = new Map<string, Window>();
  let rolled = 0;
  let cursor: Cursor = ['', '', ''];
  let done = false;
  let failed = false;
  const stopping = () => failed || (o.shouldStop?.() ?? false);
  const worker = async (): Promise<void> => {
    while (!done && !stopping()) {
      const from = cursor;
      const batch = await inTransaction(db, (tx) => mainBatch(tx, o, windows, from));
      reportAppended(db, { RESET_SCHEDULED: batch.rolled });
      rolled += batch.rolled;
      o.onRolled?.(batch.rolled);
      if (batch.last === null) done = true;
      // Workers leapfrog: rows a sibling holds are skipped, so the cursor only moves forward.
      else if (after(batch.last, cursor)) cursor = batch.last;
    }
  };
  const results = await Promise.allSettled(
    Array.from({ length: WORKERS }, () =>
      worker().catch((err: unknown) => {
        failed = true; // the siblings finish the batch in hand and stop
        throw err;
      }),
    ),
  );
  const error = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (error) throw error.reason;
  // The final pass: what is still due was busy during the main pass.
  while (!stopping()) {
    const busy = await query<{ subject: string }>(
      db,
      `SELECT DISTINCT c.subject FROM counters c WHERE ${DUE} ORDER BY c.subject LIMIT $2`,
      [o.now, o.batchSize],
    );
    if (busy.length === 0) break;
    const n = await inTransaction(db, (tx) =>
      waitingBatch(
        tx,
        o,
        windows,
        busy.map((r) => r.subject),
      ),
    );
    reportAppended(db, { RESET_SCHEDULED: n });
    rolled += n;
    o.onRolled?.(n);
    // Nothing rolled: another sweep took them meanwhile (it will finish them), or they cannot
    // be rolled here; either way looping again would not help.
    if (n === 0) break;
  }
  return { rolled, complete: !stopping() };
}

interface LockedRow extends DueRow {
  last_sequence: bigint;
}

/** The next due counters after `from`, with their subjects, skipping rows others hold. */
async function mainBatch(
  tx: Tx,
  o: SweepOptions,
  windows: Map<string, Window>,
  from: Cursor,
): Promise<{ rolled: number; last: Cursor | null }> {
  const due = await tx.query<LockedRow>(
    `SELECT ${DUE_COLUMNS}, s.last_sequence
       FROM counters c
       JOIN subjects s ON s.subject = c.subject ${DUE_QUOTAS}
      WHERE (c.subject, c.metric, c.period) > ($2, $3, $4) AND ${DUE}
      ORDER BY c.subject, c.metric, c.period
      LIMIT $5
      FOR UPDATE OF c, s SKIP LOCKED`,
    [o.now, ...from, o.batchSize],
  );
  if (due.rows.length === 0) return { rolled: 0, last: null };
  const sequences = new Map(due.rows.map((r) => [r.subject, r.last_sequence]));
  await roll(tx, o, windows, due.rows, sequences);
  const l = due.rows.at(-1)!;
  return { rolled: due.rows.length, last: [l.subject, l.metric, l.period] };
}

/** These subjects' due counters, waiting for each subject's lock (taken in key order). */
async function waitingBatch(
  tx: Tx,
  o: SweepOptions,
  windows: Map<string, Window>,
  subjects: string[],
): Promise<number> {
  const locked = await tx.query<{ subject: string; last_sequence: bigint }>(
    'SELECT subject, last_sequence FROM subjects WHERE subject = ANY($1) ORDER BY subject FOR UPDATE',
    [subjects],
  );
  const sequences = new Map(locked.rows.map((r) => [r.subject, r.last_sequence]));
  // A fresh read under the subject locks: nothing can change these counters until we commit.
  const due = await tx.query<DueRow>(
    `SELECT ${DUE_COLUMNS}
       FROM counters c ${DUE_QUOTAS}
      WHERE c.subject = ANY($2) AND ${DUE}
      ORDER BY c.subject, c.metric, c.period`,
    [o.now, [...sequences.keys()]],
  );
  if (due.rows.length > 0) await roll(tx, o, windows, due.rows, sequences);
  return due.rows.length;
}

/**
 * Appends the resets of `due` (ordered by subject; their subjects locked, at `sequences`): one
 * RESET_SCHEDULED each, built and applied to the counter like any roll, all in one append.
 */
async function roll(
  tx: Tx,
  o: SweepOptions,
  windows: Map<string, Window>,
  due: DueRow[],
  sequences: Map<string, bigint>,
): Promise<void> {
  const stages = new Map<string, Stage>();
  for (const r of due) {
    let stage = stages.get(r.subject);
    if (!stage) {
      const state = {
        subject: r.subject,
        lastSequence: sequences.get(r.subject)!,
        defs: [],
        counters: new Map(),
        priors: new Map(),
        lapsed: [],
      };
      stages.set(r.subject, (stage = new Stage(state)));
    }
    stage.state.counters.set(counterKey(r.metric, r.period), {
      used: r.used,
      reserved: r.reserved,
      periodStart: r.period_start,
      periodEnd: r.period_end,
      lastResetAt: r.last_reset_at,
      lastSequence: r.counter_sequence,
    });
    // Counters of one zone and period mostly end together: their next window is worked out once.
    const key = `${r.period}|${r.time_zone}|${r.anchor_day}|${r.period_end.getTime()}`;
    let w = windows.get(key);
    if (!w) {
      const def = { period: r.period, timeZone: r.time_zone, anchorDay: r.anchor_day };
      windows.set(key, (w = nextWindow(def, r.period_end, o.now)));
    }
    const plan = {
      previousStart: r.period_start,
      previousEnd: r.period_end,
      usedBefore: r.used,
      start: w.start,
      end: w.end,
    };
    stage.record(rollEvent(r.subject, r.metric, r.period, plan, o.now, o.runId));
  }
  const changes: SubjectChanges[] = [...stages.values()].map((s) => s.changes());
  // Thousands of rows per append: planned for these arrays, not with the plan kept for the
  // service's small flushes (the function itself leaves plan_cache_mode to the session).
  await tx.query('SET LOCAL plan_cache_mode = force_custom_plan');
  await append(
    tx,
    changes.map((c) => ({ ...c, version: null, lastSequence: sequences.get(c.subject)! })),
  );
}

/** The earliest instant after `now` at which some counter's period ends; null if none will. */
export async function nextBoundary(db: Db | Store, now: Date): Promise<Date | null> {
  const rows = await query<{ next: Date | null }>(
    db,
    'SELECT min(period_end) AS next FROM counters WHERE period_end > $1',
    [now],
  );
  return rows[0]?.next ?? null;
}

/** The end of the period of the counter that has waited longest for its reset; null if none is due. */
export async function oldestDue(db: Db | Store, now: Date): Promise<Date | null> {
  const rows = await query<{ oldest: Date | null }>(
    db,
    `SELECT min(c.period_end) AS oldest FROM counters c WHERE ${DUE}`,
    [now],
  );
  return rows[0]?.oldest ?? null;
}

/** Reset lag: how long the oldest due counter has waited for its reset event, in seconds. */
export async function resetLagSeconds(db: Db | Store, now: Date): Promise<number> {
  const oldest = await oldestDue(db, now);
  return oldest ? Math.max(0, (now.getTime() - oldest.getTime()) / 1000) : 0;
}
