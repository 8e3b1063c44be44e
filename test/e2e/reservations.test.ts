import { Code, ConnectError } from '@connectrpc/connect';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { EventType, Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
  await s.connect.admin.setQuota({
    subject: 'render',
    metric: 'videos',
    period: Period.DAY,
    limit: 10n,
  });
});
afterAll(() => s.close());

const connectCode = (p: Promise<unknown>): Promise<[Code, string] | 'ok'> =>
  p.then(
    () => 'ok' as const,
    (e: unknown) => {
      if (!(e instanceof ConnectError)) throw e;
      return [e.code, e.rawMessage];
    },
  );

describe('reservations over the wire', () => {
  it('Reserve over gRPC holds; GetQuota over Connect shows used, reserved and remaining', async () => {
    const r = await s.grpc.call(QuotaService, QuotaService.method.reserve, {
      subject: 'render',
      metric: 'videos',
      amount: 6n,
      ttl: { seconds: 30n, nanos: 0 },
      idempotencyKey: 'job-7',
    });
    expect(r.allowed).toBe(true);
    expect(r.reservationId).not.toBe('');
    expect(r.quotas[0]).toMatchObject({ used: 0n, reserved: 6n, remaining: 4n });
    const q = await s.connect.quota.getQuota({ subject: 'render', metric: 'videos' });
    expect(q.quotas[0]).toMatchObject({ used: 0n, reserved: 6n, remaining: 4n });
    const refused = await s.connect.quota.reserve({
      subject: 'render',
      metric: 'videos',
      amount: 5n,
      ttl: { seconds: 30n, nanos: 0 },
    });
    expect(refused.allowed).toBe(false);
    expect(refused.retryAfter).toBeDefined();
    const c = await s.connect.quota.commitReservation({
      subject: 'render',
      reservationId: r.reservationId,
      amount: 2n,
    });
    expect(c.quotas[0]).toMatchObject({ used: 2n, reserved: 0n, remaining: 8n });
    const again = await s.grpc.call(QuotaService, QuotaService.method.commitReservation, {
      subject: 'render',
      reservationId: r.reservationId,
      amount: 2n,
    });
    expect(again.replayed).toBe(true);
  });

  it('bad input is INVALID_ARGUMENT naming the field, and changes nothing', async () => {
    const before = await s.database.db.query('SELECT count(*)::int AS n FROM ledger_events');
    const bad = [
      { subject: 'render', metric: 'videos', amount: 1n },
      { subject: 'render', metric: 'videos', amount: 1n, ttl: { seconds: 0n, nanos: 500 } },
      { subject: 'render', metric: 'videos', amount: 1n, ttl: { seconds: 86_401n, nanos: 0 } },
      { subject: 'render', metric: 'videos', amount: 0n, ttl: { seconds: 5n, nanos: 0 } },
    ];
    const got = await Promise.all(bad.map((b) => connectCode(s.connect.quota.reserve(b))));
    expect(got.map((g) => (g === 'ok' ? g : [g[0], g[1].split(':')[0]]))).toEqual([
      [Code.InvalidArgument, 'ttl'],
      [Code.InvalidArgument, 'ttl'],
      [Code.InvalidArgument, 'ttl'],
      [Code.InvalidArgument, 'amount'],
    ]);
    const id = await connectCode(
      s.connect.quota.cancelReservation({ subject: 'render', reservationId: 'not an id!' }),
    );
    expect(id).toEqual([Code.InvalidArgument, expect.stringMatching(/^reservation_id: /)]);
    const unknown = await s.grpc
      .call(QuotaService, QuotaService.method.cancelReservation, {
        subject: 'render',
        reservationId: '00000000-0000-0000-0000-000000000000',
      })
      .then(
        () => 'ok',
        (e: { code: number }) => e.code,
      );
    expect(unknown).toBe(status.NOT_FOUND);
    const after = await s.database.db.query('SELECT count(*)::int AS n FROM ledger_events');
    expect(after.rows).toEqual(before.rows);
  });

  it('the scheduler sweep writes RESERVATION_EXPIRED; ListEvents and /metrics show reservations', async () => {
    const r = await s.connect.quota.reserve({
      subject: 'render',
      metric: 'videos',
      amount: 3n,
      ttl: { seconds: 1n, nanos: 0 },
    });
    let metrics = await (await fetch(`${s.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^quota_reserved_amount\{metric="videos"\} 3$/m);
    s.clock.advance(1_000);
    metrics = await (await fetch(`${s.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^quota_reserved_amount\{metric="videos"\} 0$/m);
    expect(metrics).toMatch(/^quota_reservations_expired_unswept\{metric="videos"\} 1$/m);
    await s.connect.admin.triggerResetSweep({});
    const events = await s.connect.admin.listEvents({
      subject: 'render',
      types: [EventType.RESERVATION_EXPIRED],
    });
    expect(events.events.map((e) => [e.reservationId, e.actor])).toEqual([
      [r.reservationId, 'scheduler'],
    ]);
    metrics = await (await fetch(`${s.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/^quota_reservations_settled_total\{outcome="expired"\} 1$/m);
    const v = await s.connect.admin.verifyProjection({});
    expect(v.differences).toEqual([]);
  });
});
