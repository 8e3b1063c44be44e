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
  /** Workers in flight at once; each takes its own share of the subjects. */
  concurrency?: number;
  /** Checked between batches: a stopping service finishes the batch in hand and no more. */
  shouldStop?: () => boolean;
}

/**
 * Rolls every due counter to the period containing `now`, one RESET_SCHEDULED event each.
 *
 * Works in batches of subjects in key order, each batch one transaction. It locks the
 * subjects' rows (the same lock every writer of a subject takes) with SKIP LOCKED, so
 * replicas sweeping at once take different subjects and nobody waits; then it reads their
 * due counters afresh under those locks and writes events, counters and sequences with one
 * set-based statement. Subjects that were busy (a call or another sweep held them) are
 * taken once more at the end, this time waiting for the lock, so a sweep that reports
 * success leaves nothing due behind. The unique index on (subject, metric, period,
 * period_start) makes a duplicate impossible whatever happens.
 */
export async function sweep(db: Db, o: SweepOptions): Promise<number> {
  const windows = new Map<string, Window>();
  const workers = Math.max(1, o.concurrency ?? 2);
  const busy: string[] = [];
  let failed = false;
  const stopping = () => failed || (o.shouldStop?.() ?? false);
  const worker = async (share: number): Promise<number> => {
    let rolled = 0;
    let after = '';
    while (!stopping()) {
      const from = after;
      const batch = await inTransaction(db, (tx) =>
        sweepBatch(tx, o, windows, { after: from, share, workers }),
      );
      rolled += batch.rolled;
      busy.push(...batch.busy);
      if (batch.last === null) break;
      after = batch.last;
    }
    return rolled;
  };
  const results = await Promise.allSettled(
    Array.from({ length: workers }, (_, share) =>
      worker(share).catch((err: unknown) => {
        failed = true; // the siblings finish the batch in hand and stop
        throw err;
      }),
    ),
  );
  const error = results.find((r) => r.status === 'rejected');
  if (error) throw (error as PromiseRejectedResult).reason;
  let rolled = results.reduce((n, r) => n + (r as PromiseFulfilledResult<number>).value, 0);
  busy.sort();
  for (let i = 0; i < busy.length && !stopping(); i += o.batchSize) {
    const subjects = busy.slice(i, i + o.batchSize);
    rolled += (await inTransaction(db, (tx) => sweepBatch(tx, o, windows, { subjects }))).rolled;
  }
  return rolled;
}

type Take =
  /** The next subjects with a due counter after `after`, in this worker's share, skipping busy ones. */
  | { after: string; share: number; workers: number }
  /** These subjects, waiting for each lock. */
  | { subjects: string[] };

async function sweepBatch(
  tx: Tx,
  o: SweepOptions,
  windows: Map<string, Window>,
  take: Take,
): Promise<{ rolled: number; last: string | null; busy: string[] }> {
  let candidates: string[];
  let locked: { subject: string; last_sequence: bigint }[];
  if ('subjects' in take) {
    candidates = take.subjects;
    locked = (
      await tx.query<{ subject: string; last_sequence: bigint }>(
        'SELECT subject, last_sequence FROM subjects WHERE subject = ANY($1) ORDER BY subject FOR UPDATE',
        [candidates],
      )
    ).rows;
  } else {
    // Walks the counters' key in order when much is due, the period_end index when little is.
    candidates = (
      await tx.query<{ subject: string }>(
        `SELECT c.subject FROM counters c
          WHERE c.subject > $2 AND ${DUE} AND (hashtext(c.subject) & 2147483647) % $4 = $5
          GROUP BY c.subject ORDER BY c.subject LIMIT $3`,
        [o.now, take.after, o.batchSize, take.workers, take.share],
      )
    ).rows.map((r) => r.subject);
    if (candidates.length === 0) return { rolled: 0, last: null, busy: [] };
    locked = (
      await tx.query<{ subject: string; last_sequence: bigint }>(
        'SELECT subject, last_sequence FROM subjects WHERE subject = ANY($1) ORDER BY subject FOR UPDATE SKIP LOCKED',
        [candidates],
      )
    ).rows;
  }
  const last = candidates.at(-1) ?? null;
  const got = new Set(locked.map((r) => r.subject));
  const busy = candidates.filter((c) => !got.has(c));
  if (locked.length === 0) return { rolled: 0, last, busy };
  const sequences = new Map(locked.map((r) => [r.subject, r.last_sequence]));
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
    [o.now, [...got]],
  );
  if (due.rows.length === 0) return { rolled: 0, last, busy };
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
  return { rolled: due.rows.length, last, busy };
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
