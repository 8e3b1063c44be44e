import { QuotaError } from './errors.js';
import { newEvent, type QuotaSettings } from './events.js';
import type { PeriodKind } from './period.js';
import type { QuotaDef } from './quota.js';
import { Stage, type Decided, type SubjectState } from './subject-state.js';

/** The quota to set (a QuotaDef, dated when it is recorded), and why. */
export interface SetQuotaCommand extends Omit<QuotaDef, 'updatedAt'> {
  reason: string | null;
}

export interface DeleteQuotaCommand {
  subject: string;
  metric: string;
  period: PeriodKind;
  reason: string | null;
}

/** Sets (creates or replaces) the subject's own quota: one QUOTA_SET event. */
export function decideSetQuota(
  state: SubjectState,
  cmd: SetQuotaCommand,
  actor: string,
  now: Date,
): Decided<{ quota: QuotaDef; sequence: bigint }> {
  const stage = new Stage(state);
  const quota = { limit: cmd.limit, timeZone: cmd.timeZone, anchorDay: cmd.anchorDay };
  const e = stage.record(settingsEvent('QUOTA_SET', cmd, quota, actor, now));
  return stage.decided({
    quota: {
      subject: cmd.subject,
      metric: cmd.metric,
      period: cmd.period,
      ...quota,
      updatedAt: now,
    },
    sequence: e.sequence,
  });
}

/** Deletes the subject's own quota (never a default it falls back on): one QUOTA_DELETED event. */
export function decideDeleteQuota(
  state: SubjectState,
  cmd: DeleteQuotaCommand,
  actor: string,
  now: Date,
): Decided<bigint> {
  const own = state.defs.find(
    (d) => d.subject === cmd.subject && d.metric === cmd.metric && d.period === cmd.period,
  );
  if (!own) {
    throw new QuotaError(
      'NOT_FOUND',
      `subject "${cmd.subject}" has no ${cmd.period} quota of its own on metric "${cmd.metric}"`,
    );
  }
  const stage = new Stage(state);
  const quota = { limit: own.limit, timeZone: own.timeZone, anchorDay: own.anchorDay };
  return stage.decided(
    stage.record(settingsEvent('QUOTA_DELETED', cmd, quota, actor, now)).sequence,
  );
}

/** QUOTA_SET or QUOTA_DELETED: the settings set, or those deleted. */
const settingsEvent = (
  type: 'QUOTA_SET' | 'QUOTA_DELETED',
  cmd: DeleteQuotaCommand,
  quota: QuotaSettings,
  actor: string,
  now: Date,
) =>
  newEvent({
    type,
    subject: cmd.subject,
    actor,
    recordedAt: now,
    metric: cmd.metric,
    period: cmd.period,
    reason: cmd.reason,
    data: { quota },
  });
