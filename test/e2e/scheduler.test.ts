import { SpanStatusCode } from '@opentelemetry/api';
import { trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQuotaServer, type QuotaServer } from '../../src/server.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { TestClock } from '../support/db.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';

const spans = new InMemorySpanExporter();
trace.setGlobalTracerProvider(
  new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }),
);

let s: TestServer;
const replicas: { server: QuotaServer; clock: TestClock; port: number }[] = [];

beforeAll(async () => {
  s = await startTestServer({ now: '2026-02-02T10:00:00Z' });
  // Two more replicas on the same database, each with its own clock.
  for (let i = 0; i < 2; i++) {
    const clock = new TestClock(new Date('2026-02-02T10:00:00Z'));
    const server = createQuotaServer({
      db: s.database.db,
      clock,
      addr: { host: '127.0.0.1', port: 0 },
      reset: { replicaId: `replica-${i + 2}`, batchSize: 25 },
    });
    const { addr } = await server.listen();
    replicas.push({ server, clock, port: addr.port });
  }
});
afterAll(async () => {
  for (const r of replicas) await r.server.close();
  await s.close();
});

/** Resets written by the lazy roll of a call rather than by a sweep (no run id). */
const lazyRolls = async (): Promise<bigint> =>
  BigInt(
    (
      await s.database.db.query(
        `SELECT count(*)::int AS n FROM ledger_events WHERE type = 'RESET_SCHEDULED' AND NOT data ? 'runId'`,
      )
    ).rows[0].n,
  );

const metricValue = (text: string, name: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').at(-1)) : NaN;
};

describe('scheduled resets across three replicas', () => {
  it('leave exactly one RESET_SCHEDULED per counter and period, with every counter right', async () => {
    const subjects = Array.from({ length: 120 }, (_, i) => `tenant-${i}`);
    await s.connect.admin.setQuota({
      subject: '*',
      metric: 'messages',
      period: Period.DAY,
      limit: 200n,
      timeZone: 'Europe/Berlin',
    });
    await s.connect.admin.setQuota({
      subject: '*',
      metric: 'messages',
      period: Period.WEEK,
      limit: 1000n,
      timeZone: 'UTC',
    });
    for (const subject of subjects)
      await s.connect.quota.consume({ subject, metric: 'messages', amount: 5n });

    // Everyone's clock passes the next Monday: both the DAY and the WEEK periods end.
    for (const c of [s.clock, ...replicas.map((r) => r.clock)]) c.set('2026-02-09T09:00:00Z');
    const lagText = await (await fetch(`${s.baseUrl}/metrics`)).text();
    expect(metricValue(lagText, 'quota_reset_lag_seconds')).toBeGreaterThan(0);

    const clients = replicas.map((r) => {
      const transport = createConnectTransport({
        baseUrl: `http://127.0.0.1:${r.port}`,
        httpVersion: '1.1',
      });
      return {
        admin: createClient(QuotaAdminService, transport),
        quota: createClient(QuotaService, transport),
      };
    });
    const consumed = subjects.filter((_, i) => i % 3 === 0);
    const work: Promise<unknown>[] = [
      s.server.scheduler.run('timer'),
      replicas[0]!.server.scheduler.run('cron'),
      replicas[1]!.server.scheduler.run('timer'),
      s.connect.admin.triggerResetSweep({}),
      clients[0]!.admin.triggerResetSweep({}),
      clients[1]!.admin.triggerResetSweep({}),
      ...consumed.map((subject, i) =>
        clients[i % 2]!.quota.consume({ subject, metric: 'messages', amount: 2n }),
      ),
      // A manual reset of a subject nobody else touches races the sweeps too.
      clients[1]!.admin.resetQuota({ subject: 'tenant-1', reason: 'race' }),
    ];
    await Promise.all(work);

    const db = s.database.db;
    const dup = await db.query(`SELECT subject, metric, period, period_start FROM ledger_events
      WHERE type = 'RESET_SCHEDULED' GROUP BY 1, 2, 3, 4 HAVING count(*) > 1`);
    expect(dup.rows).toEqual([]);
    const resets =
      await db.query(`SELECT period, period_start, count(*)::int AS n FROM ledger_events
      WHERE type = 'RESET_SCHEDULED' GROUP BY 1, 2 ORDER BY 1`);
    expect(resets.rows).toEqual([
      { period: 'DAY', period_start: new Date('2026-02-08T23:00:00Z'), n: 120 },
      { period: 'WEEK', period_start: new Date('2026-02-09T00:00:00Z'), n: 120 },
    ]);
    for (const [i, subject] of subjects.entries()) {
      const q = await s.connect.quota.getQuota({ subject, metric: 'messages' });
      const want = i % 3 === 0 ? 2n : 0n;
      expect(q.quotas.map((x) => x.used)).toEqual([want, want]);
    }
    expect((await verifyProjection(db)).differences).toEqual([]);

    const after = await (await fetch(`${s.baseUrl}/metrics`)).text();
    expect(metricValue(after, 'quota_reset_lag_seconds')).toBe(0);
    expect(after).toMatch(/quota_reset_runs_total\{trigger="timer",outcome="success"\} 1/);
  });

  it('pages through the run history of every replica', async () => {
    const seen = [];
    let pageToken = '';
    do {
      const page = await s.connect.admin.listResetRuns({ pageSize: 2, pageToken });
      seen.push(...page.runs);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen.length).toBeGreaterThanOrEqual(6);
    expect(seen.every((r) => r.outcome === 'success' && r.finishedAt)).toBe(true);
    expect(new Set(seen.map((r) => r.trigger))).toEqual(new Set(['timer', 'cron', 'manual']));
    expect(seen.reduce((n, r) => n + r.countersRolled, 0n) + (await lazyRolls())).toBe(240n);
    // Newest first.
    expect(seen.map((r) => r.id)).toEqual(
      [...seen.map((r) => r.id)].sort((a, b) => (a > b ? -1 : 1)),
    );
  });

  it('traces every attempt as quota_reset.execute with its outcome', async () => {
    const exec = spans.getFinishedSpans().filter((x) => x.name === 'quota_reset.execute');
    expect(exec.length).toBeGreaterThanOrEqual(6);
    for (const span of exec) {
      // The attribute names of the reset-job design (seed 000), and an explicit OK.
      expect(span.attributes).toMatchObject({
        'quota_reset.success': true,
        'quota_reset.attempt': 1,
      });
      expect(span.status.code).toBe(SpanStatusCode.OK);
      expect(['timer', 'cron', 'manual']).toContain(span.attributes['quota_reset.trigger']);
      expect(typeof span.attributes['quota_reset.rows_updated']).toBe('number');
    }
    const rows = exec.reduce((n, x) => n + Number(x.attributes['quota_reset.rows_updated']), 0);
    expect(BigInt(rows) + (await lazyRolls())).toBe(240n);
  });
  it('never overspends a limit shared by callers of all three replicas across a boundary', async () => {
    await s.connect.admin.setQuota({
      subject: 'tight',
      metric: 'messages',
      period: Period.DAY,
      limit: 10n,
    });
    await s.connect.quota.consume({ subject: 'tight', metric: 'messages', amount: 7n });
    for (const c of [s.clock, ...replicas.map((r) => r.clock)]) c.set('2026-02-10T09:00:00Z');
    const clients = [
      s.connect.quota,
      ...replicas.map((r) =>
        createClient(
          QuotaService,
          createConnectTransport({ baseUrl: `http://127.0.0.1:${r.port}`, httpVersion: '1.1' }),
        ),
      ),
    ];
    const answers = await Promise.all([
      ...Array.from({ length: 30 }, (_, i) =>
        clients[i % 3]!.consume({ subject: 'tight', metric: 'messages', amount: 1n }),
      ),
      replicas[0]!.server.scheduler.run('timer'),
    ]);
    const allowed = answers.filter((a) => 'allowed' in a && a.allowed).length;
    expect(allowed).toBe(10);
    const q = await s.connect.quota.getQuota({ subject: 'tight', metric: 'messages' });
    expect(q.quotas[0]!.used).toBe(10n);
    expect((await verifyProjection(s.database.db)).differences).toEqual([]);
  });
});
