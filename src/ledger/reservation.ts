import { randomUUID } from 'node:crypto';
import type { CallSignal } from '../cancellation.js';
import type { OpenHold } from '../domain/quota.js';
import type { Decided } from '../domain/subject-state.js';
import {
  decideCancel,
  decideCommit,
  decideReserve,
  type ReservationHistory,
  type ReserveResult,
  type SettleResult,
} from '../domain/reservation-commands.js';
import type { CancelCommand, CommitCommand, ReserveCommand } from '../domain/reservation.js';
import { EVENT_COLUMNS, eventFromRow, type EventRow } from './codec.js';
import type { LedgerDeps } from './commands.js';
import type { Db, Tx } from './db.js';
import { eventByKey } from './refund.js';
import { holdOf, type HoldRow, type LoadedSubject } from './subject-state.js';
import { writeSubject } from './write.js';

export type { ReserveResult, SettleResult } from '../domain/reservation-commands.js';

/** Holds `cmd.amount` for `cmd.ttlMs`, decided like an ENFORCE Consume against used + reserved. */
export function reserve(
  deps: LedgerDeps,
  cmd: ReserveCommand,
  actor: string,
  signal?: CallSignal,
): Promise<ReserveResult> {
  return writeSubject(
    deps,
    cmd.subject,
    [cmd.metric],
    async (state, now, q) => {
      const prior = cmd.idempotencyKey
        ? await eventByKey(q, cmd.subject, 'RESERVED', cmd.idempotencyKey)
        : null;
      return decideReserve(state, cmd, prior, randomUUID(), actor, now);
    },
    signal,
  );
}

/** Settles a hold with the actual usage: records it in the current periods, releases the hold. */
export const commitReservation = (
  deps: LedgerDeps,
  cmd: CommitCommand,
  actor: string,
  signal?: CallSignal,
): Promise<SettleResult> => settle(deps, cmd, actor, decideCommit, signal);

/** Releases a hold without usage. */
export const cancelReservation = (
  deps: LedgerDeps,
  cmd: CancelCommand,
  actor: string,
  signal?: CallSignal,
): Promise<SettleResult> => settle(deps, cmd, actor, decideCancel, signal);

/** A settlement, decided on the subject's state and the reservation's history. */
function settle<C extends CommitCommand | CancelCommand>(
  deps: LedgerDeps,
  cmd: C,
  actor: string,
  decide: (
    state: LoadedSubject,
    cmd: C,
    history: ReservationHistory,
    actor: string,
    now: Date,
  ) => Decided<SettleResult>,
  signal?: CallSignal,
): Promise<SettleResult> {
  return writeSubject(
    deps,
    cmd.subject,
    null,
    async (state, now, q) =>
      decide(state, cmd, await historyOf(q, cmd.subject, cmd.reservationId), actor, now),
    signal,
  );
}

/** The open hold of a reservation; when there is none, the events that made and settled it. */
async function historyOf(q: Db | Tx, subject: string, id: string): Promise<ReservationHistory> {
  const hold = await openHold(q, subject, id);
  if (hold) return { hold, reserved: null, settled: null };
  const rows = await q.query<EventRow>(
    `SELECT ${EVENT_COLUMNS} FROM ledger_events
      WHERE subject = $1 AND data->>'reservationId' = $2
        AND type IN ('RESERVED', 'RESERVATION_COMMITTED', 'RESERVATION_CANCELLED',
                     'RESERVATION_EXPIRED')
      ORDER BY sequence`,
    [subject, id],
  );
  const events = rows.rows.map(eventFromRow);
  return {
    hold: null,
    reserved: events.find((e) => e.type === 'RESERVED') ?? null,
    settled: events.find((e) => e.type !== 'RESERVED') ?? null,
  };
}

/** An open hold of the subject; null once settled (or never made). */
async function openHold(q: Db | Tx, subject: string, id: string): Promise<OpenHold | null> {
  const rows = await q.query<HoldRow>(
    `SELECT reservation_id, metric, amount, expires_at, sequence, holds FROM reservations
      WHERE subject = $1 AND reservation_id = $2`,
    [subject, id],
  );
  return rows.rows[0] ? holdOf(rows.rows[0]) : null;
}
