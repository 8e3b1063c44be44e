import { noQuota } from '../domain/errors.js';
import { liveQuotasOf, viewOf, type QuotaView } from '../domain/quota.js';
import { decideRoll } from '../domain/roll.js';
import { Stage } from '../domain/subject-state.js';
import type { LedgerDeps } from './commands.js';
import { reading } from './db.js';
import { readSubjects } from './subject-state.js';
import { writeSubject } from './write.js';

/**
 * The subject's quotas now. Answered from a plain read when no counter's period has ended;
 * otherwise the rolls are written first, so a read never shows a count the ledger lacks.
 */
export async function getQuota(
  deps: LedgerDeps,
  subject: string,
  metric: string | null,
): Promise<QuotaView[]> {
  // A plain read (shared with the reads arriving at the same moment, when the ledger has a
  // reader that batches): the common case needs no lock, no transaction, one statement.
  const now = deps.clock.now();
  const state = deps.reader
    ? await deps.reader.read(subject, now)
    : (
        await reading(deps, () =>
          readSubjects(deps.db, { subjects: [subject], metrics: null, lapsedAt: now }),
        )
      ).get(subject)!;
  const defs = metric === null ? state.defs : state.defs.filter((d) => d.metric === metric);
  let live = liveQuotasOf(defs, state.counters, subject, now, null, state.lapsed);
  if (live.some((q) => q.roll)) {
    live = await writeSubject(deps, subject, metric === null ? null : [metric], (s, at) => {
      const stage = new Stage(s);
      return stage.decided(decideRoll(stage, metric, at));
    });
  }
  if (metric && live.length === 0) throw noQuota(subject, metric);
  return live.map((q) => viewOf(q, subject));
}

export { getQuotaAsOf } from './as-of.js';
