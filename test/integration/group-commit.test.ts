import fc from 'fast-check';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QuotaError } from '../../src/domain/errors.js';
import { INT64_MAX } from '../../src/domain/counter.js';
import type { ConsumeCommand, LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { ConsumeGroupCommitter } from '../../src/batching/group-commit.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import {
  consumeCommand as cmd,
  createTestDatabase,
  defineQuota,
  TestClock,
  type TestDatabase,
  expectProjectionClean,
} from '../support/db.js';

// The batched path must be indistinguishable from running each call in its own transaction:
// same answers, same ledger, same counters. And a transaction that fails takes down exactly
// its own calls.

let single: TestDatabase;
let batched: TestDatabase;
let singleDeps: LedgerDeps;
let batchedDeps: LedgerDeps;
const clock = new TestClock(new Date('2026-03-10T12:00:00Z'));

beforeAll(async () => {
  [single, batched] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  singleDeps = { db: single.db, clock };
  batchedDeps = { db: batched.db, clock };
});
afterAll(() => Promise.all([single.drop(), batched.drop()]));
// Whatever a test wrote, its projection must equal the fold of its ledger.
afterEach(async () => {
  await expectProjectionClean(single.db);
  await expectProjectionClean(batched.db);
});

type Outcome = { ok: true; value: unknown } | { ok: false; code: string; message: string };

const outcome = async (p: Promise<unknown>): Promise<Outcome> => {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    if (!(err instanceof QuotaError)) throw err;
    return { ok: false, code: err.code, message: err.message };
  }
};

async function ledgerOf(db: pg.Pool, prefix: string): Promise<unknown[]> {
  const events = await db.query(
    `SELECT subject, sequence, type, metric, amount, period, period_start, period_end, actor,
            reason, idempotency_key, attributes, data, recorded_at
       FROM ledger_events WHERE subject LIKE $1 ORDER BY subject, sequence`,
    [`${prefix}%`],
  );
  const counters = await db.query(
    `SELECT * FROM counters WHERE subject LIKE $1 ORDER BY subject, metric, period`,
    [`${prefix}%`],
  );
  const subjects = await db.query(`SELECT * FROM subjects WHERE subject LIKE $1 ORDER BY subject`, [
    `${prefix}%`,
  ]);
  return [events.rows, counters.rows, subjects.rows];
}

const step = fc.record({
  who: fc.integer({ min: 0, max: 3 }),
  metric: fc.constantFrom('api_calls', 'tokens', 'unset'),
  amount: fc.constantFrom(1n, 2n, 3n, 7n, INT64_MAX),
  mode: fc.constantFrom('ENFORCE', 'ENFORCE', 'RECORD', 'DRY_RUN'),
  key: fc.option(fc.integer({ min: 0, max: 3 }), { nil: null }),
});

/** Another session locks the subject's row, as a long transaction elsewhere would. */
async function lockSubject(subject: string) {
  const blocker = new pg.Client({ connectionString: batched.url });
  await blocker.connect();
  await blocker.query('BEGIN');
  await blocker.query(`SELECT 1 FROM subjects WHERE subject = $1 FOR UPDATE`, [subject]);
  return {
    blocker,
    /** The backend that waits on the lock, once one does. */
    async waiter(): Promise<number> {
      for (let i = 0; i < 200; i++) {
        const r = await blocker.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
        );
        if (r.rows[0]) return r.rows[0].pid;
        await new Promise((ok) => setTimeout(ok, 25));
      }
      throw new Error('no flush waited on the lock');
    },
    async release() {
      await blocker.query('ROLLBACK');
      await blocker.end();
    },
  };
}

describe('group commit', () => {
  let run = 0;

  it('gives the same answers, ledger and counters as one transaction per call', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 12 }),
        fc.constantFrom(1, 2, 5, 64),
        async (steps, maxFlushes, maxBatch, minParallel) => {
          const prefix = `eq${run++}-`;
          const subject = (who: number) => `${prefix}${who}`;
          clock.set('2026-03-10T12:00:00Z');
          // The same quotas and an earlier day's usage in both, so the run starts with rolls due.
          for (const deps of [singleDeps, batchedDeps]) {
            await defineQuota(deps, { subject: subject(0), period: 'DAY', limit: 6n });
            await defineQuota(deps, { subject: subject(1), period: 'MONTH', limit: 9n });
            await defineQuota(deps, { subject: subject(1), period: 'DAY', limit: 4n });
            await defineQuota(deps, { subject: subject(2), period: 'NEVER', limit: 12n });
            await defineQuota(deps, {
              subject: subject(3),
              metric: 'tokens',
              period: 'WEEK',
              limit: 20n,
              timeZone: 'Pacific/Auckland',
            });
            await defineQuota(deps, {
              subject: subject(2),
              metric: 'tokens',
              period: 'DAY',
              limit: 5n,
            });
            for (const who of [0, 1])
              await consume(deps, cmd(subject(who), { amount: 2n }), 'seed');
          }
          clock.advance(26 * 3600_000);

          const commands = steps.map((s) =>
            cmd(subject(s.who), {
              metric: s.metric,
              amount: s.amount,
              mode: s.mode as ConsumeCommand['mode'],
              idempotencyKey: s.key === null ? null : `k${s.key}`,
              attributes: s.key === 1 ? { via: 'test' } : {},
            }),
          );

          const one: Outcome[] = [];
          for (const c of commands) one.push(await outcome(consume(singleDeps, c, 'caller')));

          const sizes: number[] = [];
          let failedFlushes = 0;
          const committer = new ConsumeGroupCommitter(
            batchedDeps,
            { maxFlushes, maxBatch, minParallel },
            {
              flushed: (size, _s, ok) => {
                sizes.push(size);
                if (!ok) failedFlushes++;
              },
            },
          );
          const many = await Promise.all(
            commands.map((c) => outcome(committer.submit(c, 'caller'))),
          );

          expect(many).toEqual(one);
          expect(await ledgerOf(batched.db, prefix)).toEqual(await ledgerOf(single.db, prefix));
          // Straight through, not rescued by answering calls one by one after a failure.
          expect(failedFlushes).toBe(0);
          // Not a vacuous comparison: calls really did share transactions.
          if (commands.length > maxFlushes && maxBatch > 1) {
            expect(Math.max(...sizes)).toBeGreaterThan(1);
          }
        },
      ),
      {
        numRuns: 25,
        examples: [
          // A call that fails after its roll was planned (the MONTH counter would overflow
          // once the DAY counter has rolled): the next call must roll, as it would alone.
          [
            [
              { who: 1, metric: 'api_calls', amount: INT64_MAX, mode: 'RECORD', key: null },
              { who: 1, metric: 'api_calls', amount: 1n, mode: 'ENFORCE', key: null },
            ],
            1,
            12,
            64,
          ],
        ],
      },
    );
    expect((await verifyProjection(batched.db)).differences).toEqual([]);
  }, 120_000);

  it('coalesces a hot subject into few transactions and never overspends', async () => {
    const s = 'hot';
    await defineQuota(batchedDeps, { subject: s, period: 'DAY', limit: 300n });
    const sizes: number[] = [];
    const committer = new ConsumeGroupCommitter(
      batchedDeps,
      { maxFlushes: 4, maxBatch: 500 },
      { flushed: (size) => sizes.push(size) },
    );
    const answers = await Promise.all(
      Array.from({ length: 1000 }, () => committer.submit(cmd(s), 'racer')),
    );
    expect(answers.filter((a) => a.allowed)).toHaveLength(300);
    const seqs = answers.filter((a) => a.allowed).map((a) => a.sequence);
    expect(new Set(seqs).size).toBe(300);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(sizes.length).toBeLessThanOrEqual(2);
    const used = await batched.db.query(`SELECT used FROM counters WHERE subject = $1`, [s]);
    expect(used.rows).toEqual([{ used: 300n }]);
  });

  it('stays exact when two replicas write the same subjects at once (optimistic writes that lose retry under locks)', async () => {
    const subjects = ['replica-a', 'replica-b'];
    for (const s of subjects)
      await defineQuota(batchedDeps, { subject: s, period: 'DAY', limit: 150n });
    // Two committers over one database behave like two service processes: neither knows what
    // the other has in flight, so their reads and writes of a subject interleave.
    const one = new ConsumeGroupCommitter(batchedDeps, {
      maxFlushes: 3,
      maxBatch: 7,
      minParallel: 1,
    });
    const two = new ConsumeGroupCommitter(batchedDeps, {
      maxFlushes: 3,
      maxBatch: 5,
      minParallel: 1,
    });
    const answers = await Promise.all(
      Array.from({ length: 400 }, (_, i) =>
        (i % 2 ? one : two).submit(cmd(subjects[Math.floor(i / 2) % 2]!), 'replica'),
      ),
    );
    const allowed = answers.filter((a) => a.allowed);
    expect(allowed).toHaveLength(300);
    const r = await batched.db.query<{ subject: string; n: number; max: string; used: string }>(
      `SELECT e.subject, count(*)::int AS n, max(e.sequence)::text AS max,
              (SELECT used::text FROM counters c WHERE c.subject = e.subject) AS used
         FROM ledger_events e WHERE e.subject = ANY($1) AND e.type = 'USAGE'
        GROUP BY e.subject ORDER BY e.subject`,
      [subjects],
    );
    // 150 usages each after the QUOTA_SET at sequence 1: gapless, and the counter agrees.
    expect(r.rows).toEqual([
      { subject: 'replica-a', n: 150, max: '151', used: '150' },
      { subject: 'replica-b', n: 150, max: '151', used: '150' },
    ]);
    expect((await verifyProjection(batched.db)).differences).toEqual([]);
  });

  it('sends the few calls that arrive while a transaction runs in the next one, not beside it', async () => {
    const subjects = ['slow', ...Array.from({ length: 6 }, (_, i) => `next-${i}`)];
    for (const s of subjects)
      await defineQuota(batchedDeps, { subject: s, period: 'DAY', limit: 9n });
    const lock = await lockSubject('slow');
    const sizes: number[] = [];
    const committer = new ConsumeGroupCommitter(
      batchedDeps,
      { maxFlushes: 4, maxBatch: 500, minParallel: 64, maxWaitMs: 60_000 },
      { flushed: (size) => sizes.push(size) },
    );
    const first = [cmd('slow'), cmd('next-0')].map((c) => committer.submit(c, 'caller'));
    await lock.waiter();
    const later = subjects.slice(2).map((s) => committer.submit(cmd(s), 'caller'));
    // Far longer than a transaction of five takes here: they are waiting, not running.
    await new Promise((ok) => setTimeout(ok, 300));
    expect(sizes).toEqual([]);
    await lock.release();
    const answers = await Promise.all([...first, ...later]);
    expect(answers.every((a) => a.allowed)).toBe(true);
    expect(sizes).toEqual([2, 5]);
  });

  it('spreads a long queue over transactions in parallel, each of at least minParallel calls', async () => {
    const subjects = Array.from({ length: 12 }, (_, i) => `wide-${i}`);
    for (const s of subjects)
      await defineQuota(batchedDeps, { subject: s, period: 'DAY', limit: 9n });
    const sizes: number[] = [];
    const committer = new ConsumeGroupCommitter(
      batchedDeps,
      { maxFlushes: 3, maxBatch: 500, minParallel: 4, maxWaitMs: 60_000 },
      { flushed: (size) => sizes.push(size) },
    );
    await Promise.all(subjects.map((s) => committer.submit(cmd(s), 'caller')));
    expect(sizes).toEqual([4, 4, 4]);
    sizes.length = 0;
    await Promise.all(subjects.slice(0, 9).map((s) => committer.submit(cmd(s), 'caller')));
    expect(sizes.sort()).toEqual([4, 5]);
  });

  it('answers only the call that breaks a statement with its error; the others commit', async () => {
    await defineQuota(batchedDeps, { subject: 'poison-a', period: 'DAY', limit: 10n });
    const committer = new ConsumeGroupCommitter(batchedDeps, { maxFlushes: 1, maxBatch: 10 });
    // Handlers refuse NUL; the committer must still survive a call that slipped past them.
    const calls = [
      committer.submit(cmd('poison-a'), 'x'),
      committer.submit(cmd('poison-a', { attributes: { bad: 'a\u0000b' } }), 'x'),
      committer.submit(cmd('poison-a'), 'x'),
    ];
    const settled = await Promise.allSettled(calls);
    expect(settled.map((x) => x.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const n = await batched.db.query(
      `SELECT count(*)::int AS n FROM ledger_events WHERE subject = 'poison-a' AND type = 'USAGE'`,
    );
    expect(n.rows[0].n).toBe(2);
  });

  it('fails exactly the calls of a transaction the database drops, with UNAVAILABLE, and commits none', async () => {
    for (const s of ['stuck-1', 'stuck-2', 'free']) {
      await defineQuota(batchedDeps, { subject: s, period: 'DAY', limit: 100n });
    }
    await consume(batchedDeps, cmd('stuck-1'), 'seed');
    const flushes: { size: number; ok: boolean }[] = [];
    const committer = new ConsumeGroupCommitter(
      batchedDeps,
      { maxFlushes: 2, maxBatch: 100, maxWaitMs: 50 },
      { flushed: (size, _s, ok) => flushes.push({ size, ok }) },
    );

    // Another session holds stuck-1, so the flush that carries it waits on the lock.
    const lock = await lockSubject('stuck-1');

    // Interleaved, so all five ride one transaction (both subjects are in it from the start).
    const doomed = [
      cmd('stuck-1', { idempotencyKey: 'd0' }),
      cmd('stuck-2'),
      cmd('stuck-1', { idempotencyKey: 'd1' }),
      cmd('stuck-2'),
      cmd('stuck-1', { idempotencyKey: 'd2' }),
    ].map((c) => outcome(committer.submit(c, 'caller')));
    const pid = await lock.waiter();

    // A flush of other subjects goes ahead meanwhile (after maxWaitMs) and commits.
    const others = await Promise.all([
      committer.submit(cmd('free'), 'caller'),
      committer.submit(cmd('free'), 'caller'),
    ]);
    expect(others.map((o) => o.allowed)).toEqual([true, true]);

    await lock.blocker.query('SELECT pg_terminate_backend($1)', [pid]);
    const failed = await Promise.all(doomed);
    await lock.release();

    expect(failed.map((f) => (f.ok ? 'ok' : f.code))).toEqual(Array(5).fill('UNAVAILABLE'));
    expect(flushes).toEqual([
      { size: 2, ok: true },
      { size: 5, ok: false },
    ]);
    const counts = await batched.db.query<{ subject: string; n: number }>(
      `SELECT subject, count(*)::int AS n FROM ledger_events
        WHERE subject IN ('stuck-1', 'stuck-2', 'free') AND type = 'USAGE'
        GROUP BY subject ORDER BY subject`,
    );
    expect(counts.rows).toEqual([
      { subject: 'free', n: 2 },
      { subject: 'stuck-1', n: 1 },
    ]);
    // The pool replaced the dropped connection: the same calls go through on retry.
    const retried = await committer.submit(cmd('stuck-1', { idempotencyKey: 'd0' }), 'caller');
    // Sequence 1 is the QUOTA_SET, 2 the seed: the failed calls left no gap.
    expect(retried).toMatchObject({ allowed: true, replayed: false, sequence: 3n });
  });
});
