import { QuotaError } from '../domain/errors.js';
import { newEvent } from '../domain/events.js';
import { viewOf, type QuotaView } from '../domain/quota.js';
import type { LedgerDeps, ResetCommand } from './commands.js';
import { inTransaction, query } from './db.js';
import { SubjectWriter } from './subject-writer.js';

export interface ResetResult {
  quotas: QuotaView[];
  eventsAppended: number;
}

/** How many reset quotas an all-subjects reset lists in its answer. */
const ANSWER_LIMIT = 1000;
const SUBJECT_BATCH = 500;

/** A manual reset of one subject's matching quotas to zero within their current periods. */
export async function resetSubject(
  deps: LedgerDeps,
  subject: string,
  cmd: ResetCommand,
  actor: string,
  signal?: AbortSignal,
): Promise<ResetResult> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const w = await SubjectWriter.open(tx, subject);
      const now = deps.clock.now();
      const live = await w.liveQuotas(cmd.metric, now, cmd.period);
      if (live.length === 0) {
        throw new QuotaError(
          'NOT_FOUND',
          `subject "${subject}" has no quota${cmd.period ? ` of period ${cmd.period}` : ''}${cmd.metric ? ` on metric "${cmd.metric}"` : ''}`,
        );
      }
      for (const q of live) {
        // A counter that was never charged is zero already; there is nothing to reset.
        if (!q.stored) continue;
        const seq = w.append(
          newEvent({
            type: 'RESET_MANUAL',
            subject,
            actor,
            recordedAt: now,
            metric: q.def.metric,
            period: q.def.period,
            periodStart: q.counter.periodStart,
            periodEnd: q.counter.periodEnd,
            reason: cmd.reason,
            data: { usedBefore: q.counter.used },
          }),
        );
        q.counter = { ...q.counter, used: 0n, lastResetAt: now, lastSequence: seq };
        w.setCounter(q.def.metric, q.def.period, q.counter);
      }
      const stored = await w.flush();
      return { quotas: live.map((q) => viewOf(q, subject)), eventsAppended: stored.length };
    },
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
  signal?: AbortSignal,
): Promise<ResetResult> {
  const result: ResetResult = { quotas: [], eventsAppended: 0 };
  let after = '';
  for (;;) {
    const subjects = await query<{ subject: string }>(
      deps.db,
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
