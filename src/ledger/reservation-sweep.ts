import { newEvent } from '../domain/events.js';
import { counterKey } from '../domain/quota.js';
import { releasesOf } from '../domain/reservation.js';
import { readConsumeState } from './consume-state.js';
import { inTransaction, query, type Db } from './db.js';
import { deleteHold } from './reservation-store.js';
import { SCHEDULER_ACTOR, SubjectWriter } from './subject-writer.js';

/**
 * Writes RESERVATION_EXPIRED for every hold whose ttl has passed by `now`, releasing it from
 * the counters still in the period it was made in. Decisions already leave such holds out
 * (lazily, by the same clock); this makes the ledger and the `reserved` column say so too.
 * One transaction per subject, under the lock every writer of the subject takes, re-reading
 * the holds there: a commit or cancel that won the race has deleted the row (and the unique
 * index on settlements would refuse a second one anyway). Returns how many it expired.
 */
export async function expireReservations(
  db: Db,
  now: Date,
  o: { batchSize?: number; shouldStop?: () => boolean } = {},
): Promise<number> {
  const batchSize = o.batchSize ?? 500;
  let expired = 0;
  for (;;) {
    const due = await query<{ subject: string }>(
      db,
      `SELECT DISTINCT subject FROM (
         SELECT subject FROM reservations WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
       ) d`,
      [now, batchSize],
    );
    let n = 0;
    for (const { subject } of due) {
      if (o.shouldStop?.()) return expired;
      n += await expireSubject(db, subject, now);
    }
    expired += n;
    // Nothing expired although some were due: they are being settled right now; next run.
    if (due.length === 0 || n === 0) return expired;
  }
}

async function expireSubject(db: Db, subject: string, now: Date): Promise<number> {
  return inTransaction(db, async (tx) => {
    const w = await SubjectWriter.open(tx, subject);
    const state = (
      await readConsumeState(tx, { subjects: [subject], metrics: null, keyed: [], lapsedAt: now })
    ).get(subject)!;
    for (const hold of state.lapsed) {
      const counters = hold.holds.flatMap((h) => {
        const c = state.counters.get(counterKey(hold.metric, h.period));
        return c ? [{ period: h.period, counter: c }] : [];
      });
      const holds = releasesOf(hold, counters);
      const sequence = w.append(
        newEvent({
          type: 'RESERVATION_EXPIRED',
          subject,
          actor: SCHEDULER_ACTOR,
          recordedAt: now,
          metric: hold.metric,
          amount: hold.amount,
          reason: 'reservation ttl passed',
          data: { reservationId: hold.reservationId, expiresAt: hold.expiresAt, holds },
        }),
      );
      for (const h of holds) {
        const key = counterKey(hold.metric, h.period);
        const c = state.counters.get(key)!;
        const next = { ...c, reserved: c.reserved - hold.amount, lastSequence: sequence };
        state.counters.set(key, next);
        w.setCounter(hold.metric, h.period, next);
      }
    }
    await w.flush();
    for (const hold of state.lapsed) await deleteHold(tx, subject, hold.reservationId);
    return state.lapsed.length;
  });
}

/** The earliest expiry after `now` of an open hold; null if none. */
export async function nextExpiry(db: Db, now: Date): Promise<Date | null> {
  const rows = await query<{ next: Date | null }>(
    db,
    'SELECT min(expires_at) AS next FROM reservations WHERE expires_at > $1',
    [now],
  );
  return rows[0]?.next ?? null;
}
