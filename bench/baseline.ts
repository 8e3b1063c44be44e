// The raw-SQL baseline of `npm run bench`: what PostgreSQL does with node-postgres and no
// service in between. One durable statement per event: the limit check, the per-subject
// sequence, the counter update and the append, in the same shape as the service's tables.
import pg from 'pg';

export async function createBaselineTables(url: string, subjects: string[], limit: bigint) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await c.query(`
    CREATE TABLE baseline_counters (
      subject text PRIMARY KEY, used bigint NOT NULL, quota_limit bigint NOT NULL,
      last_sequence bigint NOT NULL DEFAULT 0);
    CREATE TABLE baseline_events (
      position bigint GENERATED ALWAYS AS IDENTITY, subject text NOT NULL, sequence bigint NOT NULL,
      amount bigint NOT NULL, data jsonb NOT NULL, recorded_at timestamptz NOT NULL,
      PRIMARY KEY (subject, sequence));
    CREATE INDEX baseline_events_position ON baseline_events (position);`);
  await c.query(
    `INSERT INTO baseline_counters (subject, used, quota_limit) SELECT unnest($1::text[]), 0, $2`,
    [subjects, limit],
  );
  await c.end();
}

// The counter row is the lock, as in the service; an over-limit call appends nothing.
export const BASELINE_SQL = `
  WITH charged AS (
    UPDATE baseline_counters SET used = used + $2, last_sequence = last_sequence + 1
     WHERE subject = $1 AND used + $2 <= quota_limit
     RETURNING subject, used, last_sequence)
  INSERT INTO baseline_events (subject, sequence, amount, data, recorded_at)
  SELECT subject, last_sequence, $2, jsonb_build_object('used', used), now() FROM charged
  RETURNING sequence`;

export function baselinePool(url: string, clients: number): pg.Pool {
  // Idle connections stay open: closed after pg-pool's default 10 s, all 64 went at once in
  // the middle of the next phase (the service's first), stalling every call of it for about
  // 0.7 s (seventh round).
  return new pg.Pool({
    connectionString: url,
    max: clients,
    application_name: 'bench-baseline',
    idleTimeoutMillis: 0,
  });
}

/** One event; resolves to 1 whether or not it fit (both are answers). */
export async function baselineConsume(pool: pg.Pool, subject: string): Promise<number> {
  await pool.query({ name: 'baseline', text: BASELINE_SQL, values: [subject, 1] });
  return 1;
}

/** Overspend and projection checks for the baseline tables; returns problems found. */
export async function checkBaseline(url: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const r = await c.query<{ over: number; mismatched: number }>(`
    SELECT (SELECT count(*)::int FROM baseline_counters WHERE used > quota_limit) AS over,
           (SELECT count(*)::int FROM baseline_counters bc
              LEFT JOIN (SELECT subject, sum(amount) AS s FROM baseline_events GROUP BY subject) e
                USING (subject)
             WHERE bc.used <> coalesce(e.s, 0)) AS mismatched`);
  await c.end();
  const problems: string[] = [];
  if (r.rows[0]!.over) problems.push(`baseline: ${r.rows[0]!.over} counters over their limit`);
  if (r.rows[0]!.mismatched)
    problems.push(`baseline: ${r.rows[0]!.mismatched} counters differ from their events`);
  return problems;
}
