import { Code, ConnectError } from '@connectrpc/connect';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { ConsumeMode, EventType, Period } from '../../src/gen/quota/v1/types_pb.js';
import { GrpcCaller, startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;

beforeAll(async () => {
  s = await startTestServer();
  await s.connect.admin.setQuota({
    subject: 'org-1',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 3n,
    reason: 'trial',
  });
});
afterAll(() => s.close());

describe('one port, both transports, one set of handlers', () => {
  it('serves gRPC (grpc-js client over HTTP/2)', async () => {
    const r = await s.grpc.call(QuotaService, QuotaService.method.consume, {
      subject: 'org-1',
      metric: 'api_calls',
      amount: 1n,
    });
    expect(r.allowed).toBe(true);
    expect(r.quotas[0]!.used).toBe(1n);
  });

  it('serves gRPC clients that compress their requests (gzip)', async () => {
    // Unary gRPC is answered without grpc-js (src/transport/grpc-unary.ts) except for
    // compressed requests, which grpc-js inflates.
    const gzip = new GrpcCaller(`127.0.0.1:${s.port}`, {
      'grpc.default_compression_algorithm': 2, // gzip
    });
    try {
      const r = await gzip.call(QuotaService, QuotaService.method.getQuota, {
        subject: 'org-1',
        metric: 'api_calls',
      });
      expect(r.quotas[0]!.limit).toBe(3n);
    } finally {
      gzip.close();
    }
  });

  it('serves Connect over HTTP/1.1', async () => {
    const r = await s.connect.quota.consume({ subject: 'org-1', metric: 'api_calls', amount: 1n });
    expect(r.quotas[0]!.used).toBe(2n);
  });

  it('serves gRPC-Web over HTTP/1.1', async () => {
    const r = await s.grpcWeb.quota.getQuota({ subject: 'org-1', metric: 'api_calls' });
    expect(r.quotas[0]!.used).toBe(2n);
  });

  it('answers a plain fetch of a Connect JSON call', async () => {
    const res = await fetch(`${s.baseUrl}/quota.v1.QuotaService/Consume`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        subject: 'org-1',
        metric: 'api_calls',
        amount: '1',
        mode: 'CONSUME_MODE_ENFORCE',
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      allowed: boolean;
      quotas: { used: string; remaining?: string }[];
    };
    expect(body.allowed).toBe(true);
    expect(body.quotas[0]).toMatchObject({ used: '3' });
  });

  it('refuses the fourth call with the reset time on both transports', async () => {
    const g = await s.grpc.call(QuotaService, QuotaService.method.consume, {
      subject: 'org-1',
      metric: 'api_calls',
      amount: 1n,
    });
    const c = await s.connect.quota.consume({ subject: 'org-1', metric: 'api_calls', amount: 1n });
    for (const r of [g, c]) {
      expect(r.allowed).toBe(false);
      expect(r.retryAt?.seconds).toBe(BigInt(Date.parse('2026-03-11T00:00:00Z') / 1000));
      expect(r.retryAfter?.seconds).toBe(12n * 3600n);
      expect(r.quotas[0]!.exceeded).toBe(true);
    }
  });

  it('maps errors to the same codes with messages naming the field', async () => {
    const bad = { subject: '', metric: 'api_calls', amount: 1n };
    await expect(s.grpc.call(QuotaService, QuotaService.method.consume, bad)).rejects.toMatchObject(
      {
        code: status.INVALID_ARGUMENT,
        details: expect.stringContaining('subject'),
      },
    );
    const err = await s.connect.quota
      .consume({ ...bad, subject: 'x', amount: 0n })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toMatch(/^amount:/);
    const nf = await s.connect.quota
      .consume({ subject: 'org-2', metric: 'videos', amount: 1n })
      .catch((e: unknown) => e);
    expect((nf as ConnectError).code).toBe(Code.NotFound);
    expect((nf as ConnectError).rawMessage).toMatch(/"org-2".*"videos"/);
  });

  it('answers a malformed protobuf body with INVALID_ARGUMENT, not a crash', async () => {
    await expect(
      s.grpc.raw('/quota.v1.QuotaService/Consume', Buffer.from([0x0a, 0xff, 0xff])),
    ).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
    const r = await s.connect.quota.getQuota({ subject: 'org-1' });
    expect(r.quotas).toHaveLength(1);
  });

  it('lists the events of every attempt, paging with opaque tokens', async () => {
    const all = [];
    let pageToken = '';
    do {
      const page = await s.connect.admin.listEvents({ subject: 'org-1', pageSize: 2, pageToken });
      all.push(...page.events);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(all.map((e) => e.type)).toEqual([
      EventType.QUOTA_SET,
      EventType.USAGE,
      EventType.USAGE,
      EventType.USAGE,
    ]);
    expect(all.map((e) => e.sequence)).toEqual([1n, 2n, 3n, 4n]);
    expect(all.every((e) => e.actor === 'anonymous')).toBe(true);
    const usage = await s.grpc.call(QuotaAdminService, QuotaAdminService.method.listEvents, {
      subject: 'org-1',
      types: [EventType.USAGE],
    });
    expect(usage.events).toHaveLength(3);
    const newest = await s.connect.admin.listEvents({
      subject: 'org-1',
      pageSize: 3,
      newestFirst: true,
    });
    expect(newest.events.map((e) => e.sequence)).toEqual([4n, 3n, 2n]);
    const older = await s.connect.admin.listEvents({
      subject: 'org-1',
      pageSize: 3,
      newestFirst: true,
      pageToken: newest.nextPageToken,
    });
    expect(older.events.map((e) => e.sequence)).toEqual([1n]);
    expect(older.nextPageToken).toBe('');
    const page = await s.connect.admin.listEvents({ subject: 'org-1', pageSize: 1 });
    const mismatch = await s.connect.admin
      .listEvents({ subject: 'org-2', pageToken: page.nextPageToken })
      .catch((e: unknown) => e);
    expect((mismatch as ConnectError).rawMessage).toMatch(/^page_token:/);
  });

  it('dry-runs over gRPC without recording', async () => {
    const r = await s.grpc.call(QuotaService, QuotaService.method.consume, {
      subject: 'org-1',
      metric: 'api_calls',
      amount: 1n,
      mode: ConsumeMode.DRY_RUN,
    });
    expect(r).toMatchObject({ allowed: false, recorded: false, sequence: 0n });
  });

  it('answers Connect GET for the side-effect-free methods only', async () => {
    const get = (path: string, message: object) =>
      fetch(
        `${s.baseUrl}/${path}?connect=v1&encoding=json&message=${encodeURIComponent(JSON.stringify(message))}`,
      );
    const reads: [string, object, string][] = [
      ['quota.v1.QuotaService/GetQuota', { subject: 'org-1' }, 'quotas'],
      ['quota.v1.QuotaAdminService/ListQuotas', { subject: 'org-1' }, 'quotas'],
      ['quota.v1.QuotaAdminService/ListEvents', { subject: 'org-1' }, 'events'],
      ['quota.v1.QuotaAdminService/ListResetRuns', {}, ''],
    ];
    for (const [path, message, key] of reads) {
      const res = await get(path, message);
      expect(res.status, path).toBe(200);
      const body = (await res.json()) as Record<string, unknown[]>;
      if (key) expect(body[key]!.length, path).toBeGreaterThan(0);
    }
    for (const path of ['quota.v1.QuotaService/Consume', 'quota.v1.QuotaAdminService/SetQuota'])
      expect((await get(path, { subject: 'org-1' })).status, path).toBe(405);
  });

  it('serves /healthz and /readyz on the same port', async () => {
    expect((await fetch(`${s.baseUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${s.baseUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${s.baseUrl}/nope`)).status).toBe(404);
  });
});
