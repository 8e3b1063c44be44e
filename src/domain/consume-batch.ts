import { decideConsume, type ConsumeMode } from './consume.js';
import { QuotaError } from './errors.js';
import { newEvent, type NewEvent } from './events.js';
import type { PeriodKind } from './period.js';
import {
  counterKey,
  liveQuotasOf,
  type CounterState,
  type LiveQuota,
  type OpenHold,
  type QuotaDef,
  type QuotaView,
} from './quota.js';

export const SCHEDULER_ACTOR = 'scheduler';

export interface ConsumeCommand {
  subject: string;
  metric: string;
  amount: bigint;
  idempotencyKey: string | null;
  mode: ConsumeMode;
  attributes: Record<string, string>;
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

/** What the first usage with an idempotency key answered; a retry gets it again. */
export interface PriorUsage {
  metric: string;
  amount: bigint;
  sequence: bigint;
  overLimit: boolean;
  quotas: QuotaView[];
}

/** A subject as loaded under its lock: everything a run of consumes on it can touch. */
export interface SubjectState {
  subject: string;
  lastSequence: bigint;
  /** Its own quotas and the defaults ("*"), at least for every metric in the run. */
  defs: readonly QuotaDef[];
  /** Its counters by counterKey(metric, period), at least for every metric in the run. */
  counters: Map<string, CounterState>;
  /** Usages already in the ledger, by idempotency key, at least for every key in the run. */
  priors: Map<string, PriorUsage>;
  /** Open holds that may have expired by the decision (see liveQuotasOf), at least for the run. */
  lapsed: OpenHold[];
}

export interface CounterWrite {
  metric: string;
  period: PeriodKind;
  state: CounterState;
}

export interface SequencedEvent extends NewEvent {
  sequence: bigint;
}

export interface SubjectChanges {
  outcomes: ConsumeOutcome[];
  /** Events to append, in sequence order. */
  events: SequencedEvent[];
  /** The final state of each counter that changed: one write per counter however many calls. */
  counters: CounterWrite[];
  lastSequence: bigint;
}

export const noQuota = (subject: string, metric: string): QuotaError =>
  new QuotaError(
    'NOT_FOUND',
    `subject "${subject}" has no quota on metric "${metric}" (neither its own nor a default for "*")`,
  );

export const cancelledBeforeCommit = (): QuotaError =>
  new QuotaError(
    'DEADLINE_EXCEEDED',
    'the call was cancelled or its deadline passed before the change was committed; nothing was recorded',
  );

/** The RESET_SCHEDULED event of a counter whose period ended before `now`. */
export function rollEvent(subject: string, q: LiveQuota, now: Date): NewEvent | null {
  if (!q.roll) return null;
  return newEvent({
    type: 'RESET_SCHEDULED',
    subject,
    actor: SCHEDULER_ACTOR,
    recordedAt: now,
    metric: q.def.metric,
    period: q.def.period,
    periodStart: q.roll.start,
    periodEnd: q.roll.end,
    reason: 'period ended',
    data: {
      previousPeriodStart: q.roll.previousStart,
      previousPeriodEnd: q.roll.previousEnd,
      usedBefore: q.roll.usedBefore,
    },
  });
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

export interface ConsumeCall {
  cmd: ConsumeCommand;
  actor: string;
}

/**
 * Applies consumes of one subject in order, each seeing the state the previous ones left,
 * exactly as if each ran in its own transaction under the subject's lock. A call that fails
 * leaves no trace (not even the roll it would have appended), so it cannot change another
 * call's answer. Pure: `state` is the caller's copy and is updated in place.
 */
export function applyConsumes(
  state: SubjectState,
  calls: readonly ConsumeCall[],
  now: Date,
): SubjectChanges {
  const events: SequencedEvent[] = [];
  const dirty = new Map<string, CounterWrite>();
  const append = (e: NewEvent): bigint => {
    state.lastSequence += 1n;
    events.push({ ...e, sequence: state.lastSequence });
    return state.lastSequence;
  };
  const setCounter = (metric: string, period: PeriodKind, s: CounterState): void => {
    const key = counterKey(metric, period);
    state.counters.set(key, s);
    dirty.set(key, { metric, period, state: s });
  };

  const outcomes = calls.map(({ cmd, actor }): ConsumeOutcome => {
    const mark = {
      seq: state.lastSequence,
      events: events.length,
      counters: new Map(state.counters),
      dirty: new Map(dirty),
    };
    try {
      return { ok: true, result: consumeOne(cmd, actor) };
    } catch (err) {
      if (!(err instanceof QuotaError)) throw err;
      state.lastSequence = mark.seq;
      events.length = mark.events;
      state.counters = mark.counters;
      dirty.clear();
      for (const [k, v] of mark.dirty) dirty.set(k, v);
      return { ok: false, error: err };
    }
  });
  return { outcomes, events, counters: [...dirty.values()], lastSequence: state.lastSequence };

  function consumeOne(cmd: ConsumeCommand, actor: string): ConsumeResult {
    const prior = cmd.idempotencyKey ? state.priors.get(cmd.idempotencyKey) : undefined;
    if (prior) return replay(prior, cmd);
    const defs = state.defs.filter((d) => d.metric === cmd.metric);
    const live = liveQuotasOf(defs, state.counters, state.subject, now, null, state.lapsed);
    if (live.length === 0) throw noQuota(state.subject, cmd.metric);
    for (const q of live) {
      const roll = rollEvent(state.subject, q, now);
      if (!roll) continue;
      q.counter = { ...q.counter, lastSequence: append(roll) };
      setCounter(q.def.metric, q.def.period, q.counter);
    }
    const d = decideConsume(live, state.subject, cmd.amount, cmd.mode);
    let sequence = 0n;
    if (d.record) {
      sequence = append(
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
      for (const q of live) {
        setCounter(q.def.metric, q.def.period, {
          ...q.counter,
          used: q.counter.used + cmd.amount,
          lastSequence: sequence,
        });
      }
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
}
