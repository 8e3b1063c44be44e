import type { EventType, StoredEvent } from '../domain/events.js';
import { EVENT_COLUMNS, eventFromRow, type EventRow } from './codec.js';
import type { LedgerDeps } from './commands.js';
import { query } from './db.js';

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

/** One page of the ledger in position order, strictly after `afterPosition`. */
export async function listEvents(
  deps: LedgerDeps,
  f: EventFilter,
  pageSize: number,
  afterPosition: bigint,
): Promise<{ events: StoredEvent[]; more: boolean }> {
  // Plain comparisons and ORDER BY position in either direction, so the position index
  // serves both (an expression there would sort every matching row on each page).
  const [cursor, order] = f.newestFirst
    ? ['($1::bigint = 0 OR position < $1)', 'DESC']
    : ['position > $1', 'ASC'];
  const rows = await query<EventRow>(
    deps.db,
    `SELECT ${EVENT_COLUMNS} FROM ledger_events
      WHERE ${cursor}
        AND ($2::text IS NULL OR subject = $2)
        AND ($3::text IS NULL OR metric = $3)
        AND (cardinality($4::text[]) = 0 OR type = ANY($4))
        AND ($5::text IS NULL OR actor = $5)
        AND ($6::timestamptz IS NULL OR recorded_at >= $6)
        AND ($7::timestamptz IS NULL OR recorded_at < $7)
      ORDER BY position ${order} LIMIT $8`,
    [afterPosition, f.subject, f.metric, f.types, f.actor, f.start, f.end, pageSize + 1],
  );
  return { events: rows.slice(0, pageSize).map(eventFromRow), more: rows.length > pageSize };
}
