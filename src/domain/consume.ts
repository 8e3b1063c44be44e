import { noQuota, QuotaError } from './errors.js';
import { newEvent } from './events.js';
import { decideRoll } from './roll.js';
import { viewOf, type LiveQuota, type QuotaView } from './quota.js';
import { Stage, type PriorUsage, type SubjectChanges, type SubjectState } from './subject-state.js';
import { INT64_MAX } from './counter.js';

export type ConsumeMode = 'ENFORCE' | 'RECORD' | 'DRY_RUN';

export interface ConsumeCommand {
  subject: string;
  metric: string;
  amount: bigint;
  idempotencyKey: string | null;
  mode: ConsumeMode;
  attributes: Record<string, string>;
}

export interface ConsumeCall {
  cmd: ConsumeCommand;
  actor: string;
}

export interface ConsumeResult {
  allowed: boolean;
  recorded: boolean;
  replayed: boolean;
  sequence: bigint;
  quotas: QuotaView[];
  retryAt: Date | null;
}

/** One call's answer: a result, or the error that call alone gets. */
export type ConsumeOutcome = { ok: true; result: ConsumeResult } | { ok: false; error: QuotaError };

export interface Judgement {
  /** The amount fits every quota. */
  allowed: boolean;
  /** A usage event is to be appended. */
  record: boolean;
  /** Every quota after the call (before it when nothing is recorded), with `exceeded` marked. */
  quotas: QuotaView[];
  /** When refused: the earliest instant every refusing quota has reset; null if that never comes. */
  retryAt: Date | null;
}

/**
 * Decides a Consume against quotas already rolled to the current period. Pure: the append that
 * follows refuses it if the subject changed since the state it was decided on.
 */
export function judgeConsume(
  quotas: readonly LiveQuota[],
  subject: string,
  amount: bigint,
  mode: ConsumeMode,
): Judgement {
  // Held amounts count like usage: a hold is a promise that the amount is there at commit.
  const over = quotas.map((q) => q.counter.used + q.held + amount > q.def.limit);
  const allowed = !over.includes(true);
  const record = mode === 'RECORD' || (mode === 'ENFORCE' && allowed);
  if (record) {
    for (const q of quotas) {
      if (q.counter.used + q.held + amount > INT64_MAX) {
        throw new QuotaError(
          'OUT_OF_RANGE',
          `amount: ${amount} more would overflow the ${q.def.period} counter of ${q.def.metric} (used ${q.counter.used}, reserved ${q.held}, int64 maximum ${INT64_MAX})`,
        );
      }
    }
  }
  const views = quotas.map((q, i) =>
    viewOf(q, subject, record ? q.counter.used + amount : q.counter.used, over[i]),
  );
  return {
    allowed,
    record,
    quotas: views,
    retryAt: allowed ? null : retryAt(quotas, amount, over),
  };
}

function retryAt(quotas: readonly LiveQuota[], amount: bigint, over: boolean[]): Date | null {
  let latest: Date | null = null;
  for (const [i, q] of quotas.entries()) {
    if (!over[i]) continue;
    // Waiting helps only if a fresh period could hold the amount and one is coming.
    if (amount > q.def.limit || q.counter.periodEnd === null) return null;
    if (!latest || q.counter.periodEnd > latest) latest = q.counter.periodEnd;
  }
  return latest;
}

function replay(prior: PriorUsage, cmd: ConsumeCommand): ConsumeResult {
  if (prior.metric !== cmd.metric || prior.amount !== cmd.amount) {
    throw new QuotaError(
      'ALREADY_EXISTS',
      `idempotency_key: "${cmd.idempotencyKey}" was already used by this subject for ${prior.amount} of "${prior.metric}" (sequence ${prior.sequence}); use a new key for a different usage`,
    );
  }
  return {
    allowed: !prior.overLimit,
    recorded: true,
    replayed: true,
    sequence: prior.sequence,
    quotas: prior.quotas,
    retryAt: null,
  };
}

/**
 * Decides one Consume on the staged subject: a replay of the usage recorded under its key, or
 * the rolls its quotas need and, when it is to be recorded, its USAGE event (the answer kept in
 * it for retries). Throws the QuotaError the call gets.
 */
export function decideConsume(stage: Stage, { cmd, actor }: ConsumeCall, now: Date): ConsumeResult {
  const state = stage.state;
  const prior = cmd.idempotencyKey ? state.priors.get(cmd.idempotencyKey) : undefined;
  if (prior) return replay(prior, cmd);
  const live = decideRoll(stage, cmd.metric, now);
  if (live.length === 0) throw noQuota(state.subject, cmd.metric);
  const d = judgeConsume(live, state.subject, cmd.amount, cmd.mode);
  let sequence = 0n;
  if (d.record) {
    const usage = stage.record(
      newEvent({
        type: 'USAGE',
        subject: state.subject,
        actor,
        recordedAt: now,
        metric: cmd.metric,
        amount: cmd.amount,
        idempotencyKey: cmd.idempotencyKey,
        attributes: Object.keys(cmd.attributes).length ? cmd.attributes : null,
        data: {
          overLimit: !d.allowed,
          effects: live.map((q) => ({
            period: q.def.period,
            periodStart: q.counter.periodStart,
            periodEnd: q.counter.periodEnd,
            delta: cmd.amount,
          })),
          quotas: d.quotas,
        },
      }),
    );
    sequence = usage.sequence;
    if (cmd.idempotencyKey) {
      state.priors.set(cmd.idempotencyKey, {
        metric: cmd.metric,
        amount: cmd.amount,
        sequence,
        overLimit: !d.allowed,
        quotas: d.quotas,
      });
    }
  }
  return {
    allowed: d.allowed,
    recorded: d.record,
    replayed: false,
    sequence,
    quotas: d.quotas,
    retryAt: d.retryAt,
  };
}

/**
 * Decides consumes of one subject in order, each seeing the state the previous ones left,
 * exactly as if each ran in its own transaction under the subject's lock. A call that fails
 * leaves no trace (not even the roll it would have recorded), so it cannot change another
 * call's answer. Pure: `state` is the caller's copy and is updated in place.
 */
export function applyConsumes(
  state: SubjectState,
  calls: readonly ConsumeCall[],
  now: Date,
): { outcomes: ConsumeOutcome[]; changes: SubjectChanges } {
  const stage = new Stage(state);
  const outcomes = calls.map((call): ConsumeOutcome => {
    const undo = stage.mark();
    try {
      return { ok: true, result: decideConsume(stage, call, now) };
    } catch (err) {
      if (!(err instanceof QuotaError)) throw err;
      undo();
      return { ok: false, error: err };
    }
  });
  return { outcomes, changes: stage.changes() };
}
