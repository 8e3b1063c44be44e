import { QuotaError } from './errors.js';
import { newEvent } from './events.js';
import type { PeriodKind } from './period.js';
import { viewOf, type QuotaView } from './quota.js';
import { decideRoll, syncLive } from './roll.js';
import { Stage, type Decided, type SubjectState } from './subject-state.js';

export interface ResetCommand {
  /** null with allSubjects. */
  subject: string | null;
  metric: string | null;
  period: PeriodKind | null;
  reason: string | null;
}

export interface ResetResult {
  quotas: QuotaView[];
  eventsAppended: number;
}

/**
 * Decides a manual reset of the subject's matching quotas: one RESET_MANUAL per counter that
 * has been charged in its current period (after any roll it needs), zeroing its usage there.
 */
export function decideReset(
  state: SubjectState,
  cmd: ResetCommand,
  actor: string,
  now: Date,
): Decided<ResetResult> {
  const stage = new Stage(state);
  const live = decideRoll(stage, cmd.metric, now, cmd.period);
  if (live.length === 0) {
    throw new QuotaError(
      'NOT_FOUND',
      `subject "${state.subject}" has no quota${cmd.period ? ` of period ${cmd.period}` : ''}${cmd.metric ? ` on metric "${cmd.metric}"` : ''}`,
    );
  }
  for (const q of live) {
    // A counter that was never charged is zero already; there is nothing to reset.
    if (!q.stored) continue;
    stage.record(
      newEvent({
        type: 'RESET_MANUAL',
        subject: state.subject,
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
  }
  syncLive(stage, live);
  return stage.decided({
    quotas: live.map((q) => viewOf(q, state.subject)),
    eventsAppended: stage.events.length,
  });
}
