import { newEvent, SCHEDULER_ACTOR, type NewEvent } from './events.js';
import type { PeriodKind } from './period.js';
import { counterKey, liveQuotasOf, type LiveQuota, type RollPlan } from './quota.js';
import type { Stage } from './subject-state.js';

/** The RESET_SCHEDULED event that moves a counter of `subject` to the period `roll` names. */
export function rollEvent(
  subject: string,
  metric: string,
  period: PeriodKind,
  roll: RollPlan,
  now: Date,
  runId?: string,
): NewEvent {
  return newEvent({
    type: 'RESET_SCHEDULED',
    subject,
    actor: SCHEDULER_ACTOR,
    recordedAt: now,
    metric,
    period,
    periodStart: roll.start,
    periodEnd: roll.end,
    reason: 'period ended',
    data: {
      previousPeriodStart: roll.previousStart,
      previousPeriodEnd: roll.previousEnd,
      usedBefore: roll.usedBefore,
      ...(runId ? { runId } : {}),
    },
  });
}

/**
 * The quotas of the staged subject that apply (of one metric and/or period, or all), each
 * brought to the period containing `now`: a counter whose period has ended gets its
 * RESET_SCHEDULED event recorded first, whoever notices it.
 */
export function decideRoll(
  stage: Stage,
  metric: string | null,
  now: Date,
  period: PeriodKind | null = null,
): LiveQuota[] {
  const s = stage.state;
  const defs = metric === null ? s.defs : s.defs.filter((d) => d.metric === metric);
  const live = liveQuotasOf(defs, s.counters, s.subject, now, period, s.lapsed);
  for (const q of live) {
    if (!q.roll) continue;
    stage.record(rollEvent(s.subject, q.def.metric, q.def.period, q.roll, now));
    // The recorded counter: the rolled one, now with the event's sequence.
    q.counter = s.counters.get(counterKey(q.def.metric, q.def.period))!;
  }
  return live;
}

/** Points each live quota at its counter as the staged events left it (answers show that). */
export function syncLive(stage: Stage, live: LiveQuota[]): void {
  for (const q of live) {
    q.counter = stage.state.counters.get(counterKey(q.def.metric, q.def.period)) ?? q.counter;
  }
}
