import type { EventType, StoredEvent } from '../domain/events.js';
import { EVENT_COLUMNS, eventFromRow, type EventRow } from './codec.js';
import type { LedgerDeps } from './commands.js';
import { query, type Db } from './db.js';

export interface EventFilter {
  /** Newest first: pages go back in time from `after` (a position, or 0 for the newest). */
  newestFirst: boolean;
  subject: string | null;
  metric: string | null;
  types: EventType[];
  actor: string | null;
  start: Date | null;
  end: Date | null;
}

/**
 * Where a follower stands in the feed: the writing transaction's id and the position of the
 * last event it was handed. The feed's order is (xid, position), not position alone.
 */
export interface FeedCursor {
  xid: bigint;
  position: bigint;
}

export const FEED_START: FeedCursor = { xid: 0n, position: 0n };

/**
 * Only events whose transaction is older than every transaction still in progress are handed
 * out. A position is taken at insert, so an event of a transaction still running can hold a
 * lower position than one already committed; its xid, though, is at least the snapshot's xmin,
 * and everything handed out so far is below that xmin. So nothing can commit behind a cursor:
 * a long transaction delays followers (bounded by the statement and idle-in-transaction
 * timeouts, see db.ts) and never makes them skip an event. Rows from before the xid column
 * have xid 0 and come first.
 */
const SETTLED = 'xid < pg_snapshot_xmin(pg_current_snapshot())';

const FILTERS = `($2::text IS NULL OR subject = $2)
        AND ($3::text IS NULL OR metric = $3)
        AND (cardinality($4::text[]) = 0 OR type = ANY($4))
        AND ($5::text IS NULL OR actor = $5)
        AND ($6::timestamptz IS NULL OR recorded_at >= $6)
        AND ($7::timestamptz IS NULL OR recorded_at < $7)`;

type FeedRow = EventRow & { xid: string };

/** How long a read waits for the transactions in progress when it starts (see settle). */
export const SETTLE_WAIT_MS = 2_000;

/**
 * Waits (at most `maxMs`) until every transaction that was in progress when it was called has
 * ended, so that a read after it includes every event committed before the call: whoever
 * lists right after writing sees what they wrote even while other transactions run. With
 * nothing in progress (xmin = xmax) it costs one query; under load a few milliseconds; when a
 * transaction stays open longer, the read goes ahead without the events held back behind it.
 */
export async function settle(db: Db, maxMs = SETTLE_WAIT_MS): Promise<void> {
  const [now] = await query<{ xmax: string; settled: boolean }>(
    db,
    `SELECT pg_snapshot_xmax(s)::text AS xmax, pg_snapshot_xmin(s) = pg_snapshot_xmax(s) AS settled
       FROM pg_current_snapshot() s`,
  );
  if (!now || now.settled) return;
  const deadline = Date.now() + maxMs;
  let pause = 1;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 50);
    const [r] = await query<{ ok: boolean }>(
      db,
      'SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8 AS ok',
      [now.xmax],
    );
    if (r?.ok) return;
  }
}

/**
 * One page of the feed, strictly after `after` in (xid, position) order: what a follower
 * pages through. `last` is the cursor to continue from (that of the last event returned).
 */
export async function followEvents(
  db: Db,
  f: EventFilter,
  pageSize: number,
  after: FeedCursor,
  settleMs = SETTLE_WAIT_MS,
): Promise<{ events: StoredEvent[]; more: boolean; last: FeedCursor | null }> {
  if (settleMs > 0) await settle(db, settleMs);
  // A row comparison, so the (xid, position) index serves cursor and order in one range scan.
  const rows = await query<FeedRow>(
    db,
    `SELECT ${EVENT_COLUMNS}, xid::text AS xid FROM ledger_events
      WHERE (xid, position) > ($1::text::xid8, $9::bigint) AND ${SETTLED}
        AND ${FILTERS}
      ORDER BY xid, position LIMIT $8`,
    [
      after.xid.toString(),
      f.subject,
      f.metric,
      f.types,
      f.actor,
      f.start,
      f.end,
      pageSize + 1,
      after.position,
    ],
  );
  const page = rows.slice(0, pageSize);
  const tail = page.at(-1);
  return {
    events: page.map(eventFromRow),
    more: rows.length > pageSize,
    last: tail ? { xid: BigInt(tail.xid), position: tail.position } : null,
  };
}

/** Where the feed ends now: the cursor of the last event handed out so far. */
export async function feedEnd(db: Db): Promise<FeedCursor> {
  const rows = await query<{ xid: string; position: bigint }>(
    db,
    `SELECT xid::text AS xid, position FROM ledger_events WHERE ${SETTLED}
      ORDER BY xid DESC, position DESC LIMIT 1`,
  );
  return rows[0] ? { xid: BigInt(rows[0].xid), position: rows[0].position } : FEED_START;
}

/** The feed cursor of the event at `position`, or null if there is none. */
export async function feedCursorAt(db: Db, position: bigint): Promise<FeedCursor | null> {
  const rows = await query<{ xid: string }>(
    db,
    'SELECT xid::text AS xid FROM ledger_events WHERE position = $1',
    [position],
  );
  return rows[0] ? { xid: BigInt(rows[0].xid), position } : null;
}

/** One page of settled events, newest position first, before `beforePosition` (0: newest). */
export async function listEventsNewestFirst(
  deps: LedgerDeps,
  f: EventFilter,
  pageSize: number,
  beforePosition: bigint,
): Promise<{ events: StoredEvent[]; more: boolean }> {
  // ORDER BY position with a plain comparison, so the position index serves it. Only settled
  // events, so that following from the newest one shown misses nothing still in flight.
  await settle(deps.db);
  const rows = await query<EventRow>(
    deps,
    `SELECT ${EVENT_COLUMNS} FROM ledger_events
      WHERE ($1::bigint = 0 OR position < $1) AND ${SETTLED}
        AND ${FILTERS}
      ORDER BY position DESC LIMIT $8`,
    [beforePosition, f.subject, f.metric, f.types, f.actor, f.start, f.end, pageSize + 1],
  );
  return { events: rows.slice(0, pageSize).map(eventFromRow), more: rows.length > pageSize };
}

/**
 * What a follower is waiting for: committed events not yet handed out because an older
 * transaction is still in progress, and how long the oldest of them has waited (seconds).
 */
export async function feedHeldBack(db: Db): Promise<{ events: number; seconds: number }> {
  const rows = await query<{ n: number; age: number | null }>(
    db,
    `SELECT count(*)::int AS n, extract(epoch FROM now() - min(recorded_at))::float8 AS age
       FROM ledger_events WHERE xid >= pg_snapshot_xmin(pg_current_snapshot())`,
  );
  return { events: rows[0]!.n, seconds: Math.max(0, rows[0]!.age ?? 0) };
}
