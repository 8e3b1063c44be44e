import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PeriodKind } from '../../src/domain/period.js';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { createPool } from '../../src/ledger/db.js';
import { setQuota } from '../../src/ledger/quota-admin.js';
import { getQuota } from '../../src/ledger/read.js';
import { resetSubject } from '../../src/ledger/reset.js';
import { listAttempts } from '../../src/ledger/reset-runs.js';
import { resetLagSeconds, sweep } from '../../src/ledger/reset-sweep.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import { Metrics } from '../../src/metrics.js';
import { ResetScheduler } from '../../src/scheduler/reset-scheduler.js';
import {
  createTestDatabase,
  expectProjectionClean,
  TestClock,
  waitForLockWaiter,
  type TestDatabase,
} from '../support/db.js';
import { TcpProxy, targetOf } from '../support/tcp-proxy.js';

let t: TestDatabase;
let deps: LedgerDeps;
const clock = new TestClock(new Date('2026-01-01T00:00:00Z'));
let runs = 0;

beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());
// Whatever a test wrote, its projection must equal the fold of its ledger.
afterEach(() => expectProjectionClean(t.db));

async function quota(
  subject: string,
  period: PeriodKind,
  timeZone: string,
  anchorDay = 0,
): Promise<void> {
  await setQuota(
    deps,
    { subject, metric: 'api_calls', period, limit: 1000n, timeZone, anchorDay, reason: null },
    't',
  );
}

const use = (subject: string, amount = 1n) =>
  consume(
    deps,
    { subject, metric: 'api_calls', amount, idempotencyKey: null, mode: 'ENFORCE', attributes: {} },
    't',
  );

const sweepNow = async (): Promise<number> => {
  const r = await sweep(t.db, {
    now: clock.now(),
    batchSize: 100,
    runId: `00000000-0000-4000-8000-${String(++runs).padStart(12, '0')}`,
  });
  expect(r.complete).toBe(true);
  return r.rolled;
};

async function resetStarts(subject: string): Promise<string[]> {
  const rows = await t.db.query(
    `SELECT period_start FROM ledger_events WHERE subject = $1 AND type = 'RESET_SCHEDULED' ORDER BY sequence`,
    [subject],
  );
  return rows.rows.map((r: { period_start: Date }) => r.period_start.toISOString());
}

/** Walks the clock hour by hour from `from` to `to`, sweeping at every step. */
async function walk(from: string, to: string, stepHours = 1): Promise<void> {
  clock.set(from);
  while (clock.now() < new Date(to)) {
    clock.advance(stepHours * 3_600_000);
    await sweepNow();
  }
}

describe('the sweep emits exactly the expected resets', () => {
  const cases: {
    zone: string;
    period: PeriodKind;
    anchor?: number;
    from: string;
    to: string;
    expected: string[];
  }[] = [
    {
      zone: 'America/New_York', // spring forward: the day of 2026-03-08 has 23 hours
      period: 'DAY',
      from: '2026-03-07T12:00:00Z',
      to: '2026-03-10T06:00:00Z',
      expected: [
        '2026-03-08T05:00:00.000Z',
        '2026-03-09T04:00:00.000Z',
        '2026-03-10T04:00:00.000Z',
      ],
    },
    {
      zone: 'America/New_York', // fall back: the day of 2026-11-01 has 25 hours
      period: 'DAY',
      from: '2026-10-31T12:00:00Z',
      to: '2026-11-03T06:00:00Z',
      expected: [
        '2026-11-01T04:00:00.000Z',
        '2026-11-02T05:00:00.000Z',
        '2026-11-03T05:00:00.000Z',
      ],
    },
    {
      zone: 'Asia/Kolkata', // +05:30: local midnight is 18:30 UTC the day before
      period: 'DAY',
      from: '2026-06-01T12:00:00Z',
      to: '2026-06-03T12:00:00Z',
      expected: ['2026-06-01T18:30:00.000Z', '2026-06-02T18:30:00.000Z'],
    },
    {
      zone: 'Pacific/Chatham', // +13:45 until 2026-04-05 03:45 local, then +12:45
      period: 'DAY',
      from: '2026-04-03T12:00:00Z',
      to: '2026-04-06T12:00:00Z',
      expected: [
        '2026-04-04T10:15:00.000Z',
        '2026-04-05T11:15:00.000Z',
        '2026-04-06T11:15:00.000Z',
      ],
    },
    {
      zone: 'Australia/Lord_Howe', // +11 until 2026-04-05 02:00 local, then +10:30
      period: 'DAY',
      from: '2026-04-03T14:00:00Z',
      to: '2026-04-06T14:00:00Z',
      expected: [
        '2026-04-04T13:00:00.000Z',
        '2026-04-05T13:30:00.000Z',
        '2026-04-06T13:30:00.000Z',
      ],
    },
    {
      zone: 'UTC', // ISO weeks across the year end: Monday 2026-12-28, then Monday 2027-01-04
      period: 'WEEK',
      from: '2026-12-24T00:00:00Z',
      to: '2027-01-05T00:00:00Z',
      expected: ['2026-12-28T00:00:00.000Z', '2027-01-04T00:00:00.000Z'],
    },
    {
      zone: 'UTC', // anchor 31 in a leap year: Jan 31, Feb 29, Mar 31, Apr 30
      period: 'MONTH',
      anchor: 31,
      from: '2028-01-20T00:00:00Z',
      to: '2028-05-01T00:00:00Z',
      expected: [
        '2028-01-31T00:00:00.000Z',
        '2028-02-29T00:00:00.000Z',
        '2028-03-31T00:00:00.000Z',
        '2028-04-30T00:00:00.000Z',
      ],
    },
    {
      zone: 'Europe/Paris', // anchor 31 in a common year, Paris midnight: Feb 28, Mar 31 (the day DST starts is the 29th)
      period: 'MONTH',
      anchor: 31,
      from: '2027-01-20T00:00:00Z',
      to: '2027-04-01T00:00:00Z',
      expected: [
        '2027-01-30T23:00:00.000Z',
        '2027-02-27T23:00:00.000Z',
        '2027-03-30T22:00:00.000Z',
      ],
    },
  ];

  for (const c of cases) {
    it(`${c.period}${c.anchor ? ` anchored on ${c.anchor}` : ''} in ${c.zone} from ${c.from}`, async () => {
      const subject = `walk-${c.zone}-${c.period}-${c.from}`;
      clock.set(c.from);
      await quota(subject, c.period, c.zone, c.anchor ?? 0);
      await use(subject);
      await walk(c.from, c.to, c.period === 'DAY' ? 0.25 : 6);
      expect(await resetStarts(subject)).toEqual(c.expected);
    });
  }
});

describe('catch-up and concurrency', () => {
  it('after downtime across several boundaries, one catch-up event per quota records where it skipped from', async () => {
    const s = 'downtime';
    clock.set('2026-07-01T10:00:00Z'); // a Wednesday
    for (const p of ['DAY', 'WEEK', 'MONTH', 'NEVER'] as const) await quota(s, p, 'UTC');
    await use(s, 7n);
    clock.set('2026-07-15T10:00:00Z'); // two weeks and fourteen days later; same month
    const rolled = await sweepNow();
    expect(rolled).toBe(2);
    const rows = await t.db.query(
      `SELECT period, period_start, data FROM ledger_events WHERE subject = $1 AND type = 'RESET_SCHEDULED' ORDER BY period`,
      [s],
    );
    expect(
      rows.rows.map((r: { period: string; period_start: Date; data: Record<string, string> }) => [
        r.period,
        r.period_start.toISOString(),
        r.data.previousPeriodStart,
        r.data.usedBefore,
      ]),
    ).toEqual([
      ['DAY', '2026-07-15T00:00:00.000Z', '2026-07-01T00:00:00.000Z', '7'],
      ['WEEK', '2026-07-13T00:00:00.000Z', '2026-06-29T00:00:00.000Z', '7'],
    ]);
    expect((await getQuota(deps, s, 'api_calls')).map((q) => q.used)).toEqual([0n, 0n, 7n, 7n]);
    expect(await sweepNow()).toBe(0);
  });

  it('racing sweeps and lazy rolls leave exactly one reset per counter and period', async () => {
    clock.set('2026-08-10T12:00:00Z');
    const subjects = Array.from({ length: 150 }, (_, i) => `race-${i}`);
    for (const s of subjects) {
      await quota(s, 'DAY', 'Asia/Kolkata');
      await quota(s, 'WEEK', 'America/New_York');
      await use(s, 3n);
    }
    clock.set('2026-08-18T12:00:00Z');
    const results = await Promise.all([
      ...Array.from({ length: 4 }, () => sweepNow()),
      ...subjects.slice(0, 60).map((s) => use(s, 1n)),
      resetSubject(
        deps,
        'race-7',
        { subject: 'race-7', metric: null, period: null, reason: 'manual' },
        'ops',
      ),
    ]);
    const rolledBySweeps = (results.slice(0, 4) as number[]).reduce((a, b) => a + b, 0);
    expect(rolledBySweeps).toBeGreaterThan(0);
    const dup = await t.db
      .query(`SELECT subject, metric, period, period_start, count(*) FROM ledger_events
      WHERE type = 'RESET_SCHEDULED' GROUP BY 1, 2, 3, 4 HAVING count(*) > 1`);
    expect(dup.rows).toEqual([]);
    const n = await t.db.query(
      `SELECT count(*)::int AS n FROM ledger_events WHERE type = 'RESET_SCHEDULED' AND subject LIKE 'race-%'`,
    );
    expect(n.rows[0].n).toBe(300);
    for (const s of subjects.slice(55, 65)) {
      const used = (await getQuota(deps, s, 'api_calls')).map((q) => q.used);
      expect(used).toEqual(
        s === 'race-7' ? [0n, 0n] : Number(s.slice(5)) < 60 ? [1n, 1n] : [0n, 0n],
      );
    }
    expect(await resetLagSeconds(t.db, clock.now())).toBe(0);
    expect((await verifyProjection(t.db)).differences).toEqual([]);
  });
});

describe('busy subjects', () => {
  it('a sweep comes back for subjects that were busy, so it leaves nothing due behind', async () => {
    clock.set('2026-12-01T10:00:00Z');
    for (const subj of ['busy-a', 'busy-b', 'busy-c']) {
      await quota(subj, 'DAY', 'UTC');
      await setQuota(
        deps,
        {
          subject: subj,
          metric: 'other',
          period: 'DAY',
          limit: 5n,
          timeZone: 'UTC',
          anchorDay: 0,
          reason: null,
        },
        't',
      );
      await use(subj);
      await consume(
        deps,
        {
          subject: subj,
          metric: 'other',
          amount: 1n,
          idempotencyKey: null,
          mode: 'ENFORCE',
          attributes: {},
        },
        't',
      );
    }
    clock.set('2026-12-02T10:00:00Z');
    // A long call holds busy-b while the sweep runs.
    const holder = await t.db.connect();
    await holder.query('BEGIN');
    await holder.query("SELECT 1 FROM subjects WHERE subject = 'busy-b' FOR UPDATE");
    let swept = false;
    const sweeping = sweepNow().finally(() => (swept = true));
    // The main pass skips busy-b; the final pass must come back and wait for it.
    await waitForLockWaiter(t.db);
    expect(swept).toBe(false);
    await holder.query('COMMIT');
    holder.release();
    await sweeping;
    for (const subj of ['busy-a', 'busy-b', 'busy-c']) {
      expect(await resetStarts(subj)).toEqual([
        '2026-12-02T00:00:00.000Z',
        '2026-12-02T00:00:00.000Z',
      ]);
    }
    expect(await resetLagSeconds(t.db, clock.now())).toBe(0);
  });
});

describe('the scheduler', () => {
  const scheduler = (
    db = t.db,
    extra: Partial<ConstructorParameters<typeof ResetScheduler>[0]> = {},
  ) =>
    new ResetScheduler({
      db,
      clock,
      logger: pino({ level: 'silent' }),
      metrics: new Metrics({ defaultMetrics: false }),
      cron: '0 0 1 1 *',
      timeZone: 'UTC',
      replicaId: 'test',
      maxAttempts: 3,
      retryBaseMs: 50,
      batchSize: 100,
      maxTimerMs: 24 * 3_600_000,
      ...extra,
    });

  it('retries a sweep while the database is away, records every attempt, and succeeds when it returns', async () => {
    const proxy = new TcpProxy(targetOf(t.url).host, targetOf(t.url).port);
    const db = createPool({ connectionString: await proxy.start(t.url), max: 2 });
    try {
      clock.set('2026-09-01T12:00:00Z');
      await quota('flaky', 'DAY', 'UTC');
      await use('flaky');
      clock.set('2026-09-02T12:00:00Z');
      // The database comes back as soon as the first attempt has failed (its log line), so a
      // retry is certain and no sleep decides it.
      const logger = pino(
        { level: 'warn' },
        {
          write: (line: string) => {
            if (line.includes('reset run failed')) proxy.restore();
          },
        },
      );
      const s = scheduler(db, { retryBaseMs: 1, logger });
      proxy.cut();
      const run = await s.run('manual');
      expect(run.outcome).toBe('success');
      expect(run.countersRolled).toBeGreaterThanOrEqual(1); // counters of earlier tests are due too
      expect(await resetStarts('flaky')).toEqual(['2026-09-02T00:00:00.000Z']);
      expect(run.attempt).toBeGreaterThan(1);
      const attempts = (await listAttempts(t.db, 100, null)).runs.filter(
        (r) => r.runId === run.runId,
      );
      expect(attempts.map((a) => a.outcome).sort()).toEqual(
        [...Array(run.attempt - 1).fill('failure'), 'success'].sort(),
      );
      expect(attempts.every((a) => a.trigger === 'manual' && a.finishedAt !== null)).toBe(true);
      await s.stop();
    } finally {
      await db.end();
      await proxy.close();
    }
  });

  it('gives up after the configured attempts and says why', async () => {
    const proxy = new TcpProxy(targetOf(t.url).host, targetOf(t.url).port);
    const db = createPool({ connectionString: await proxy.start(t.url), max: 2 });
    try {
      const s = scheduler(db, { retryBaseMs: 10 });
      proxy.cut();
      const run = await s.run('cron');
      expect(run).toMatchObject({ outcome: 'failure', attempt: 3 });
      expect(run.error).toMatch(/unreachable/);
      proxy.restore();
      const next = await s.run('cron'); // the failed attempts are written once the database is back
      expect(next.outcome).toBe('success');
      const failed = (await listAttempts(t.db, 100, null)).runs.filter(
        (r) => r.runId === run.runId,
      );
      expect(failed.map((a) => a.attempt).sort()).toEqual([1, 2, 3]);
      await s.stop();
    } finally {
      await db.end();
      await proxy.close();
    }
  });

  it('arms its timer for the next local midnight of any counter, not the next UTC tick', async () => {
    clock.set('2026-10-05T12:00:00Z');
    await t.db.query("DELETE FROM counters WHERE period_end > '2026-10-05T12:00:00Z'");
    await quota('kolkata', 'DAY', 'Asia/Kolkata');
    await use('kolkata');
    const s = scheduler();
    const before = Date.now();
    await s.armTimer();
    const expectedMs = Date.parse('2026-10-05T18:30:00Z') - clock.now().getTime();
    const next = s.status().nextRunTime!;
    expect(next.getTime() - before).toBeGreaterThanOrEqual(expectedMs - 50);
    expect(next.getTime() - Date.now()).toBeLessThanOrEqual(expectedMs + 50);
    await s.stop();
    // The counters deleted above were the test's doing, not the service's: put them back from
    // the ledger so the projection check after each test holds again.
    await verifyProjection(t.db, { repair: true });
  });

  it('on stop lets the running sweep finish its batch, records it, and leaves the rest to the next', async () => {
    clock.set('2026-11-02T12:00:00Z');
    const subjects = Array.from({ length: 200 }, (_, i) => `stop-${i}`);
    for (const subj of subjects) {
      await quota(subj, 'DAY', 'UTC');
      await use(subj);
    }
    clock.set('2026-11-03T12:00:00Z');
    // A call holds stop-0, so the sweep is still at work (waiting for it) when the stop comes.
    const holder = await t.db.connect();
    await holder.query('BEGIN');
    await holder.query("SELECT 1 FROM subjects WHERE subject = 'stop-0' FOR UPDATE");
    const s = scheduler(t.db, { batchSize: 10 });
    const running = s.run('manual');
    // The sweep has done the rest and waits for stop-0 when the stop comes.
    await waitForLockWaiter(t.db);
    const stopping = s.stop();
    await holder.query('COMMIT');
    holder.release();
    await stopping;
    const run = await running;
    // Cut short by the stop, the run says so: it is no success, counters may still be due.
    expect(run.outcome).toBe('interrupted');
    expect(run.countersRolled).toBeGreaterThan(0);
    const recorded = (await listAttempts(t.db, 100, null)).runs.find((r) => r.runId === run.runId);
    expect(recorded).toMatchObject({ outcome: 'interrupted', countersRolled: run.countersRolled });
    await sweepNow();
    const all = await t.db.query(
      `SELECT count(*)::int AS n FROM ledger_events WHERE type = 'RESET_SCHEDULED' AND subject LIKE 'stop-%'`,
    );
    expect(all.rows[0].n).toBe(200);
  });

  it('on stop takes no new run', async () => {
    const s = scheduler();
    await s.stop();
    await expect(s.run('manual')).rejects.toThrow(/stopping/);
  });
});
