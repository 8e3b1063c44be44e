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

/**
 * Replays the recorded usage of `q.metric` in [start, end) against proposed quotas, streaming
 * the ledger in position order one page at a time. Read-only. `onProgress` hears the number of
 * events scanned after each page, for long ranges.
 */
export async function runBacktest(
  db: Db,
  q: BacktestQuery,
  o: { onProgress?: (scanned: number) => void; signal?: AbortSignal; pageSize?: number } = {},
): Promise<BacktestRun> {
  const backtest = new Backtest(q.quotas);
  let after = 0n;
  let scanned = 0;
  const page = o.pageSize ?? PAGE;
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
    o.onProgress?.(scanned);
    if (rows.length < page) return { backtest, eventsScanned: scanned };
    after = rows.at(-1)!.position;
  }
}
