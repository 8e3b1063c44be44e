import { counterKey, type CounterState, type QuotaDef } from '../domain/quota.js';
import { DEFAULT_SUBJECT } from '../domain/validate.js';
import {
  COUNTER_COLUMNS,
  counterFromRow,
  QUOTA_COLUMNS,
  quotaFromRow,
  type CounterRow,
  type QuotaRow,
} from './codec.js';
import type { Db, Tx } from './db.js';

/** Anything that runs a query: the pool for plain reads, a client inside a transaction. */
type Queryable = Pick<Db | Tx, 'query'>;

/** The quota definitions for a subject and the defaults ("*"), optionally of one metric. */
export async function loadDefinitions(
  q: Queryable,
  subject: string,
  metric: string | null,
): Promise<QuotaDef[]> {
  const rows = await q.query<QuotaRow>(
    `SELECT ${QUOTA_COLUMNS} FROM quotas WHERE subject = ANY($1) AND ($2::text IS NULL OR metric = $2)`,
    [[subject, DEFAULT_SUBJECT], metric],
  );
  return rows.rows.map(quotaFromRow);
}

/** A subject's counters, keyed by counterKey(metric, period). */
export async function loadCounters(
  q: Queryable,
  subject: string,
  metric: string | null,
): Promise<Map<string, CounterState>> {
  const rows = await q.query<CounterRow>(
    `SELECT ${COUNTER_COLUMNS} FROM counters WHERE subject = $1 AND ($2::text IS NULL OR metric = $2)`,
    [subject, metric],
  );
  return new Map(rows.rows.map((r) => [counterKey(r.metric, r.period), counterFromRow(r)]));
}
