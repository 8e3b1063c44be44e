// `npm run bench:lone`: a lone Consume beside a plain durable INSERT, in one process, each call
// finding the database idle (the `consume@low` case of `npm run bench`, without gRPC). It
// alternates a Consume through the service's group committer and an INSERT of a small row
// through the same pool, BENCH_GAP_MS (20) apart, BENCH_CALLS (300) of each after a warm-up,
// and prints medians and 90th percentiles: of the whole Consume, of its append statement's
// round trip, of the Node work before the statement is sent and after its answer, and of the
// INSERT. BENCH_APPLY=file.sql runs that SQL in the throwaway database after the quotas are
// seeded (to time a variant of quota_append_versioned; docs/benchmarks.md, ninth round).
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConsumeGroupCommitter, DEFAULT_GROUP_COMMIT } from '../src/batching/group-commit.js';
import { systemClock } from '../src/domain/clock.js';
import { createPool, type Db } from '../src/ledger/db.js';
import { SubjectCache } from '../src/ledger/subject-cache.js';
import { seedQuotas } from './checks.js';
import { benchDatabase } from './db.js';
import { quantile } from './load.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 300);
const GAP = Number(process.env.BENCH_GAP_MS ?? 20);
const SUBJECTS = 200;

const ms = (from: bigint, to: bigint): number => Number(to - from) / 1e6;

/** Wraps the pool's query so the append statement's start and end are seen. */
function watchAppend(db: Db): { sent: bigint; answered: bigint } {
  const seen = { sent: 0n, answered: 0n };
  const query = db.query.bind(db) as (...a: unknown[]) => Promise<unknown>;
  (db as unknown as { query: typeof query }).query = async (...a: unknown[]) => {
    const t0 = process.hrtime.bigint();
    const result = await query(...a);
    if (String(a[0]).startsWith('SELECT quota_append')) {
      seen.sent = t0;
      seen.answered = process.hrtime.bigint();
    }
    return result;
  };
  return seen;
}

async function main() {
  const database = await benchDatabase();
  const db = createPool({ connectionString: database.url, max: 4 });
  try {
    await db.query(
      'CREATE TABLE lone_insert (id bigserial PRIMARY KEY, subject text NOT NULL, data jsonb NOT NULL)',
    );
    await seedQuotas(db);
    if (process.env.BENCH_APPLY) await db.query(await readFile(process.env.BENCH_APPLY, 'utf8'));
    const committer = new ConsumeGroupCommitter(
      { db, clock: systemClock, cache: new SubjectCache(10_000) },
      DEFAULT_GROUP_COMMIT,
    );
    const consume = (i: number) =>
      committer.submit(
        {
          subject: `tenant-${i % SUBJECTS}`,
          metric: 'requests',
          amount: 1n,
          idempotencyKey: null,
          mode: 'ENFORCE',
          attributes: {},
        },
        'bench',
      );
    const insert = (i: number) =>
      db.query('INSERT INTO lone_insert (subject, data) VALUES ($1, $2)', [
        `tenant-${i % SUBJECTS}`,
        '{"amount":"1"}',
      ]);
    // Warm-up: every subject's state kept, the code compiled, the plans cached; then lone
    // calls until V8 has optimised the single-call path too.
    for (let i = 0; i < 2_000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, k) => consume(i + k)));
      await Promise.all(Array.from({ length: 50 }, (_, k) => insert(i + k)));
    }
    for (let i = 0; i < 2_000; i++) await Promise.all([consume(i), insert(i)]);

    const seen = watchAppend(db);
    const t = { consume: [], append: [], before: [], after: [], insert: [] } as Record<
      string,
      number[]
    >;
    for (let i = 0; i < CALLS; i++) {
      await sleep(GAP);
      const t0 = process.hrtime.bigint();
      await consume(i);
      const t1 = process.hrtime.bigint();
      t.consume!.push(ms(t0, t1));
      t.append!.push(ms(seen.sent, seen.answered));
      t.before!.push(ms(t0, seen.sent));
      t.after!.push(ms(seen.answered, t1));
      await sleep(GAP);
      const t2 = process.hrtime.bigint();
      await insert(i);
      t.insert!.push(ms(t2, process.hrtime.bigint()));
    }
    const labels: Record<string, string> = {
      consume: 'Consume',
      append: '  its append statement',
      before: '  Node before it',
      after: '  Node after it',
      insert: 'plain INSERT',
    };
    for (const [k, xs] of Object.entries(t)) {
      const p50 = quantile(xs, 0.5).toFixed(2);
      const p90 = quantile(xs, 0.9).toFixed(2);
      console.log(`${labels[k]!.padEnd(24)} p50 ${p50} ms  p90 ${p90} ms`);
    }
    const gap = quantile(t.consume!, 0.5) - quantile(t.insert!, 0.5);
    console.log(`Consume over INSERT (p50): ${gap.toFixed(2)} ms`);
  } finally {
    await db.end();
    await database.cleanup();
  }
}

await main();
