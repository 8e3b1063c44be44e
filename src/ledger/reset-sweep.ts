import { nextWindow, type PeriodKind } from '../domain/period.js';
import { encodeJson } from './codec.js';
import { inTransaction, query, type Db, type Tx } from './db.js';
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

export interface SweepOptions {
  now: Date;
  batchSize: number;
  runId: string;
  /** Checked between batches: a stopping service finishes the batch in hand and no more. */
  shouldStop?: () => boolean;
}

/**
 * Rolls every due counter to the period containing `now`, one RESET_SCHEDULED event each.
 *
 * Works in batches of subjects, each batch one transaction: it locks the subjects' rows with
 * SKIP LOCKED (so replicas sweeping at once take different subjects, and a subject being
 * charged is left to the lazy roll of that call), reads their due counters afresh under the
 * lock, and writes events, counters and sequences with one set-based statement each. The
 * unique index on (subject, metric, period, period_start) makes a duplicate impossible.
 */
export async function sweep(db: Db, o: SweepOptions): Promise<number> {
  let rolled = 0;
  let after = '';
  for (;;) {
    const batch = await inTransaction(db, (tx) => sweepBatch(tx, o, after));
    rolled += batch.rolled;
    if (batch.last === null || o.shouldStop?.()) return rolled;
    after = batch.last;
  }
}

async function sweepBatch(
  tx: Tx,
  o: SweepOptions,
  after: string,
): Promise<{ rolled: number; last: string | null }> {
  const locked = await tx.query<{ subject: string; last_sequence: bigint }>(
    `SELECT s.subject, s.last_sequence FROM subjects s
      WHERE s.subject > $2 AND EXISTS (SELECT 1 FROM counters c WHERE c.subject = s.subject AND ${DUE})
      ORDER BY s.subject LIMIT $3
      FOR UPDATE SKIP LOCKED`,
    [o.now, after, o.batchSize],
  );
  if (locked.rows.length === 0) return { rolled: 0, last: null };
  const sequences = new Map(locked.rows.map((r) => [r.subject, r.last_sequence]));
  // A fresh read under the locks: nothing can change these counters until we commit.
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
  const cols = {
    subject: [] as string[],
    sequence: [] as string[],
    metric: [] as string[],
    period: [] as string[],
    start: [] as Date[],
    end: [] as (Date | null)[],
    data: [] as string[],
  };
  for (const r of due.rows) {
    const seq = sequences.get(r.subject)! + 1n;
    sequences.set(r.subject, seq);
    const w = nextWindow(
      { period: r.period, timeZone: r.time_zone, anchorDay: r.anchor_day },
      r.period_end,
      o.now,
    );
    cols.subject.push(r.subject);
    cols.sequence.push(seq.toString());
    cols.metric.push(r.metric);
    cols.period.push(r.period);
    cols.start.push(w.start);
    cols.end.push(w.end);
    cols.data.push(
      encodeJson({
        previousPeriodStart: r.period_start,
        previousPeriodEnd: r.period_end,
        usedBefore: r.used,
        runId: o.runId,
      }),
    );
  }
  if (due.rows.length > 0) {
    await tx.query(
      `INSERT INTO ledger_events (subject, sequence, type, metric, period, period_start, period_end,
         actor, reason, data, recorded_at)
       SELECT u.subject, u.sequence, 'RESET_SCHEDULED', u.metric, u.period, u.period_start, u.period_end,
              $8, 'period ended', u.data, $9
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::jsonb[])
           AS u(subject, sequence, metric, period, period_start, period_end, data)`,
      [
        cols.subject,
        cols.sequence,
        cols.metric,
        cols.period,
        cols.start,
        cols.end,
        cols.data,
        SCHEDULER_ACTOR,
        o.now,
      ],
    );
    await tx.query(
      `UPDATE counters c SET used = 0, period_start = u.period_start, period_end = u.period_end,
              last_reset_at = u.period_start, last_sequence = u.sequence
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])
           AS u(subject, sequence, metric, period, period_start, period_end)
        WHERE c.subject = u.subject AND c.metric = u.metric AND c.period = u.period`,
      [cols.subject, cols.sequence, cols.metric, cols.period, cols.start, cols.end],
    );
    await tx.query(
      `UPDATE subjects s SET last_sequence = u.last_sequence
         FROM unnest($1::text[], $2::bigint[]) AS u(subject, last_sequence)
        WHERE s.subject = u.subject`,
      [[...sequences.keys()], [...sequences.values()].map(String)],
    );
  }
  return { rolled: due.rows.length, last: locked.rows.at(-1)!.subject };
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
