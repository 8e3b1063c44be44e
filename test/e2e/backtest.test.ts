import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
  await s.connect.admin.setQuota({
    subject: '*',
    metric: 'images',
    period: Period.DAY,
    limit: 100n,
  });
  for (const [subject, amount] of [
    ['acme', 40n],
    ['acme', 40n],
    ['zeta', 10n],
  ] as const) {
    await s.connect.quota.consume({ subject, metric: 'images', amount });
    s.clock.advance(60_000);
  }
});
afterAll(() => s.close());

const range = {
  startTime: { seconds: 1_700_000_000n, nanos: 0 },
  endTime: { seconds: 1_900_000_000n, nanos: 0 },
};

describe('QuotaAdminService/BacktestQuota', () => {
  it('answers per subject and in total, with its limits stated (gRPC and Connect agree)', async () => {
    const req = {
      metric: 'images',
      subject: '*',
      quotas: [{ period: Period.DAY, limit: 50n }],
      ...range,
    };
    const r = await s.grpc.call(QuotaAdminService, QuotaAdminService.method.backtestQuota, req);
    expect(
      r.subjects.map((x) => [x.subject, x.callsAllowed, x.callsRefused, x.amountRefused]),
    ).toEqual([
      ['acme', 1n, 1n, 40n],
      ['zeta', 1n, 0n, 0n],
    ]);
    expect(r.subjects[0]!.periods.map((p) => [p.peakUsed, p.limit])).toEqual([[40n, 50n]]);
    expect(r.totals).toMatchObject({ subject: '*', callsRefused: 1n, callsAllowed: 2n });
    expect(r.subjects[0]!.firstRefusedAt).toEqual(r.totals!.firstRefusedAt);
    expect(r.limits.join(' ')).toMatch(/refused were never recorded/);
    expect(r.eventsScanned).toBe(3n);
    const c = await s.connect.admin.backtestQuota(req);
    expect(c.totals).toEqual(r.totals);
  });

  it('bad input is INVALID_ARGUMENT naming the field', async () => {
    const cases: [object, string][] = [
      [{ metric: 'images', subject: '*', quotas: [], ...range }, 'quotas'],
      [
        { metric: 'images', subject: '*', quotas: [{ period: Period.DAY, limit: -1n }], ...range },
        'quotas[0].limit',
      ],
      [
        { metric: 'images', subject: '*', quotas: [{ period: Period.DAY, limit: 1n }] },
        'start_time',
      ],
      [
        {
          metric: 'images',
          subject: '*',
          quotas: [{ period: Period.DAY, limit: 1n }],
          startTime: range.endTime,
          endTime: range.startTime,
        },
        'end_time',
      ],
    ];
    for (const [req, field] of cases) {
      const e = await s.connect.admin.backtestQuota(req).then(
        () => null,
        (err: unknown) => err as ConnectError,
      );
      expect(e?.code, field).toBe(Code.InvalidArgument);
      expect(e?.rawMessage.split(':')[0]).toBe(field);
    }
  });

  it('npm run quota -- backtest prints a table with totals and the limits', async () => {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'backtest',
        'images',
        '--quota',
        'DAY:50',
        '--from',
        '2020-01-01T00:00:00Z',
        '--to',
        '2030-01-01T00:00:00Z',
      ],
      { env: { ...process.env, QUOTA_URL: s.baseUrl }, timeout: 60_000 },
    );
    expect(stdout).toMatch(/^SUBJECT\s+CALLS OK\s+AMOUNT OK\s+CALLS REFUSED/m);
    expect(stdout).toMatch(/^acme\s+1\s+40\s+1\s+40\s+\S+\s+40\s*$/m);
    expect(stdout).toMatch(/^\*\s+2\s+50\s+1\s+40\s/m);
    expect(stdout).toMatch(/^3 events replayed\. Limits of this answer:$/m);
    // stderr is a pipe here and --progress was not given: no progress lines.
    expect(stderr).toBe('');
  });
});

describe('QuotaAdminService/BacktestQuotaStream', () => {
  // Pages of 4 events over a history of 14: four pages, the last one short.
  let l: TestServer;
  beforeAll(async () => {
    l = await startTestServer({ backtestPageSize: 4 });
    await l.connect.admin.setQuota({
      subject: '*',
      metric: 'frames',
      period: Period.DAY,
      limit: 1000n,
    });
    for (let i = 0; i < 14; i++) {
      await l.connect.quota.consume({
        subject: i % 3 === 0 ? 'zeta' : 'acme',
        metric: 'frames',
        amount: 10n + BigInt(i),
      });
      l.clock.advance(3 * 3_600_000);
    }
  });
  afterAll(() => l?.close());

  const req = {
    metric: 'frames',
    subject: '*',
    quotas: [{ period: Period.DAY, limit: 50n }],
    ...range,
  };
  it('sends progress per page, events_scanned only growing, then the unary answer (gRPC and Connect)', async () => {
    const unary = await l.grpc.call(QuotaAdminService, QuotaAdminService.method.backtestQuota, req);
    expect(unary.eventsScanned).toBe(14n);
    expect(unary.totals!.callsRefused).toBeGreaterThan(0n);
    const streams = {
      grpc: l.grpc.stream(QuotaAdminService, QuotaAdminService.method.backtestQuotaStream, req),
      connect: l.connect.admin.backtestQuotaStream(req),
    };
    for (const [transport, stream] of Object.entries(streams)) {
      const items = [];
      for await (const m of stream) items.push(m.item);
      const progress = items.flatMap((i) => (i.case === 'progress' ? [i.value] : []));
      expect(
        progress.map((p) => p.eventsScanned),
        transport,
      ).toEqual([4n, 8n, 12n, 14n]);
      for (const [a, b] of progress.slice(1).map((p, i) => [progress[i]!, p] as const)) {
        expect(b.position, transport).toBeGreaterThan(a.position);
        expect(b.covered, transport).toBeGreaterThanOrEqual(a.covered);
        expect(timestampDate(b.timeReached!) >= timestampDate(a.timeReached!), transport).toBe(
          true,
        );
      }
      expect(progress[0]!.covered).toBeGreaterThan(0);
      expect(progress[0]!.covered).toBeLessThan(1);
      expect(progress.at(-1)!.covered).toBe(1);
      // Progress first, then exactly one result, last, equal to the unary answer.
      expect(items.map((i) => i.case)).toEqual([...progress.map(() => 'progress'), 'result']);
      expect(items.at(-1)!.value, transport).toEqual(unary);
    }
  });

  it('a bad request fails the call with INVALID_ARGUMENT before any message', async () => {
    const got: unknown[] = [];
    const e = await (async () => {
      for await (const m of l.connect.admin.backtestQuotaStream({ ...req, quotas: [] }))
        got.push(m);
    })().then(
      () => null,
      (err: unknown) => err as ConnectError,
    );
    expect(e?.code).toBe(Code.InvalidArgument);
    expect(e?.rawMessage.split(':')[0]).toBe('quotas');
    expect(got).toEqual([]);
  });

  it('npm run quota -- backtest --progress writes progress to stderr, the table to stdout', async () => {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'backtest',
        'frames',
        '--quota',
        'DAY:50',
        '--from',
        '2020-01-01T00:00:00Z',
        '--to',
        '2030-01-01T00:00:00Z',
        '--progress',
      ],
      { env: { ...process.env, QUOTA_URL: l.baseUrl }, timeout: 60_000 },
    );
    const lines = stderr.trim().split('\n');
    expect(lines.map((x) => /^backtest: (\d+) events replayed, /.exec(x)?.[1])).toEqual([
      '4',
      '8',
      '12',
      '14',
    ]);
    expect(lines.at(-1)).toMatch(/, 100\.0% of the range \(up to \S+Z, position \d+\)$/);
    expect(stdout).toMatch(/^SUBJECT\s+CALLS OK/m);
    expect(stdout).toMatch(/^14 events replayed\. Limits of this answer:$/m);
    expect(stdout).not.toMatch(/^backtest:/m);
  });
});
