import { randomUUID } from 'node:crypto';
import { QuotaError } from '../domain/errors.js';
import { newEvent, type Effect, type StoredEvent } from '../domain/events.js';
import { viewOf, type OpenHold, type QuotaView } from '../domain/quota.js';
import {
  decideCommit,
  decideReserve,
  expiredError,
  releasesOf,
  type CancelCommand,
  type CommitCommand,
  type ReserveCommand,
} from '../domain/reservation.js';
import { EVENT_COLUMNS, encodeJson, eventFromRow, type EventRow } from './codec.js';
import type { LedgerDeps } from './commands.js';
import { noQuota } from './consume.js';
import { inTransaction, type Tx } from './db.js';
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

/** An open hold of the subject, read under its lock; null once settled (or never made). */
export async function openHold(tx: Tx, subject: string, id: string): Promise<OpenHold | null> {
  const rows = await tx.query<{
    reservation_id: string;
    metric: string;
    amount: bigint;
    expires_at: Date;
    sequence: bigint;
    holds: { period: OpenHold['holds'][number]['period']; periodStart: string }[];
  }>(
    `SELECT reservation_id, metric, amount, expires_at, sequence, holds FROM reservations
      WHERE subject = $1 AND reservation_id = $2`,
    [subject, id],
  );
  const r = rows.rows[0];
  if (!r) return null;
  return {
    reservationId: r.reservation_id,
    metric: r.metric,
    amount: r.amount,
    expiresAt: r.expires_at,
    sequence: r.sequence,
    holds: r.holds.map((h) => ({ period: h.period, periodStart: new Date(h.periodStart) })),
  };
}

/** Writes the open-holds row of a new hold. */
async function insertHold(tx: Tx, subject: string, hold: OpenHold, metric: string): Promise<void> {
  await tx.query(
    `INSERT INTO reservations (subject, reservation_id, metric, amount, expires_at, sequence, holds)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [
      subject,
      hold.reservationId,
      metric,
      hold.amount,
      hold.expiresAt,
      hold.sequence,
      encodeJson(hold.holds),
    ],
  );
}

export const deleteHold = (tx: Tx, subject: string, id: string): Promise<unknown> =>
  tx.query('DELETE FROM reservations WHERE subject = $1 AND reservation_id = $2', [subject, id]);

/** The RESERVED event and the event that settled it, if any (by the unique indexes). */
async function history(
  w: SubjectWriter,
  id: string,
): Promise<{ reserved: StoredEvent | null; settled: StoredEvent | null }> {
  const rows = await w.tx.query<EventRow>(
    `SELECT ${EVENT_COLUMNS} FROM ledger_events
      WHERE subject = $1 AND data->>'reservationId' = $2
        AND type IN ('RESERVED', 'RESERVATION_COMMITTED', 'RESERVATION_CANCELLED',
                     'RESERVATION_EXPIRED')
      ORDER BY sequence`,
    [w.subject, id],
  );
  const events = rows.rows.map(eventFromRow);
  return {
    reserved: events.find((e) => e.type === 'RESERVED') ?? null,
    settled: events.find((e) => e.type !== 'RESERVED') ?? null,
  };
}

const HOW: Record<string, string> = {
  RESERVATION_COMMITTED: 'committed',
  RESERVATION_CANCELLED: 'cancelled',
  RESERVATION_EXPIRED: 'expired',
};

/**
 * The settlement that replays (same outcome), or the error for a reservation that cannot be
 * settled now: unknown (NOT_FOUND) or settled another way (FAILED_PRECONDITION).
 */
async function settledBefore(
  w: SubjectWriter,
  id: string,
  replays: (settled: StoredEvent) => boolean,
): Promise<StoredEvent> {
  const { reserved, settled } = await history(w, id);
  if (!reserved) {
    throw new QuotaError(
      'NOT_FOUND',
      `reservation_id: subject "${w.subject}" has no reservation "${id}"`,
    );
  }
  if (!settled) {
    throw new QuotaError('INTERNAL', `reservation "${id}" is neither open nor settled`);
  }
  if (replays(settled)) return settled;
  const what = settled.type === 'RESERVATION_COMMITTED' ? ` with amount ${settled.amount}` : '';
  throw new QuotaError(
    'FAILED_PRECONDITION',
    `reservation_id: reservation "${id}" was already ${HOW[settled.type]}${what} (sequence ${settled.sequence}) and cannot be settled again`,
  );
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
