import { DateTime } from 'luxon';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { listAttempts } from '../../src/ledger/reset-runs.js';
import { Metrics } from '../../src/metrics.js';
import { ResetScheduler } from '../../src/scheduler/reset-scheduler.js';
import { consumeCommand, defineQuota, TestClock } from '../support/db.js';
import { consume } from '../../src/ledger/consume.js';
import { startTestServer, type TestServer } from '../support/server.js';

// What an operator sees of the scheduler: where its cron schedule is read, when it runs next,
// that it is running, and that a tick which found it busy left a trace.

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({
    now: '2026-06-01T10:00:00Z',
    reset: { enabled: true, cron: '0 0 * * *', timeZone: 'UTC', replicaId: 'status-test' },
  });
});
afterAll(() => s.close());

const scheduler = (clock: TestClock, extra: { timeZone?: string; metrics?: Metrics } = {}) =>
  new ResetScheduler({
    db: s.database.db,
    clock,
    logger: pino({ level: 'silent' }),
    metrics: new Metrics({ defaultMetrics: false }),
    cron: '0 0 * * *',
    timeZone: 'UTC',
    replicaId: 'r',
    maxAttempts: 1,
    retryBaseMs: 10,
    batchSize: 10,
    maxTimerMs: 48 * 3_600_000,
    ...extra,
  });

/** Resolves once some backend of this test's database waits for a row lock. */
async function someoneWaitsForALock(): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const r = await s.database.owner.query(
      `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (r.rowCount) return;
    await new Promise((ok) => setTimeout(ok, 25));
  }
  throw new Error('no backend ever waited for the lock');
}

describe('the reset scheduler status', () => {
  it('reads the cron schedule in QUOTA_RESET_TIME_ZONE, not in the process time zone', async () => {
    const tz = process.env.TZ;
    process.env.TZ = 'America/New_York'; // what the process runs in must not matter
    const clock = new TestClock(new Date());
    try {
      for (const zone of ['UTC', 'Asia/Kolkata']) {
        const r = scheduler(clock, { timeZone: zone });
        r.start();
        const next = r.status().nextRunTime!;
        await r.stop();
        const local = DateTime.fromJSDate(next, { zone });
        expect([local.hour, local.minute, local.second]).toEqual([0, 0, 0]);
        expect(next.getTime() - Date.now()).toBeLessThanOrEqual(24 * 3_600_000);
      }
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });

  it('records a cron tick that finds a sweep running as a skipped run, with the reason', async () => {
    const clock = new TestClock(new Date('2026-06-01T10:00:00Z'));
    const deps = { db: s.database.db, clock };
    await defineQuota(deps, { subject: 'held', period: 'DAY', limit: 10n });
    await consume(deps, consumeCommand('held'), 't');
    clock.set('2026-06-02T10:00:00Z');
    const metrics = new Metrics({ defaultMetrics: false });
    const r = scheduler(clock, { metrics });
    const holder = await s.database.owner.connect();
    try {
      await holder.query('BEGIN');
      await holder.query("SELECT 1 FROM subjects WHERE subject = 'held' FOR UPDATE");
      const running = r.run('manual');
      await someoneWaitsForALock();
      expect(r.status().runningSince).toEqual(clock.now());
      await r.cronTick();
      await holder.query('COMMIT');
      expect((await running).outcome).toBe('success');
    } finally {
      holder.release();
    }
    expect(r.status().runningSince).toBeNull();
    const skipped = (await listAttempts(s.database.db, 20, null)).runs.filter(
      (x) => x.outcome === 'skipped',
    );
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ trigger: 'cron', replicaId: 'r' });
    expect(skipped[0]!.error).toMatch(/running since 2026-06-02T10:00:00.000Z/);
    expect(await metrics.registry.getSingleMetricAsString('quota_reset_runs_total')).toMatch(
      /quota_reset_runs_total\{trigger="cron",outcome="skipped"\} 1/,
    );
    await r.stop();
  });

  it('answers GetResetStatus with the schedule, its zone, the next run and the last run', async () => {
    await s.connect.admin.setQuota({ subject: 'g', metric: 'm', period: Period.DAY, limit: 5n });
    await s.connect.admin.triggerResetSweep({});
    const st = await s.connect.admin.getResetStatus({});
    expect(st).toMatchObject({
      enabled: true,
      schedule: '0 0 * * *',
      timeZone: 'UTC',
      replicaId: 'status-test',
      running: false,
    });
    expect(st.nextRunTime).toBeDefined();
    expect(st.lastRun?.outcome).toMatch(/success|skipped/);
    expect(st.lastRun?.finishedAt).toBeDefined();
  });
});
