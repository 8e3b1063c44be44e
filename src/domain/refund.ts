import { invalid, noQuota, QuotaError } from './errors.js';
import { newEvent, type Effect, type StoredEvent } from './events.js';
import { viewOf, type LiveQuota, type QuotaView } from './quota.js';
import { decideRoll, syncLive } from './roll.js';
import { Stage, type Decided, type SubjectState } from './subject-state.js';

export interface RefundCommand {
  subject: string;
  metric: string;
  amount: bigint;
  idempotencyKey: string | null;
  usageIdempotencyKey: string | null;
  reason: string | null;
  /**
   * Whether a refund may give back usage without naming it (admin): a consumer's refund must
   * name the usage it returns, and is capped by it.
   */
  unnamedAllowed?: boolean;
}

/** What the ledger holds that a refund's decision depends on, besides the subject's state. */
export interface RefundHistory {
  /** The refund already recorded under the command's idempotency key. */
  prior: StoredEvent | null;
  /**
   * The usage it gives back: the one under usage_idempotency_key, else the one under the
   * refund's own idempotency key (see RefundRequest in the proto).
   */
  usage: StoredEvent | null;
  /** How much of that usage earlier refunds gave back. */
  refundedSoFar: bigint;
}

export interface RefundResult {
  quotas: QuotaView[];
  sequence: bigint;
  replayed: boolean;
  credited: Effect[];
}

/** How much of `amount` each counter can give back without going below zero. */
export function refundCredits(used: readonly bigint[], amount: bigint): bigint[] {
  return used.map((u) => (u < amount ? u : amount));
}

/** Effects store what the counter lost; callers are told what they got back. */
const asCredits = (effects: Effect[]): Effect[] =>
  effects.map((fx) => ({ ...fx, delta: -fx.delta }));

/**
 * Decides a Refund: a replay of the refund under its key, or a REFUND event crediting the
 * periods still current that the usage (if named) was charged in, never below zero, capped by
 * what is left of that usage.
 */
export function decideRefund(
  state: SubjectState,
  cmd: RefundCommand,
  history: RefundHistory,
  actor: string,
  now: Date,
): Decided<RefundResult> {
  const stage = new Stage(state);
  const { prior, usage } = history;
  if (prior) {
    if (prior.metric !== cmd.metric || prior.amount !== cmd.amount) {
      throw new QuotaError(
        'ALREADY_EXISTS',
        `idempotency_key: "${cmd.idempotencyKey}" was already used by this subject for a refund of ${prior.amount} of "${prior.metric}"`,
      );
    }
    const live = decideRoll(stage, cmd.metric, now);
    return stage.decided({
      quotas: live.map((q) => viewOf(q, cmd.subject)),
      sequence: prior.sequence,
      replayed: true,
      credited: asCredits(prior.data.effects ?? []),
    });
  }
  if (cmd.usageIdempotencyKey && !usage) {
    throw new QuotaError(
      'NOT_FOUND',
      `usage_idempotency_key: subject "${cmd.subject}" has no usage with key "${cmd.usageIdempotencyKey}"`,
    );
  }
  if (!usage && cmd.unnamedAllowed === false) {
    throw new QuotaError(
      'PERMISSION_DENIED',
      'a refund that names no usage (usage_idempotency_key, or an idempotency_key a usage carries) needs role admin',
    );
  }
  if (usage) {
    if (usage.metric !== cmd.metric) {
      throw invalid(
        'metric',
        `the usage being refunded was of "${usage.metric}", not "${cmd.metric}"`,
      );
    }
    const left = (usage.amount ?? 0n) - history.refundedSoFar;
    if (cmd.amount > left) {
      throw new QuotaError(
        'FAILED_PRECONDITION',
        `amount: ${cmd.amount} is more than the ${left} left to refund of usage sequence ${usage.sequence}`,
      );
    }
  }
  const live = decideRoll(stage, cmd.metric, now);
  if (live.length === 0 && !usage) throw noQuota(cmd.subject, cmd.metric);

  // Only periods still current are credited: a refund of an ended period's usage is recorded
  // but cannot change a counter that has moved on.
  const charged = (q: LiveQuota): boolean =>
    !usage ||
    (usage.data.effects ?? []).some(
      (fx) =>
        fx.period === q.def.period && fx.periodStart.getTime() === q.counter.periodStart.getTime(),
    );
  const targets = live.filter((q) => q.stored && charged(q));
  const credits = refundCredits(
    targets.map((q) => q.counter.used),
    cmd.amount,
  );
  const effects: Effect[] = targets
    .map((q, i) => ({
      period: q.def.period,
      periodStart: q.counter.periodStart,
      periodEnd: q.counter.periodEnd,
      delta: -credits[i]!,
    }))
    .filter((fx) => fx.delta !== 0n);
  const refund = stage.record(
    newEvent({
      type: 'REFUND',
      subject: cmd.subject,
      actor,
      recordedAt: now,
      metric: cmd.metric,
      amount: cmd.amount,
      reason: cmd.reason,
      idempotencyKey: cmd.idempotencyKey,
      data: { effects, ...(usage ? { refundedSequence: usage.sequence } : {}) },
    }),
  );
  syncLive(stage, live);
  return stage.decided({
    quotas: live.map((q) => viewOf(q, cmd.subject)),
    sequence: refund.sequence,
    replayed: false,
    credited: asCredits(effects),
  });
}
