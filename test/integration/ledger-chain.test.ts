import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { ConsumeGroupCommitter } from '../../src/batching/group-commit.js';
import type { ConsumeResult } from '../../src/ledger/consume.js';
import {
  verifyLedger,
  verifyLedgerSteps,
  writeCheckpoint,
  type ChainBreak,
  type VerifyProgress,
} from '../../src/ledger/ledger-chain.js';
import { resetSubject } from '../../src/ledger/reset.js';
import { Metrics } from '../../src/metrics.js';
import { ResetScheduler } from '../../src/scheduler/reset-scheduler.js';
import pino from 'pino';
import { sweep } from '../../src/ledger/reset-sweep.js';
import {
  consumeCommand as cmd,
  createTestDatabase,
  defineQuota,
  TestClock,
  type TestDatabase,
} from '../support/db.js';

// Every way of appending chains its events, several of one subject in one statement included;
// and every kind of tampering by the table's owner is reported at the event it touched.

let t: TestDatabase;
let deps: LedgerDeps;
const clock = new TestClock(new Date('2026-05-04T09:00:00Z'));

beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());

/** Every call of a submitAll went through and was allowed. */
async function allAllowed(outcomes: Promise<PromiseSettledResult<ConsumeResult>[]>) {
  for (const o of await outcomes) {
    expect(o.status === 'fulfilled' && o.value.allowed).toBe(true);
  }
}

/** Writes through all three append paths, several events of a subject per statement. */
async function writeHistory(subject: string): Promise<void> {
  await defineQuota(deps, { subject, period: 'DAY', limit: 1000n });
  await defineQuota(deps, { subject, metric: 'tokens', period: 'DAY', limit: 1000n });
  // One group-commit flush: several usages of the subject in one quota_append.
  await allAllowed(
    new ConsumeGroupCommitter(deps).submitAll(
      [cmd(subject), cmd(subject, { metric: 'tokens', amount: 5n }), cmd(subject)],
      'test',
    ),
  );
  // A manual reset of both quotas appends two events in one quota_append.
  const r = await resetSubject(
    deps,
    subject,
    { subject, metric: null, period: null, reason: 'chain' },
    'test',
  );
  expect(r.eventsAppended).toBe(2);
  await allAllowed(
    new ConsumeGroupCommitter(deps).submitAll(
      [cmd(subject), cmd(subject, { metric: 'tokens' })],
      'test',
    ),
  );
}

const breaksOf = async (subject: string | null = null): Promise<ChainBreak[]> =>
  (await verifyLedger(t.db, subject)).breaks;

const positionOf = async (subject: string, sequence: bigint): Promise<bigint> =>
  (
    await t.db.query<{ position: bigint }>(
      'SELECT position FROM ledger_events WHERE subject = $1 AND sequence = $2',
      [subject, sequence],
    )
  ).rows[0]!.position;

/** Runs `sql` as the table's owner with every user trigger off, as a tamperer would. */
async function tamper(sql: string, values: unknown[]): Promise<void> {
  const c = await t.owner.connect();
  try {
    await c.query('BEGIN');
    await c.query('ALTER TABLE ledger_events DISABLE TRIGGER USER');
    await c.query(sql, values);
    await c.query('ALTER TABLE ledger_events ENABLE TRIGGER USER');
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  } finally {
    c.release();
  }
}

describe('the hash chain', () => {
  it('chains every append path, several events of a subject per statement', async () => {
    await writeHistory('clean-a');
    await writeHistory('clean-b');
    // The sweep's set-based statement: both counters of a subject roll in one INSERT.
    clock.advance(24 * 3600_000);
    const rolled = await sweep(t.db, {
      now: clock.now(),
      batchSize: 100,
      runId: '00000000-0000-4000-8000-000000000001',
    });
    expect(rolled.rolled).toBe(4);
    const v = await verifyLedger(t.db, null);
    expect(v.breaks).toEqual([]);
    expect(v.subjects).toBe(2);
    expect(v.events).toBe(2 * 11);
    const cp = await writeCheckpoint(t.db, clock.now());
    expect(cp.subjects).toBe(2n);
    expect((await verifyLedger(t.db, null)).checkpoint?.id).toBe(cp.id);
    expect(await breaksOf()).toEqual([]);
  });

  it('reports progress every N subjects, and on time within a subject, then the same result', async () => {
    const run = async (pace: { everySubjects: number; everyMs: number }) => {
      const seen: VerifyProgress[] = [];
      const steps = verifyLedgerSteps(t.db, null, pace);
      for (;;) {
        const step = await steps.next();
        if (step.done) return { seen, result: step.value };
        seen.push(step.value);
      }
    };
    const bySubject = await run({ everySubjects: 1, everyMs: Infinity });
    expect(bySubject.seen).toEqual([
      { subjects: 1, events: 11, breaks: 0, subject: 'clean-a' },
      { subjects: 2, events: 22, breaks: 0, subject: 'clean-b' },
    ]);
    expect(bySubject.result).toEqual(await verifyLedger(t.db, null));
    // A pace of 0 ms: the clock is always due, so every event and the heads' batch report.
    const byTime = await run({ everySubjects: Infinity, everyMs: 0 });
    expect(byTime.seen.map((p) => p.events)).toEqual([
      ...Array.from({ length: 22 }, (_, i) => i + 1),
      22,
    ]);
    expect(byTime.seen[11]).toEqual({ subjects: 2, events: 12, breaks: 0, subject: 'clean-b' });
    expect(byTime.result).toEqual(bySubject.result);
  });

  it('is checkpointed by every successful reset run', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    const scheduler = new ResetScheduler({
      db: t.db,
      clock,
      logger,
      metrics: new Metrics({ defaultMetrics: false }),
      cron: '0 0 * * *',
      timeZone: 'UTC',
      replicaId: 'r',
      maxAttempts: 1,
      retryBaseMs: 10,
      batchSize: 10,
    });
    const before = await t.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM ledger_checkpoints',
    );
    expect((await scheduler.run('manual')).outcome).toBe('success');
    const { rows } = await t.db.query<{ n: number; root: string }>(
      `SELECT (SELECT count(*)::int FROM ledger_checkpoints) AS n,
              (SELECT encode(root, 'hex') FROM ledger_checkpoints ORDER BY id DESC LIMIT 1) AS root`,
    );
    expect(rows[0]!.n).toBe(before.rows[0]!.n + 1);
    // The root is logged too: a copy outside the database.
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; root?: string });
    expect(logged.find((l) => l.msg === 'ledger checkpoint')?.root).toBe(rows[0]!.root);
    await scheduler.stop();
  });

  it('refuses an event whose predecessor is missing, even from the owner', async () => {
    const err = await t.owner
      .query(
        `INSERT INTO ledger_events (subject, sequence, type, actor, recorded_at)
         VALUES ('clean-a', 99, 'RESET_MANUAL', 'x', now())`,
      )
      .then(
        () => null,
        (e: Error) => e,
      );
    expect(err?.message).toMatch(/event 99 of subject clean-a has no previous event/);
    expect(await breaksOf()).toEqual([]);
  });

  it("hashes as ledger_event_canonical defines, whatever the event's columns hold", async () => {
    // The trigger computes the canonical bytes in place (migration 1700000000040); verification
    // uses ledger_event_canonical. Every optional column set and unset, text that JSON must
    // escape, nested JSON, several events of the subject in one statement.
    await t.owner.query(
      `INSERT INTO ledger_events (subject, sequence, type, metric, amount, period, period_start,
           period_end, actor, reason, idempotency_key, attributes, data, recorded_at)
       VALUES ('odd "shape"', 1, 'QUOTA_SET', 'api', NULL, 'MONTH', NULL, NULL, 'op', NULL, NULL,
               NULL, '{"quota": {"limit": "5"}}', '2026-05-04T09:00:00.123456Z'),
              ('odd "shape"', 2, 'USAGE', 'api', 7, NULL, NULL, NULL, E'tab\\there', E'quote " \\\\ é ✓',
               E'key\\n1', '{"a": "b\\u0001", "z": [1, 2.50, null, {"é": true}]}', '{}',
               '2026-05-04T09:00:01Z'),
              ('odd "shape"', 3, 'RESET_SCHEDULED', 'api', NULL, 'DAY', '2026-05-04T00:00:00Z',
               '2026-05-05T00:00:00Z', 'scheduler', 'rollover', NULL, '{}',
               '{"usedBefore": "7"}', '1900-01-01T00:00:00Z')`,
    );
    const { rows } = await t.owner.query<{ agree: boolean; n: number }>(
      `SELECT bool_and(e.hash = sha256(coalesce(p.hash, ''::bytea) || ledger_event_canonical(e))) AS agree,
              count(*)::int AS n
         FROM ledger_events e
         LEFT JOIN ledger_events p ON p.subject = e.subject AND p.sequence = e.sequence - 1
        WHERE e.subject = 'odd "shape"'`,
    );
    expect(rows[0]).toEqual({ agree: true, n: 3 });
    expect(await breaksOf('odd "shape"')).toEqual([]);
  });

  it('reports each tampering by the owner at the event it touched', async () => {
    for (const s of ['mod', 'del', 'cut', 'forge', 'swap']) await writeHistory(s);
    await writeCheckpoint(t.db, clock.now());
    expect(await breaksOf()).toEqual([]);

    await tamper(
      "UPDATE ledger_events SET amount = amount + 1 WHERE subject = 'mod' AND sequence = 4",
      [],
    );
    await tamper("DELETE FROM ledger_events WHERE subject = 'del' AND sequence = 5", []);
    await tamper("DELETE FROM ledger_events WHERE subject = 'cut' AND sequence >= 7", []);
    await tamper(
      `INSERT INTO ledger_events (subject, sequence, type, actor, recorded_at, hash)
       VALUES ('forge', 10, 'RESET_MANUAL', 'mallory', now(), sha256('x'))`,
      [],
    );
    // Two events trade places (three steps: the primary key is checked row by row).
    for (const [from, to] of [
      [3, 1000],
      [4, 3],
      [1000, 4],
    ]) {
      await tamper(
        "UPDATE ledger_events SET sequence = $2 WHERE subject = 'swap' AND sequence = $1",
        [from, to],
      );
    }

    const breaks = await breaksOf();
    const brief = breaks.map((b) => [b.kind, b.subject, b.sequence, b.position]);
    expect(brief).toEqual([
      ['SEQUENCE_GAP', 'del', 5n, null],
      ['HASH_MISMATCH', 'forge', 10n, await positionOf('forge', 10n)],
      ['HASH_MISMATCH', 'mod', 4n, await positionOf('mod', 4n)],
      ['HASH_MISMATCH', 'swap', 3n, await positionOf('swap', 3n)],
      ['HASH_MISMATCH', 'swap', 4n, await positionOf('swap', 4n)],
      // The event after a swapped pair chains to the other of the two now.
      ['HASH_MISMATCH', 'swap', 5n, await positionOf('swap', 5n)],
      ['TAIL_CUT', 'cut', 9n, null],
    ]);
    expect(breaks.find((b) => b.kind === 'TAIL_CUT')?.detail).toMatch(/now ends at 6/);
    // One subject alone: only its own breaks.
    expect((await breaksOf('mod')).map((b) => b.sequence)).toEqual([4n]);
    expect(await breaksOf('clean-a')).toEqual([]);
  });

  it('reports heads edited behind the checkpoint, and a checkpoint that does not chain', async () => {
    const c = await t.owner.connect();
    try {
      await c.query(
        "UPDATE ledger_checkpoint_heads SET sequence = 3, hash = sha256('h') WHERE subject = 'clean-b'",
      );
    } finally {
      c.release();
    }
    const kinds = (await breaksOf()).filter((b) => b.subject === 'clean-b' || b.subject === '');
    expect(kinds.map((b) => b.kind)).toEqual(['TAIL_CUT', 'CHECKPOINT_MISMATCH']);
    await t.owner.query("UPDATE ledger_checkpoints SET root = sha256('r') WHERE id = 1");
    const cp = (await breaksOf()).filter((b) => b.kind === 'CHECKPOINT_MISMATCH');
    const last = (await verifyLedger(t.db, null)).checkpoint!.id;
    expect(cp.map((b) => b.detail)).toEqual([
      'checkpoint 1 was edited: its chain is not that of its root on the checkpoint before it',
      `the heads no longer hash to checkpoint ${last}'s root: they were edited`,
    ]);
  });
});
