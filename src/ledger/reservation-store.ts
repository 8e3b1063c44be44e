import { QuotaError } from '../domain/errors.js';
import type { StoredEvent } from '../domain/events.js';
import type { OpenHold } from '../domain/quota.js';
import { EVENT_COLUMNS, encodeJson, eventFromRow, type EventRow } from './codec.js';
import type { Tx } from './db.js';
import type { SubjectWriter } from './subject-writer.js';

// The open-holds table and the lookups of a reservation's events, for the commands in
// reservation.ts and the expiry sweep.

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
export async function insertHold(
  tx: Tx,
  subject: string,
  hold: OpenHold,
  metric: string,
): Promise<void> {
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
export async function settledBefore(
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
