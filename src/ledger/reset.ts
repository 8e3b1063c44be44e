import type { CallSignal } from '../cancellation.js';
import { QuotaError } from '../domain/errors.js';
import { decideReset, type ResetCommand, type ResetResult } from '../domain/reset.js';
import type { LedgerDeps } from './commands.js';
import { query } from './db.js';
import { writeSubject } from './write.js';

export type { ResetResult } from '../domain/reset.js';

/** How many reset quotas an all-subjects reset lists in its answer. */
const ANSWER_LIMIT = 1000;
const SUBJECT_BATCH = 500;

/** A manual reset of one subject's matching quotas to zero within their current periods. */
export function resetSubject(
  deps: LedgerDeps,
  subject: string,
  cmd: ResetCommand,
  actor: string,
  signal?: CallSignal,
): Promise<ResetResult> {
  return writeSubject(
    deps,
    subject,
    cmd.metric === null ? null : [cmd.metric],
    (state, now) => decideReset(state, cmd, actor, now),
    signal,
  );
}

/**
 * Resets the matching counters of every subject that has one (seed 001's "reset all daily
 * quotas"). Each subject is reset in its own transaction, so the work never holds more than
 * one subject's lock and spreads across shards; a failure part-way leaves every subject
 * either fully reset or untouched, and running the reset again finishes the job.
 */
export async function resetAllSubjects(
  deps: LedgerDeps,
  cmd: ResetCommand,
  actor: string,
  signal?: CallSignal,
): Promise<ResetResult> {
  const result: ResetResult = { quotas: [], eventsAppended: 0 };
  let after = '';
  for (;;) {
    const subjects = await query<{ subject: string }>(
      deps,
      `SELECT DISTINCT subject FROM counters
        WHERE ($1::text IS NULL OR metric = $1) AND ($2::text IS NULL OR period = $2) AND subject > $3
        ORDER BY subject LIMIT ${SUBJECT_BATCH}`,
      [cmd.metric, cmd.period, after],
    );
    for (const { subject } of subjects) {
      // Each subject is done or not; a caller that gave up stops the rest.
      if (signal?.aborted) {
        throw new QuotaError(
          'DEADLINE_EXCEEDED',
          `the call was cancelled after ${result.eventsAppended} reset event(s); every subject is either fully reset or untouched`,
        );
      }
      try {
        const r = await resetSubject(deps, subject, cmd, actor);
        result.eventsAppended += r.eventsAppended;
        result.quotas.push(...r.quotas.slice(0, ANSWER_LIMIT - result.quotas.length));
      } catch (err) {
        // A counter whose quota was deleted no longer applies to anyone.
        if (!(err instanceof QuotaError && err.code === 'NOT_FOUND')) throw err;
      }
    }
    if (subjects.length < SUBJECT_BATCH) return result;
    after = subjects.at(-1)!.subject;
  }
}
