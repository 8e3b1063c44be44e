import { liveQuotasOf, viewOf, type QuotaView } from '../domain/quota.js';
import type { LedgerDeps } from './commands.js';
import { noQuota } from './consume.js';
import { inTransaction } from './db.js';
import { readBatcherOf } from '../batching/read-batch.js';
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
  const now = deps.clock.now();
  const state = await readBatcherOf(deps.db).read(subject, now);
  const defs = metric === null ? state.defs : state.defs.filter((d) => d.metric === metric);
  const counters = state.counters;
  let live = liveQuotasOf(defs, counters, subject, now, null, state.lapsed);
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

export { getQuotaAsOf } from './as-of.js';
