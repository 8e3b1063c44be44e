import { randomUUID } from 'node:crypto';
import { QuotaError } from '../domain/errors.js';
import { newEvent, type Effect } from '../domain/events.js';
import { viewOf, type QuotaView } from '../domain/quota.js';
import {
  decideCommit,
  decideReserve,
  expiredError,
  releasesOf,
  type CancelCommand,
  type CommitCommand,
  type ReserveCommand,
} from '../domain/reservation.js';
import type { LedgerDeps } from './commands.js';
import { noQuota } from './consume.js';
import { inTransaction } from './db.js';
import { deleteHold, insertHold, openHold, settledBefore } from './reservation-store.js';
import { SubjectWriter } from './subject-writer.js';

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

/** Holds `cmd.amount` for `cmd.ttlMs`, decided like an ENFORCE Consume against used + reserved. */
export async function reserve(
  deps: LedgerDeps,
  cmd: ReserveCommand,
  actor: string,
  signal?: AbortSignal,
): Promise<ReserveResult> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const w = await SubjectWriter.open(tx, cmd.subject);
      const now = deps.clock.now();
      const prior = cmd.idempotencyKey ? await w.findByKey('RESERVED', cmd.idempotencyKey) : null;
      if (prior) {
        if (prior.metric !== cmd.metric || prior.amount !== cmd.amount) {
          throw new QuotaError(
            'ALREADY_EXISTS',
            `idempotency_key: "${cmd.idempotencyKey}" was already used by this subject to reserve ${prior.amount} of "${prior.metric}"; use a new key for a different reservation`,
          );
        }
        return {
          allowed: true,
          reservationId: prior.data.reservationId!,
          expiresAt: prior.data.expiresAt!,
          quotas: prior.data.quotas ?? [],
          sequence: prior.sequence,
          replayed: true,
          retryAt: null,
        };
      }
      const live = await w.liveQuotas(cmd.metric, now);
      if (live.length === 0) throw noQuota(cmd.subject, cmd.metric);
      const d = decideReserve(live, cmd.subject, cmd.amount);
      if (!d.allowed) {
        await w.flush();
        // A refusal leaves no trace, not even the subject row it may have made.
        await tx.query('SELECT quota_forget_unused_subjects($1::text[])', [[cmd.subject]]);
        return {
          allowed: false,
          reservationId: null,
          expiresAt: null,
          quotas: d.quotas,
          sequence: 0n,
          replayed: false,
          retryAt: d.retryAt,
        };
      }
      const reservationId = randomUUID();
      const expiresAt = new Date(now.getTime() + cmd.ttlMs);
      const sequence = w.append(
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
      for (const q of live) {
        w.setCounter(q.def.metric, q.def.period, {
          ...q.counter,
          reserved: q.counter.reserved + cmd.amount,
          lastSequence: sequence,
        });
      }
      await w.flush();
      const holds = d.holds.map((h) => ({ period: h.period, periodStart: h.periodStart }));
      await insertHold(
        tx,
        cmd.subject,
        { reservationId, metric: cmd.metric, amount: cmd.amount, expiresAt, sequence, holds },
        cmd.metric,
      );
      return {
        allowed: true,
        reservationId,
        expiresAt,
        quotas: d.quotas,
        sequence,
        replayed: false,
        retryAt: null,
      };
    },
    signal,
  );
}

/** The subject's quotas of `metric` now (rolls written), for a replayed settlement's answer. */
async function currentViews(
  w: SubjectWriter,
  metric: string | null,
  now: Date,
): Promise<QuotaView[]> {
  if (!metric) return [];
  const live = await w.liveQuotas(metric, now);
  await w.flush();
  return live.map((q) => viewOf(q, w.subject));
}

/** Settles a hold with the actual usage: records it in the current periods, releases the hold. */
export async function commitReservation(
  deps: LedgerDeps,
  cmd: CommitCommand,
  actor: string,
  signal?: AbortSignal,
): Promise<SettleResult> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const w = await SubjectWriter.open(tx, cmd.subject);
      const now = deps.clock.now();
      const hold = await openHold(tx, cmd.subject, cmd.reservationId);
      if (!hold) {
        const prior = await settledBefore(
          w,
          cmd.reservationId,
          (e) => e.type === 'RESERVATION_COMMITTED' && e.amount === cmd.amount,
        );
        const quotas = await currentViews(w, prior.metric, now);
        return { quotas, sequence: prior.sequence, replayed: true };
      }
      const live = await w.liveQuotas(hold.metric, now);
      const d = decideCommit(hold, live, cmd.subject, cmd.amount, cmd.allowOverrun, now);
      const sequence = w.append(
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
      for (const q of live) {
        const released = d.holds.some((h) => h.period === q.def.period) ? hold.amount : 0n;
        w.setCounter(q.def.metric, q.def.period, {
          ...q.counter,
          used: q.counter.used + cmd.amount,
          reserved: q.counter.reserved - released,
          lastSequence: sequence,
        });
      }
      await w.flush();
      await deleteHold(tx, cmd.subject, hold.reservationId);
      return { quotas: d.quotas, sequence, replayed: false };
    },
    signal,
  );
}

/** Releases a hold without usage. */
export async function cancelReservation(
  deps: LedgerDeps,
  cmd: CancelCommand,
  actor: string,
  signal?: AbortSignal,
): Promise<SettleResult> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const w = await SubjectWriter.open(tx, cmd.subject);
      const now = deps.clock.now();
      const hold = await openHold(tx, cmd.subject, cmd.reservationId);
      if (!hold) {
        const prior = await settledBefore(
          w,
          cmd.reservationId,
          (e) => e.type === 'RESERVATION_CANCELLED',
        );
        const quotas = await currentViews(w, prior.metric, now);
        return { quotas, sequence: prior.sequence, replayed: true };
      }
      if (hold.expiresAt.getTime() <= now.getTime()) throw expiredError(hold);
      const live = await w.liveQuotas(hold.metric, now);
      const holds: Effect[] = releasesOf(
        hold,
        live.map((q) => ({ period: q.def.period, counter: q.counter })),
      );
      const sequence = w.append(
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
      for (const q of live) {
        if (!holds.some((h) => h.period === q.def.period)) continue;
        q.counter = {
          ...q.counter,
          reserved: q.counter.reserved - hold.amount,
          lastSequence: sequence,
        };
        q.held -= hold.amount;
        w.setCounter(q.def.metric, q.def.period, q.counter);
      }
      await w.flush();
      await deleteHold(tx, cmd.subject, hold.reservationId);
      return { quotas: live.map((q) => viewOf(q, cmd.subject)), sequence, replayed: false };
    },
    signal,
  );
}
