import { decideExpiry } from '../domain/reservation-commands.js';
import { query, storeOf, type Db, type Store } from './db.js';
import { writeSubject } from './write.js';

/**
 * Writes RESERVATION_EXPIRED for every hold whose ttl has passed by `now`, releasing it from
 * the counters still in the period it was made in. Decisions already leave such holds out
 * (lazily, by the same clock); this makes the ledger and the `reserved` column say so too.
 * One write per subject, like any other writer's: a commit or cancel that wins the race makes
 * the write redo its decision (and the unique index on settlements would refuse a second one
 * anyway). Returns how many it expired.
 */
export async function expireReservations(
  store: Db | Store,
  now: Date,
  o: { batchSize?: number; shouldStop?: () => boolean } = {},
): Promise<number> {
  const batchSize = o.batchSize ?? 500;
  const deps = storeOf(store);
  let expired = 0;
  for (;;) {
    const due = await query<{ subject: string }>(
      deps,
      `SELECT DISTINCT subject FROM (
         SELECT subject FROM reservations WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
       ) d`,
      [now, batchSize],
    );
    let n = 0;
    for (const { subject } of due) {
      if (o.shouldStop?.()) return expired;
      n += await expireSubject(deps, subject, now);
    }
    expired += n;
    // Nothing expired although some were due: they are being settled right now; next run.
    if (due.length === 0 || n === 0) return expired;
  }
}

function expireSubject(deps: Store, subject: string, now: Date): Promise<number> {
  // The sweep's own clock: a hold expires when `now` says, whatever time it is.
  const ledger = { ...deps, clock: { now: () => now } };
  return writeSubject(ledger, subject, null, (state) => decideExpiry(state, now));
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
