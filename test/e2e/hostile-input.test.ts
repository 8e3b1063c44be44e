import { connect as tcpConnect } from 'node:net';
import type { DescMethodUnary, DescService } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { status } from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// Everything a hostile or broken caller can send, generated from a fixed seed so a failure
// reproduces. Each case must get a clear error that names the bad field (or, for garbage on
// the socket, a closed connection); the process must stay up; and the ledger must not change.

const SEED = 20261123;
let s: TestServer;
let connectBinary: {
  quota: ReturnType<typeof createClient<typeof QuotaService>>;
  admin: ReturnType<typeof createClient<typeof QuotaAdminService>>;
};

beforeAll(async () => {
  s = await startTestServer();
  await s.connect.admin.setQuota({
    subject: 'victim',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 1000n,
  });
  await s.connect.quota.consume({
    subject: 'victim',
    metric: 'api_calls',
    amount: 5n,
    idempotencyKey: 'first',
  });
  const t = createConnectTransport({
    baseUrl: s.baseUrl,
    httpVersion: '1.1',
    useBinaryFormat: true,
  });
  connectBinary = {
    quota: createClient(QuotaService, t),
    admin: createClient(QuotaAdminService, t),
  };
});
afterAll(() => s.close());

async function ledgerState(): Promise<string> {
  const r = await s.database.db.query(
    `SELECT (SELECT count(*) FROM ledger_events) AS events, (SELECT coalesce(sum(used), 0) FROM counters) AS used,
            (SELECT count(*) FROM quotas) AS quotas, (SELECT count(*) FROM subjects) AS subjects`,
  );
  return JSON.stringify(r.rows[0], (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
}

interface Case {
  service: DescService;
  method: DescMethodUnary;
  req: Record<string, unknown>;
  /** The field names the error may start with (any one of the corrupted fields). */
  fields: string[];
}

const bigText = (bytes: number) => 'é'.repeat(Math.ceil(bytes / 2));
const badSubject = fc.constantFrom('', 'a\u0000b', bigText(258), '*');
const badMetricText = [
  'API_CALLS',
  '1abc',
  'a'.repeat(65),
  "x'; DROP TABLE ledger_events; --",
  'métrique',
  'a b',
];
/** For fields where empty means "any" and is therefore valid. */
const badOptionalMetric = fc.constantFrom(...badMetricText);
const badMetric = fc.constantFrom('', ...badMetricText);
const badAmount = fc.oneof(fc.constant(0n), fc.bigInt({ min: -(2n ** 63n), max: 0n }));
const badKey = fc.constantFrom(bigText(300), 'k\u0000');
const badMode = fc.integer({ min: 4, max: 1000 });
const badAttributes = fc.constantFrom<Record<string, string>>(
  Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])),
  { '': 'empty key' },
  { big: 'x'.repeat(1025) },
  { nul: 'a\u0000' },
);
const badZone = fc.constantFrom(
  'Mars/Olympus_Mons',
  "UTC'; DROP TABLE quotas; --",
  'a'.repeat(100),
  '+05:00x',
);
const badAnchor = fc.constantFrom(32, -1, 1000, 2 ** 31 - 1);

/** A valid request with one or more fields replaced by bad values. */
function corrupt(
  service: DescService,
  method: DescMethodUnary,
  valid: Record<string, unknown>,
  bad: Record<string, fc.Arbitrary<unknown>>,
  names: Record<string, string>,
): fc.Arbitrary<Case> {
  const keys = Object.keys(bad);
  return fc.subarray(keys, { minLength: 1 }).chain((chosen) =>
    fc.record(Object.fromEntries(chosen.map((k) => [k, bad[k]!]))).map((values) => ({
      service,
      method,
      req: { ...valid, ...values },
      fields: chosen.map((k) => names[k] ?? k),
    })),
  );
}

const consumeCase = corrupt(
  QuotaService,
  QuotaService.method.consume,
  { subject: 'victim', metric: 'api_calls', amount: 1n },
  {
    subject: badSubject,
    metric: badMetric,
    amount: badAmount,
    idempotencyKey: badKey,
    mode: badMode,
    attributes: badAttributes,
  },
  { idempotencyKey: 'idempotency_key' },
);
const refundCase = corrupt(
  QuotaService,
  QuotaService.method.refund,
  { subject: 'victim', metric: 'api_calls', amount: 1n },
  {
    subject: badSubject,
    metric: badMetric,
    amount: badAmount,
    idempotencyKey: badKey,
    reason: fc.constant(bigText(2000)),
  },
  { idempotencyKey: 'idempotency_key' },
);
const setQuotaCase = corrupt(
  QuotaAdminService,
  QuotaAdminService.method.setQuota,
  { subject: 'victim', metric: 'api_calls', period: Period.MONTH, limit: 10n },
  {
    subject: fc.constantFrom('', 'a\u0000b', bigText(258)),
    metric: badMetric,
    period: fc.constantFrom(0, 5, 99),
    limit: fc.bigInt({ min: -(2n ** 63n), max: -1n }),
    timeZone: badZone,
    anchorDay: badAnchor,
  },
  { timeZone: 'time_zone', anchorDay: 'anchor_day' },
);
const listEventsCase = corrupt(
  QuotaAdminService,
  QuotaAdminService.method.listEvents,
  { subject: 'victim' },
  {
    pageSize: fc.constantFrom(-1, 1001, 2 ** 31 - 1),
    pageToken: fc.oneof(
      fc.constantFrom(
        '!!!',
        'e30',
        Buffer.from('{"a":"1; DROP TABLE x","f":"y"}').toString('base64url'),
      ),
      fc.base64String({ minLength: 4, maxLength: 40 }),
    ),
    types: fc.constant([99]),
    metric: badOptionalMetric,
  },
  { pageSize: 'page_size', pageToken: 'page_token' },
);
const anyCase = fc.oneof(consumeCase, consumeCase, refundCase, setQuotaCase, listEventsCase);
const transport = fc.constantFrom(
  'grpc' as const,
  'connect-json' as const,
  'connect-binary' as const,
);

async function send(
  c: Case,
  via: 'grpc' | 'connect-json' | 'connect-binary',
): Promise<{ code: number; message: string }> {
  try {
    if (via === 'grpc') await s.grpc.call(c.service, c.method, c.req as never);
    else {
      const clients = via === 'connect-json' ? s.connect : connectBinary;
      const client = (c.service === QuotaService
        ? clients.quota
        : clients.admin) as unknown as Record<string, (r: unknown) => Promise<unknown>>;
      await client[c.method.localName]!(c.req);
    }
    return { code: 0, message: 'accepted' };
  } catch (err) {
    if (err instanceof ConnectError) return { code: err.code, message: err.rawMessage };
    const e = err as { code: number; details: string };
    return { code: e.code, message: e.details };
  }
}

describe('hostile input', () => {
  it('gets a clear error naming the field for every generated bad request, on every transport, and writes nothing', async () => {
    const before = await ledgerState();
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(anyCase, transport, async (c, via) => {
        cases++;
        const r = await send(c, via);
        expect(
          r.code,
          `${via} ${c.method.name} ${JSON.stringify(c.req, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`,
        ).toBe(status.INVALID_ARGUMENT);
        const named = c.fields.some((f) => r.message.startsWith(`${f}`));
        expect(named, `"${r.message}" should name one of ${c.fields.join(', ')}`).toBe(true);
      }),
      { numRuns: 240, seed: SEED },
    );
    expect(cases).toBeGreaterThanOrEqual(200);
    expect(await ledgerState()).toBe(before);
  }, 120_000);

  it('treats SQL metacharacters in valid fields as plain text', async () => {
    const before = await ledgerState();
    for (const subject of [
      "' OR '1'='1",
      '"; DROP TABLE ledger_events; --',
      '%_\\',
      "victim' --",
      '$1',
    ]) {
      for (const via of ['grpc', 'connect-json'] as const) {
        const r = await send(
          {
            service: QuotaService,
            method: QuotaService.method.consume,
            req: { subject, metric: 'api_calls', amount: 1n },
            fields: [],
          },
          via,
        );
        expect(r.code).toBe(status.NOT_FOUND);
        expect(r.message).toContain(`"${subject}"`);
      }
    }
    const events = await s.connect.admin.listEvents({ actor: "anonymous' OR '1'='1" });
    expect(events.events).toEqual([]);
    expect(await ledgerState()).toBe(before);
  });

  it('quotes a long bad value without splitting a character, on every transport', async () => {
    // The message quotes the first 80 UTF-16 units; cut there, the emoji would leave half a
    // surrogate pair, which no transport can encode (grpc-message's percent-encoding threw, and
    // the process died of the unhandled rejection).
    const before = await ledgerState();
    const req = { subject: 'victim', metric: 'a'.repeat(79) + '\u{1F600}b', amount: 1n };
    const message = `metric: "${'a'.repeat(79)}" does not match [a-z][a-z0-9_.-]{0,63}`;
    await expect(s.grpc.call(QuotaService, QuotaService.method.consume, req)).rejects.toMatchObject(
      { code: status.INVALID_ARGUMENT, details: message },
    );
    for (const client of [s.connect.quota, s.grpcWeb.quota]) {
      await expect(client.consume(req)).rejects.toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: message,
      });
    }
    // A lone surrogate sent as JSON ("\ud800") and quoted back comes out as U+FFFD, over
    // gRPC-Web's JSON codec too (connect-node percent-encodes its trailer).
    const json = Buffer.from('{"subject":"victim","reservationId":"x\\ud800"}');
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, json.length]), json]);
    const res = await fetch(`${s.baseUrl}/quota.v1.QuotaService/CommitReservation`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+json' },
      body: frame,
    });
    const text = Buffer.from(await res.arrayBuffer()).toString('latin1');
    const grpcStatus = res.headers.get('grpc-status') ?? /grpc-status:\s*(\d+)/.exec(text)?.[1];
    expect(grpcStatus).toBe(String(status.INVALID_ARGUMENT));
    expect(await ledgerState()).toBe(before);
  });

  it('names the field that holds invalid UTF-8 (raw protobuf over gRPC)', async () => {
    const before = await ledgerState();
    const cases: [Buffer, string][] = [
      [Buffer.from([0x0a, 0x02, 0xff, 0xfe, 0x12, 0x01, 0x61, 0x18, 0x01]), 'subject'],
      [Buffer.from([0x0a, 0x01, 0x61, 0x12, 0x02, 0xc3, 0x28, 0x18, 0x01]), 'metric'],
      // attributes map entry {key: 0xff, value: "v"}
      [
        Buffer.from([
          0x0a, 0x01, 0x61, 0x12, 0x01, 0x61, 0x18, 0x01, 0x32, 0x06, 0x0a, 0x01, 0xff, 0x12, 0x01,
          0x76,
        ]),
        'attributes key',
      ],
      [
        Buffer.from([
          0x0a, 0x01, 0x61, 0x12, 0x01, 0x61, 0x18, 0x01, 0x32, 0x06, 0x0a, 0x01, 0x6b, 0x12, 0x01,
          0x80,
        ]),
        'attributes["k"]',
      ],
    ];
    for (const [bytes, field] of cases) {
      await expect(s.grpc.raw('/quota.v1.QuotaService/Consume', bytes)).rejects.toMatchObject({
        code: status.INVALID_ARGUMENT,
        details: `${field}: is not valid UTF-8`,
      });
    }
    const res = await fetch(`${s.baseUrl}/quota.v1.QuotaService/Consume`, {
      method: 'POST',
      headers: { 'content-type': 'application/proto' },
      body: cases[0]![0],
    });
    expect(res.status, await res.clone().text()).toBe(400);
    expect(await res.json()).toMatchObject({
      code: 'invalid_argument',
      message: 'subject: is not valid UTF-8',
    });
    expect(await ledgerState()).toBe(before);
  });

  it('answers random bytes as a request with INVALID_ARGUMENT, never a crash', async () => {
    const before = await ledgerState();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 200 }), async (bytes) => {
        const r = await s.grpc.raw('/quota.v1.QuotaService/Consume', Buffer.from(bytes)).then(
          () => ({ code: 0, details: '' }),
          (e: { code: number; details: string }) => e,
        );
        // Random bytes occasionally decode to a message; validation then refuses it.
        expect([status.INVALID_ARGUMENT, status.NOT_FOUND, status.OUT_OF_RANGE]).toContain(r.code);
      }),
      { numRuns: 60, seed: SEED },
    );
    expect(await ledgerState()).toBe(before);
  });

  it('refuses page tokens and timestamps outside what the database can hold', async () => {
    const token = (a: unknown) => Buffer.from(JSON.stringify({ a, f: 'x' })).toString('base64url');
    const cases: [Record<string, unknown>, string][] = [
      [{ pageToken: token('99999999999999999999') }, 'page_token'],
      [{ pageToken: token('-1') }, 'page_token'],
      [{ startTime: { seconds: 300_000_000_000n, nanos: 0 } }, 'start_time'],
      [{ endTime: { seconds: -70_000_000_000n, nanos: 0 } }, 'end_time'],
    ];
    for (const [req, field] of cases) {
      for (const via of ['grpc', 'connect-json'] as const) {
        const r = await send(
          {
            service: QuotaAdminService,
            method: QuotaAdminService.method.listEvents,
            req,
            fields: [field],
          },
          via,
        );
        expect(r.code).toBe(status.INVALID_ARGUMENT);
        expect(r.message.startsWith(field)).toBe(true);
      }
    }
    const quotaToken = Buffer.from(JSON.stringify({ a: ['a\u0000', 'b', 'c'], f: 'x' })).toString(
      'base64url',
    );
    const r = await send(
      {
        service: QuotaAdminService,
        method: QuotaAdminService.method.listQuotas,
        req: { pageToken: quotaToken },
        fields: [],
      },
      'grpc',
    );
    expect(r).toMatchObject({
      code: status.INVALID_ARGUMENT,
      message: expect.stringMatching(/^page_token/),
    });
  });

  it('refuses an oversized request', async () => {
    const r = await send(
      {
        service: QuotaService,
        method: QuotaService.method.consume,
        req: {
          subject: 'victim',
          metric: 'api_calls',
          amount: 1n,
          attributes: { big: 'x'.repeat(2 << 20) },
        },
        fields: [],
      },
      'grpc',
    );
    expect(r.code).toBe(status.RESOURCE_EXHAUSTED);
    // Over Connect with a plain request (a fresh connection), as any HTTP client would send it.
    const res = await fetch(`${s.baseUrl}/quota.v1.QuotaService/Consume`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        subject: 'victim',
        metric: 'api_calls',
        amount: '1',
        attributes: { big: 'x'.repeat(2 << 20) },
      }),
    });
    expect(await res.json()).toMatchObject({ code: 'resource_exhausted' });
  });

  it('closes connections that send garbage or truncated HTTP/2 frames, and keeps serving', async () => {
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    const payloads = [
      ...fc
        .sample(fc.uint8Array({ minLength: 1, maxLength: 512 }), { numRuns: 20, seed: SEED })
        .map((b) => Buffer.from(b)),
      Buffer.concat([preface, Buffer.from([0x00, 0x00, 0x12, 0x04])]), // a SETTINGS frame cut short
      Buffer.concat([
        preface,
        Buffer.from([0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x41]),
      ]), // oversized frame
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n'),
      Buffer.from('\u0000\u0001\u0002 HTTP/9.9\r\n\r\n'),
    ];
    const closes = (payload: Buffer) =>
      new Promise<boolean>((ok) => {
        const sock = tcpConnect(s.port, '127.0.0.1', () => {
          sock.write(payload);
          sock.end();
        });
        sock.on('data', () => {});
        sock.on('error', () => {});
        sock.on('close', () => ok(true));
        setTimeout(() => {
          sock.destroy();
          ok(false);
        }, 5_000);
      });
    const results = await Promise.all(payloads.map(closes));
    const open = payloads
      .filter((_, i) => !results[i])
      .map((p) => p.subarray(0, 24).toString('hex'));
    expect(open, 'connections left open').toEqual([]);
    const alive = await s.connect.quota.getQuota({ subject: 'victim' });
    expect(alive.quotas[0]!.used).toBe(5n);
  });
});
