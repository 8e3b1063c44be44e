import type { SubjectChanges } from '../domain/subject-state.js';
import { encodeJson } from './codec.js';
import type { Db, Tx } from './db.js';

/** One subject's changes, with the version of its row the decision was made on. */
export interface SubjectAppend extends SubjectChanges {
  /** The subject row's xmin as read; null when the writer holds the row's lock. */
  version: string | null;
  /** The sequence the events follow (the expected version): still the subject's, or nothing is written. */
  lastSequence: bigint;
}

/**
 * Appends the changes of any number of subjects in one statement (quota_append, see its
 * migration): events, the counters they leave, each subject's new last sequence, checked
 * against the version read. Fails with 40001 and writes nothing if a subject has changed.
 * Returns how many events of each type it appended.
 */
export async function append(
  q: Db | Tx,
  batch: readonly SubjectAppend[],
): Promise<Record<string, number>> {
  const touched = batch.filter((s) => s.events.length > 0 || s.counters.length > 0);
  if (touched.length === 0) return {};
  const events = touched.flatMap((s) => s.events);
  const counters = touched.flatMap((s) => s.counters.map((c) => ({ subject: s.subject, ...c })));
  const e = <T>(f: (x: (typeof events)[number]) => T): T[] => events.map(f);
  const c = <T>(f: (x: (typeof counters)[number]) => T): T[] => counters.map(f);
  await q.query(
    `SELECT quota_append(${Array.from({ length: 27 }, (_, i) => `$${i + 1}`).join(', ')})`,
    [
      e((x) => x.subject),
      e((x) => x.sequence),
      e((x) => x.type),
      e((x) => x.metric),
      e((x) => x.amount),
      e((x) => x.period),
      e((x) => x.periodStart),
      e((x) => x.periodEnd),
      e((x) => x.actor),
      e((x) => x.reason),
      e((x) => x.idempotencyKey),
      e((x) => (x.attributes ? encodeJson(x.attributes) : null)),
      e((x) => encodeJson(x.data)),
      e((x) => x.recordedAt),
      c((x) => x.subject),
      c((x) => x.metric),
      c((x) => x.period),
      c((x) => x.state.used),
      c((x) => x.state.reserved),
      c((x) => x.state.periodStart),
      c((x) => x.state.periodEnd),
      c((x) => x.state.lastResetAt),
      c((x) => x.state.lastSequence),
      touched.map((s) => s.subject),
      touched.map((s) => s.lastSequence),
      touched.map((s) => s.events.at(-1)?.sequence ?? s.lastSequence),
      touched.map((s) => s.version),
    ],
  );
  const counts: Record<string, number> = {};
  for (const x of events) counts[x.type] = (counts[x.type] ?? 0) + 1;
  return counts;
}
