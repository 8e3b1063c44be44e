// npm run bench:sweep — roll N due counters (default 1,000,000) with the real sweep, beside a
// plain INSERT ... SELECT of the same number of reset rows into a copy of the ledger table.
import { writeFile, mkdir } from 'node:fs/promises';
import { createPool } from '../src/ledger/db.js';
import { sweep } from '../src/ledger/reset-sweep.js';
import { benchDatabase } from './db.js';

const N = Number(process.env.BENCH_COUNTERS ?? 1_000_000);
const BATCH = Number(process.env.BENCH_BATCH ?? 5_000);
const now = new Date('2026-06-15T12:00:00Z');

const secs = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

async function main(): Promise<void> {
  const bench = await benchDatabase();
  const db = createPool({ connectionString: bench.url, max: 4, statementTimeoutMs: 600_000 });
  try {
    console.log(`preparing ${N.toLocaleString()} due counters (${bench.server} PostgreSQL)...`);
    await db.query(
      `INSERT INTO quotas VALUES ('*', 'api_calls', 'DAY', 1000, 'Europe/Berlin', 0, $1)`,
      [now],
    );
    // Counters with no event behind them (sequence 0), so the sweep's roll is each subject's
    // first event and the hash chain starts there.
    await db.query(
      `INSERT INTO subjects (subject, last_sequence)
                    SELECT 'org-' || lpad(i::text, 8, '0'), 0 FROM generate_series(1, $1) i`,
      [N],
    );
    await db.query(
      `INSERT INTO counters (subject, metric, period, used, period_start, period_end, last_reset_at, last_sequence)
       SELECT 'org-' || lpad(i::text, 8, '0'), 'api_calls', 'DAY', i % 1000,
              '2026-06-10T22:00:00Z', '2026-06-11T22:00:00Z', NULL, 0
         FROM generate_series(1, $1) i`,
      [N],
    );
    await db.query('VACUUM ANALYZE subjects');
    await db.query('VACUUM ANALYZE counters');

    // Baseline: the same number of reset rows, written by one INSERT ... SELECT into a table
    // shaped like the ledger (same columns and indexes, no trigger), no counter updates.
    await db.query(
      'CREATE TABLE baseline_events (LIKE ledger_events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)',
    );
    // No hash-chain trigger on the copy, so no hash either.
    await db.query('ALTER TABLE baseline_events ALTER COLUMN hash DROP NOT NULL');
    let t0 = process.hrtime.bigint();
    await db.query(
      `INSERT INTO baseline_events (subject, sequence, type, metric, period, period_start, period_end, actor, reason, data, recorded_at)
       SELECT subject, last_sequence + 1, 'RESET_SCHEDULED', metric, period, '2026-06-14T22:00:00Z', '2026-06-15T22:00:00Z',
              'scheduler', 'period ended', jsonb_build_object('usedBefore', used::text), $1
         FROM counters`,
      [now],
    );
    const baseline = secs(t0);

    t0 = process.hrtime.bigint();
    const { rolled } = await sweep(db, {
      now,
      batchSize: BATCH,
      runId: '00000000-0000-4000-8000-000000000001',
    });
    const sweepSecs = secs(t0);

    const check = await db.query(`SELECT
        (SELECT count(*) FROM ledger_events WHERE type = 'RESET_SCHEDULED')::bigint AS events,
        (SELECT count(*) FROM counters WHERE period_start = '2026-06-14T22:00:00Z' AND used = 0)::bigint AS counters`);
    const result = {
      counters: N,
      batchSize: BATCH,
      server: bench.server,
      sweep: { seconds: +sweepSecs.toFixed(2), perSecond: Math.round(rolled / sweepSecs), rolled },
      baselineInsertSelect: { seconds: +baseline.toFixed(2), perSecond: Math.round(N / baseline) },
      ratio: +(baseline / sweepSecs).toFixed(3),
      verified:
        String(check.rows[0].events) === String(N) && String(check.rows[0].counters) === String(N),
    };
    console.table({
      sweep: { seconds: result.sweep.seconds, 'counters/s': result.sweep.perSecond },
      'INSERT ... SELECT': {
        seconds: result.baselineInsertSelect.seconds,
        'counters/s': result.baselineInsertSelect.perSecond,
      },
    });
    console.log(JSON.stringify(result));
    await mkdir('bench-results', { recursive: true });
    await writeFile(`bench-results/sweep-${Date.now()}.json`, JSON.stringify(result, null, 2));
    if (!result.verified) throw new Error(`verification failed: ${JSON.stringify(check.rows[0])}`);
  } finally {
    await db.end();
    await bench.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
