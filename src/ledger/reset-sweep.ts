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
  last_sequence: bigint;
}

/** The instant as JavaScript writes it (toISOString), so every event's JSON looks the same. */
const ISO = (col: string): string =>
  `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

type Cursor = [subject: string, metric: string, period: string];

export interface SweepOptions {
  now: Date;
  batchSize: number;
  runId: string;
  /** Batches in flight at once; they never touch the same subject. */
  concurrency?: number;
  /** Checked between batches: a stopping service finishes the batch in hand and no more. */
  shouldStop?: () => boolean;
}

/**
 * Rolls every due counter to the period containing `now`, one RESET_SCHEDULED event each.
 *
 * Works in batches in key order, each batch one transaction that locks its counters and
 * their subjects with SKIP LOCKED: replicas (and this sweep's own workers) sweeping at once
 * take different rows, and a subject being charged right now is left to that call's lazy
 * roll. Locked rows are re-read at their newest version, so every decision is made on
 * current data; events, counters and sequences are then written with one set-based
 * statement each. The unique index on (subject, metric, period, period_start) makes a
 * duplicate impossible whatever happens.
 */
export async function sweep(db: Db, o: SweepOptions): Promise<number> {
  let rolled = 0;
  let cursor: Cursor = ['', '', ''];
  let done = false;
  const windows = new Map<string, Window>();
  const worker = async (): Promise<void> => {
    while (!done && !o.shouldStop?.()) {
      const from = cursor;
      const batch = await inTransaction(db, (tx) => sweepBatch(tx, o, from, windows));
      rolled += batch.rolled;
      if (batch.last === null) done = true;
      // Workers leapfrog: rows a sibling holds are skipped, so the cursor only moves forward.
      else if (compareCursor(batch.last, cursor) > 0) cursor = batch.last;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 2) }, worker));
  return rolled;
}

const compareCursor = (a: Cursor, b: Cursor): number => {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
};

async function sweepBatch(
  tx: Tx,
  o: SweepOptions,
  after: Cursor,
  windows: Map<string, Window>,
): Promise<{ rolled: number; last: Cursor | null }> {
  const due = await tx.query<DueRow>(
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
    [o.now, ...after, o.batchSize],
  );
  if (due.rows.length === 0) return { rolled: 0, last: null };
  const sequences = new Map<string, bigint>();
  const rows = {
    subject: [] as string[],
    metric: [] as string[],
    period: [] as string[],
    sequence: [] as string[],
    w: [] as number[],
  };
  // Distinct new windows, sent once each: counters of one zone and period mostly end together.
  const distinct = new Map<string, { i: number; w: Window }>();
  for (const r of due.rows) {
    const seq = (sequences.get(r.subject) ?? r.last_sequence) + 1n;
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
    rows.subject.push(r.subject);
    rows.metric.push(r.metric);
    rows.period.push(r.period);
    rows.sequence.push(seq.toString());
    rows.w.push(d.i);
  }
  const ws = [...distinct.values()];
  // One statement: every sub-statement sees the counters as they were, so the events record
  // the period each counter leaves and what it had used.
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
     ), upd AS (
       UPDATE counters c SET used = 0, period_start = ws.start_at, period_end = ws.end_at,
              last_reset_at = ws.start_at, last_sequence = u.sequence
         FROM u JOIN ws ON ws.i = u.w
        WHERE c.subject = u.subject AND c.metric = u.metric AND c.period = u.period
     )
     UPDATE subjects s SET last_sequence = x.sequence
       FROM (SELECT subject, max(sequence) AS sequence FROM u GROUP BY subject) x
      WHERE s.subject = x.subject`,
    [
      rows.subject,
      rows.metric,
      rows.period,
      rows.sequence,
      rows.w,
      ws.map((d) => d.w.start),
      ws.map((d) => d.w.end),
      SCHEDULER_ACTOR,
      o.runId,
      o.now,
    ],
  );
  countAppended(tx, { RESET_SCHEDULED: due.rows.length });
  const l = due.rows.at(-1)!;
  return { rolled: due.rows.length, last: [l.subject, l.metric, l.period] };
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
