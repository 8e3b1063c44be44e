import { noQuota, QuotaError } from './errors.js';
import { newEvent, SCHEDULER_ACTOR, type StoredEvent } from './events.js';
import { counterKey, viewOf, type OpenHold, type QuotaView } from './quota.js';
import {
  expiredError,
  judgeCommit,
  judgeReserve,
  releasesOf,
  type CancelCommand,
  type CommitCommand,
  type ReserveCommand,
} from './reservation.js';
import { decideRoll, syncLive } from './roll.js';
import { Stage, type Decided, type SubjectState } from './subject-state.js';

// The reservation commands as events: Reserve, Commit, Cancel and the expiry of a hold. The
// rules they apply (what fits, what a settlement releases) are in reservation.ts.

export interface ReserveResult {
  allowed: boolean;
  reservationId: string | null;
  expiresAt: Date | null;
  quotas: QuotaView[];
  sequence: bigint;
  replayed: boolean;
  retryAt: Date | null;
}

export interface SettleResult {
  quotas: QuotaView[];
  sequence: bigint;
  replayed: boolean;
}

/** A reservation as the ledger knows it: its open hold, or the events that made and settled it. */
export interface ReservationHistory {
  hold: OpenHold | null;
  /** Only read when there is no open hold. */
  reserved: StoredEvent | null;
  settled: StoredEvent | null;
}

/**
 * Decides a Reserve: a replay of the hold made under its key, or the hold itself (RESERVED,
 * adding the amount to every counter's `reserved`) if it fits like an ENFORCE Consume.
 * `reservationId` is the id a new hold gets.
 */
export function decideReserve(
  state: SubjectState,
  cmd: ReserveCommand,
  prior: StoredEvent | null,
  reservationId: string,
  actor: string,
  now: Date,
): Decided<ReserveResult> {
  const stage = new Stage(state);
  if (prior) {
    if (prior.metric !== cmd.metric || prior.amount !== cmd.amount) {
      throw new QuotaError(
        'ALREADY_EXISTS',
        `idempotency_key: "${cmd.idempotencyKey}" was already used by this subject to reserve ${prior.amount} of "${prior.metric}"; use a new key for a different reservation`,
      );
    }
    return stage.decided({
      allowed: true,
      reservationId: prior.data.reservationId!,
      expiresAt: prior.data.expiresAt!,
      quotas: prior.data.quotas ?? [],
      sequence: prior.sequence,
      replayed: true,
      retryAt: null,
    });
  }
  const live = decideRoll(stage, cmd.metric, now);
  if (live.length === 0) throw noQuota(cmd.subject, cmd.metric);
  const d = judgeReserve(live, cmd.subject, cmd.amount);
  if (!d.allowed) {
    return stage.decided({
      allowed: false,
      reservationId: null,
      expiresAt: null,
      quotas: d.quotas,
      sequence: 0n,
      replayed: false,
      retryAt: d.retryAt,
    });
  }
  const expiresAt = new Date(now.getTime() + cmd.ttlMs);
  const e = stage.record(
    newEvent({
      type: 'RESERVED',
      subject: cmd.subject,
      actor,
      recordedAt: now,
      metric: cmd.metric,
      amount: cmd.amount,
      idempotencyKey: cmd.idempotencyKey,
      attributes: Object.keys(cmd.attributes).length ? cmd.attributes : null,
      data: { reservationId, expiresAt, holds: d.holds, quotas: d.quotas },
    }),
  );
  return stage.decided({
    allowed: true,
    reservationId,
    expiresAt,
    quotas: d.quotas,
    sequence: e.sequence,
    replayed: false,
    retryAt: null,
  });
}

const HOW: Record<string, string> = {
  RESERVATION_COMMITTED: 'committed',
  RESERVATION_CANCELLED: 'cancelled',
  RESERVATION_EXPIRED: 'expired',
};

/**
 * A settlement of a reservation that has no open hold: a replay of the one that settled it
 * the same way (with the quotas as they are now), or the error for one that is unknown
 * (NOT_FOUND) or was settled another way (FAILED_PRECONDITION).
 */
function replaySettlement(
  stage: Stage,
  id: string,
  history: ReservationHistory,
  replays: (settled: StoredEvent) => boolean,
  now: Date,
): Decided<SettleResult> {
  const { reserved, settled } = history;
  if (!reserved) {
    throw new QuotaError(
      'NOT_FOUND',
      `reservation_id: subject "${stage.state.subject}" has no reservation "${id}"`,
    );
  }
  if (!settled) throw new QuotaError('INTERNAL', `reservation "${id}" is neither open nor settled`);
  if (!replays(settled)) {
    const what = settled.type === 'RESERVATION_COMMITTED' ? ` with amount ${settled.amount}` : '';
    throw new QuotaError(
      'FAILED_PRECONDITION',
      `reservation_id: reservation "${id}" was already ${HOW[settled.type]}${what} (sequence ${settled.sequence}) and cannot be settled again`,
    );
  }
  const live = settled.metric ? decideRoll(stage, settled.metric, now) : [];
  return stage.decided({
    quotas: live.map((q) => viewOf(q, stage.state.subject)),
    sequence: settled.sequence,
    replayed: true,
  });
}

/** Decides a Commit: the usage charged to the periods current now, the hold released. */
export function decideCommit(
  state: SubjectState,
  cmd: CommitCommand,
  history: ReservationHistory,
  actor: string,
  now: Date,
): Decided<SettleResult> {
  const stage = new Stage(state);
  const hold = history.hold;
  if (!hold) {
    return replaySettlement(
      stage,
      cmd.reservationId,
      history,
      (e) => e.type === 'RESERVATION_COMMITTED' && e.amount === cmd.amount,
      now,
    );
  }
  const live = decideRoll(stage, hold.metric, now);
  const d = judgeCommit(hold, live, cmd.subject, cmd.amount, cmd.allowOverrun, now);
  const e = stage.record(
    newEvent({
      type: 'RESERVATION_COMMITTED',
      subject: cmd.subject,
      actor,
      recordedAt: now,
      metric: hold.metric,
      amount: cmd.amount,
      reason: cmd.reason,
      data: {
        reservationId: hold.reservationId,
        reservedAmount: hold.amount,
        effects: d.effects,
        holds: d.holds,
        overLimit: d.overLimit,
        quotas: d.quotas,
      },
    }),
  );
  return stage.decided({ quotas: d.quotas, sequence: e.sequence, replayed: false });
}

/** Decides a Cancel: the hold released without usage, if it has not expired. */
export function decideCancel(
  state: SubjectState,
  cmd: CancelCommand,
  history: ReservationHistory,
  actor: string,
  now: Date,
): Decided<SettleResult> {
  const stage = new Stage(state);
  const hold = history.hold;
  if (!hold) {
    return replaySettlement(
      stage,
      cmd.reservationId,
      history,
      (e) => e.type === 'RESERVATION_CANCELLED',
      now,
    );
  }
  if (hold.expiresAt.getTime() <= now.getTime()) throw expiredError(hold);
  const live = decideRoll(stage, hold.metric, now);
  const holds = releasesOf(
    hold,
    live.map((q) => ({ period: q.def.period, counter: q.counter })),
  );
  const e = stage.record(
    newEvent({
      type: 'RESERVATION_CANCELLED',
      subject: cmd.subject,
      actor,
      recordedAt: now,
      metric: hold.metric,
      amount: hold.amount,
      reason: cmd.reason,
      data: { reservationId: hold.reservationId, holds },
    }),
  );
  syncLive(stage, live);
  for (const q of live) if (holds.some((h) => h.period === q.def.period)) q.held -= hold.amount;
  return stage.decided({
    quotas: live.map((q) => viewOf(q, cmd.subject)),
    sequence: e.sequence,
    replayed: false,
  });
}

/**
 * Decides the expiry of every hold of the subject whose ttl has passed by `now` (they are in
 * state.lapsed): one RESERVATION_EXPIRED each, releasing it from the counters still in the
 * period it was made in. Returns how many expired.
 */
export function decideExpiry(state: SubjectState, now: Date): Decided<number> {
  const stage = new Stage(state);
  const due = state.lapsed.filter((h) => h.expiresAt.getTime() <= now.getTime());
  for (const hold of due) {
    const counters = hold.holds.flatMap((h) => {
      const c = state.counters.get(counterKey(hold.metric, h.period));
      return c ? [{ period: h.period, counter: c }] : [];
    });
    stage.record(
      newEvent({
        type: 'RESERVATION_EXPIRED',
        subject: state.subject,
        actor: SCHEDULER_ACTOR,
        recordedAt: now,
        metric: hold.metric,
        amount: hold.amount,
        reason: 'reservation ttl passed',
        data: {
          reservationId: hold.reservationId,
          expiresAt: hold.expiresAt,
          holds: releasesOf(hold, counters),
        },
      }),
    );
  }
  return stage.decided(due.length);
}
