import { foldCounters, foldQuotaDefs } from '../domain/fold.js';
import { liveQuotasOf, viewOf, type QuotaView } from '../domain/quota.js';
import { DEFAULT_SUBJECT } from '../domain/validate.js';
import { EVENT_COLUMNS, eventFromRow, type EventRow } from './codec.js';
import type { LedgerDeps } from './commands.js';
import { noQuota } from './consume.js';
import { inTransaction, query } from './db.js';
import { readBatcherOf } from './read-batch.js';
import { SubjectWriter } from './subject-writer.js';

/**
 * The subject's quotas now. Answered from a plain read when no counter's period has ended;
 * otherwise the rolls are written first, so a read never shows a count the ledger lacks.
 */
export async function getQuota(
  deps: LedgerDeps,
  subject: string,
  metric: string | null,
): Promise<QuotaView[]> {
  // A plain read, shared with the other reads arriving at the same moment: the common case
  // needs no lock, no transaction and a fraction of a round trip.
  const state = await readBatcherOf(deps.db).read(subject);
  const defs = metric === null ? state.defs : state.defs.filter((d) => d.metric === metric);
  const counters = state.counters;
  const now = deps.clock.now();
  let live = liveQuotasOf(defs, counters, subject, now);
  if (live.some((q) => q.roll)) {
    live = await inTransaction(deps.db, async (tx) => {
      const w = await SubjectWriter.open(tx, subject);
      const rolled = await w.liveQuotas(metric, now);
      await w.flush();
      return rolled;
    });
  }
  if (metric && live.length === 0) throw noQuota(subject, metric);
  return live.map((q) => viewOf(q, subject));
}

/** The subject's quotas as the ledger stood at `asOf`: a fold of the events recorded by then. */
export async function getQuotaAsOf(
  deps: LedgerDeps,
  subject: string,
  metric: string | null,
  asOf: Date,
): Promise<QuotaView[]> {
  const rows = await query<EventRow>(
    deps.db,
    `SELECT ${EVENT_COLUMNS} FROM ledger_events
      WHERE (subject = $1 OR (subject = $4 AND type IN ('QUOTA_SET', 'QUOTA_DELETED')))
        AND recorded_at <= $2 AND ($3::text IS NULL OR metric = $3)
      ORDER BY subject, sequence`,
    [subject, asOf, metric, DEFAULT_SUBJECT],
  );
  const events = rows.map(eventFromRow);
  const own = events.filter((e) => e.subject === subject);
  const defs = foldQuotaDefs(events);
  const live = liveQuotasOf(defs, foldCounters(own), subject, asOf);
  if (metric && live.length === 0) throw noQuota(subject, metric);
  return live.map((q) => viewOf(q, subject));
}
