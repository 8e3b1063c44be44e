import { randomUUID } from 'node:crypto';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import type { Db } from '../ledger/db.js';
import { saveAttempt, type ResetAttempt, type ResetTrigger } from '../ledger/reset-runs.js';
import type { Metrics } from '../metrics.js';

/**
 * The reset_runs rows of one replica. An attempt that cannot be written while the database is
 * away is kept and written, before anything newer, once it is back. Never throws.
 */
export class RunLog {
  private readonly unrecorded: ResetAttempt[] = [];

  constructor(private readonly db: Db) {}

  /** Writes an attempt, and any that could not be written earlier. */
  async record(a: ResetAttempt): Promise<void> {
    try {
      while (this.unrecorded.length) {
        await saveAttempt(this.db, this.unrecorded[0]!);
        this.unrecorded.shift();
      }
      a.id = await saveAttempt(this.db, a);
    } catch {
      if (a.outcome !== 'running') this.unrecorded.push({ ...a });
    }
  }
}

/** What a tick that found a sweep of this replica running leaves behind: a skipped run. */
export function skippedAttempt(
  trigger: ResetTrigger,
  replicaId: string,
  now: Date,
  since: string,
): ResetAttempt {
  return {
    id: null,
    runId: randomUUID(),
    trigger,
    replicaId,
    attempt: 1,
    startedAt: now,
    finishedAt: now,
    countersRolled: 0,
    outcome: 'skipped',
    error: `a sweep of this replica has been running since ${since}`,
  };
}

/**
 * Reports a finished attempt on its span (which it ends) and in the metrics. Attribute names
 * are those of the reset-job design (seed 000) that operators already query.
 */
export function reportAttempt(
  span: Span,
  metrics: Metrics,
  a: ResetAttempt,
  seconds: number,
): void {
  const ok = a.outcome === 'success';
  span.setAttributes({
    'quota_reset.rows_updated': a.countersRolled,
    'quota_reset.success': ok,
    'quota_reset.outcome': a.outcome,
  });
  if (ok) span.setStatus({ code: SpanStatusCode.OK });
  else if (a.outcome === 'interrupted')
    span.setStatus({ code: SpanStatusCode.ERROR, message: a.error ?? 'interrupted' });
  span.end();
  metrics.resetRuns.inc({ trigger: a.trigger, outcome: a.outcome });
  metrics.resetRunDuration.observe({ trigger: a.trigger }, seconds);
  metrics.countersRolled.inc(a.countersRolled);
  if (ok) metrics.lastResetSuccess.set(Date.now() / 1000);
}
