import type { CallSignal } from '../cancellation.js';
import { Backtest, type ProposedQuota, type ReplayEvent } from '../domain/backtest.js';
import { query, type Db } from './db.js';

export interface BacktestQuery {
  metric: string;
  /** A subject, or "*" for every subject. */
  subject: string;
  quotas: readonly ProposedQuota[];
  start: Date;
  end: Date;
}

export interface BacktestRun {
  backtest: Backtest;
  eventsScanned: number;
}

// Keyset pages in ledger order: memory holds one page, whatever the range.
const PAGE = 1000;
const PAGE_SQL = `
  SELECT position, subject, type, sequence, amount, recorded_at,
         (data->>'refundedSequence')::int8 AS refunded_sequence
    FROM ledger_events
   WHERE position > $1 AND metric = $2 AND ($3 = '*' OR subject = $3)
     AND type IN ('USAGE', 'REFUND', 'RESERVATION_COMMITTED')
     AND recorded_at >= $4 AND recorded_at < $5
   ORDER BY position
   LIMIT $6`;

interface Row {
  position: bigint;
  subject: string;
  type: ReplayEvent['type'];
  sequence: bigint;
  amount: bigint;
  recorded_at: Date;
  refunded_sequence: bigint | null;
}

/** How far a replay has got: after each page of the ledger. */
export interface BacktestProgress {
  eventsScanned: number;
  /** The ledger position of the last event replayed; 0 before any. */
  position: bigint;
  /** The recorded_at of the last event replayed; the range's start before any. */
  reached: Date;
  /** The share of [start, end) replayed so far, 0 to 1, by time (the ledger is in time order). */
  covered: number;
}

export interface BacktestPageOptions {
  signal?: CallSignal;
  /** Events per page; tests make it small to replay a short history in several pages. */
  pageSize?: number;
}

/**
 * Replays the recorded usage of `q.metric` in [start, end) against proposed quotas, streaming
 * the ledger in position order one page at a time, and yields the progress after each page;
 * its return value is the finished run. Read-only. Memory holds one page plus the replay's
 * per-subject state, whatever the range.
 */
export async function* backtestPages(
  db: Db,
  q: BacktestQuery,
  o: BacktestPageOptions = {},
): AsyncGenerator<BacktestProgress, BacktestRun, undefined> {
  const backtest = new Backtest(q.quotas);
  let after = 0n;
  let scanned = 0;
  let reached = q.start;
  const page = o.pageSize ?? PAGE;
  const span = q.end.getTime() - q.start.getTime();
  for (;;) {
    if (o.signal?.aborted) throw o.signal.reason;
    const rows = await query<Row>(db, PAGE_SQL, [after, q.metric, q.subject, q.start, q.end, page]);
    for (const r of rows) {
      backtest.apply({
        subject: r.subject,
        type: r.type,
        sequence: r.sequence,
        amount: r.amount,
        recordedAt: r.recorded_at,
        refundedSequence: r.refunded_sequence,
      });
    }
    scanned += rows.length;
    const last = rows.at(-1);
    if (last) {
      after = last.position;
      // Positions follow commit order, not recorded_at exactly; never let the share go back.
      if (last.recorded_at > reached) reached = last.recorded_at;
    }
    const done = rows.length < page;
    yield {
      eventsScanned: scanned,
      position: after,
      reached,
      // The last page covers the whole range, however early its last event was.
      covered: done ? 1 : Math.min(1, (reached.getTime() - q.start.getTime()) / span),
    };
    if (done) return { backtest, eventsScanned: scanned };
  }
}

/** backtestPages run to the end; `onProgress` hears the number of events scanned per page. */
export async function runBacktest(
  db: Db,
  q: BacktestQuery,
  o: BacktestPageOptions & { onProgress?: (scanned: number) => void } = {},
): Promise<BacktestRun> {
  const pages = backtestPages(db, q, o);
  for (;;) {
    const next = await pages.next();
    if (next.done) return next.value;
    o.onProgress?.(next.value.eventsScanned);
  }
}
