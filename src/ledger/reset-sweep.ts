import { nextWindow, type PeriodKind, type Window } from '../domain/period.js';
import { countAppended, inTransaction, query, type Db, type Tx } from './db.js';
import { SCHEDULER_ACTOR } from './subject-writer.js';

/** A counter is due when its period has ended and a quota (own or default) still applies to it. */
const DUE = `c.period_end <= $1 AND EXISTS (
  SELECT 1 FROM quotas q
   WHERE q.subject IN (c.subject, '*') AND q.metric = c.metric AND q.period = c.period)`;

interface DueRow {
  subject: string;
  metric: string;
  period: PeriodKind;
  used: bigint;
  period_start: Date;
  period_end: Date;
  time_zone: string;
  anchor_day: number;
}

/** The instant as JavaScript writes it (toISOString), so every event's JSON looks the same. */
const ISO = (col: string): string =>
  `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

export interface SweepOptions {
  now: Date;
  batchSize: number;
  runId: string;
  /** Workers in flight at once in the main pass. */
  concurrency?: number;
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
export async function sweep(db: Db, o: SweepOptions): Promise<SweepResult> {
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
      rolled += batch.rolled;
      o.onRolled?.(batch.rolled);
      if (batch.last === null) done = true;
      // Workers leapfrog: rows a sibling holds are skipped, so the cursor only moves forward.
      else if (after(batch.last, cursor)) cursor = batch.last;
    }
  };
  const results = await Promise.allSettled(
    Array.from({ length: Math.max(1, o.concurrency ?? 2) }, () =>
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
    `SELECT c.subject, c.metric, c.period, c.used, c.period_start, c.period_end, s.last_sequence,
            coalesce(own.time_zone, def.time_zone) AS time_zone,
            coalesce(own.anchor_day, def.anchor_day) AS anchor_day
       FROM counters c
       JOIN subjects s ON s.subject = c.subject
       LEFT JOIN quotas own ON own.subject = c.subject AND own.metric = c.metric AND own.period = c.period
       LEFT JOIN quotas def ON def.subject = '*' AND def.metric = c.metric AND def.period = c.period
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
    `SELECT c.subject, c.metric, c.period, c.used, c.period_start, c.period_end,
            coalesce(own.time_zone, def.time_zone) AS time_zone,
            coalesce(own.anchor_day, def.anchor_day) AS anchor_day
       FROM counters c
       LEFT JOIN quotas own ON own.subject = c.subject AND own.metric = c.metric AND own.period = c.period
       LEFT JOIN quotas def ON def.subject = '*' AND def.metric = c.metric AND def.period = c.period
      WHERE c.subject = ANY($2) AND ${DUE}
      ORDER BY c.subject, c.metric, c.period`,
    [o.now, [...sequences.keys()]],
  );
  if (due.rows.length > 0) await roll(tx, o, windows, due.rows, sequences);
  return due.rows.length;
}

/** Writes the resets of `rows` (ordered by subject): events, counters, sequences, in one statement. */
async function roll(
  tx: Tx,
  o: SweepOptions,
  windows: Map<string, Window>,
  due: DueRow[],
  sequences: Map<string, bigint>,
): Promise<void> {
  const cols = {
    subject: [] as string[],
    metric: [] as string[],
    period: [] as string[],
    sequence: [] as string[],
    w: [] as number[],
  };
  // Distinct new windows, sent once each: counters of one zone and period mostly end together.
  const distinct = new Map<string, { i: number; w: Window }>();
  for (const r of due) {
    const seq = sequences.get(r.subject)! + 1n;
    sequences.set(r.subject, seq);
    const key = `${r.period}|${r.time_zone}|${r.anchor_day}|${r.period_end.getTime()}`;
    let d = distinct.get(key);
    if (!d) {
      let w = windows.get(key);
      if (!w) {
        w = nextWindow(
          { period: r.period, timeZone: r.time_zone, anchorDay: r.anchor_day },
          r.period_end,
          o.now,
        );
        windows.set(key, w);
      }
      d = { i: distinct.size + 1, w };
      distinct.set(key, d);
    }
    cols.subject.push(r.subject);
    cols.metric.push(r.metric);
    cols.period.push(r.period);
    cols.sequence.push(seq.toString());
    cols.w.push(d.i);
  }
  const ws = [...distinct.values()];
  // One statement: every sub-statement sees the counters as they were, so the events record
  // the period each counter leaves and what it had used. Holds belong to the period they were
  // made in and vanish with its roll (reserved = 0, as foldCounters does).
  await tx.query(
    `WITH u AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[])
         AS u(subject, metric, period, sequence, w)
     ), ws AS (
       SELECT * FROM unnest($6::timestamptz[], $7::timestamptz[]) WITH ORDINALITY AS ws(start_at, end_at, i)
     ), ins AS (
       INSERT INTO ledger_events (subject, sequence, type, metric, period, period_start, period_end,
                                  actor, reason, data, recorded_at)
       SELECT c.subject, u.sequence, 'RESET_SCHEDULED', c.metric, c.period, ws.start_at, ws.end_at,
              $8, 'period ended',
              jsonb_build_object('previousPeriodStart', ${ISO('c.period_start')},
                                 'previousPeriodEnd', ${ISO('c.period_end')},
                                 'usedBefore', c.used::text, 'runId', $9::text),
              $10
         FROM u
         JOIN ws ON ws.i = u.w
         JOIN counters c ON c.subject = u.subject AND c.metric = u.metric AND c.period = u.period
        -- In sequence order: the hash-chain trigger links each event to the one before it.
        ORDER BY u.subject, u.sequence
     ), upd AS (
       UPDATE counters c SET used = 0, reserved = 0, period_start = ws.start_at, period_end = ws.end_at,
              last_reset_at = ws.start_at, last_sequence = u.sequence
         FROM u JOIN ws ON ws.i = u.w
        WHERE c.subject = u.subject AND c.metric = u.metric AND c.period = u.period
     )
     UPDATE subjects s SET last_sequence = x.sequence
       FROM (SELECT subject, max(sequence) AS sequence FROM u GROUP BY subject) x
      WHERE s.subject = x.subject`,
    [
      cols.subject,
      cols.metric,
      cols.period,
      cols.sequence,
      cols.w,
      ws.map((d) => d.w.start),
      ws.map((d) => d.w.end),
      SCHEDULER_ACTOR,
      o.runId,
      o.now,
    ],
  );
  countAppended(tx, { RESET_SCHEDULED: due.length });
}

/** The earliest instant after `now` at which some counter's period ends; null if none will. */
export async function nextBoundary(db: Db, now: Date): Promise<Date | null> {
  const rows = await query<{ next: Date | null }>(
    db,
    'SELECT min(period_end) AS next FROM counters WHERE period_end > $1',
    [now],
  );
  return rows[0]?.next ?? null;
}

/** The end of the period of the counter that has waited longest for its reset; null if none is due. */
export async function oldestDue(db: Db, now: Date): Promise<Date | null> {
  const rows = await query<{ oldest: Date | null }>(
    db,
    `SELECT min(c.period_end) AS oldest FROM counters c WHERE ${DUE}`,
    [now],
  );
  return rows[0]?.oldest ?? null;
}

/** Reset lag: how long the oldest due counter has waited for its reset event, in seconds. */
export async function resetLagSeconds(db: Db, now: Date): Promise<number> {
  const oldest = await oldestDue(db, now);
  return oldest ? Math.max(0, (now.getTime() - oldest.getTime()) / 1000) : 0;
}
