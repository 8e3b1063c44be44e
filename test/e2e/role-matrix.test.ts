import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DescMethod, DescService } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore, readKeyFile, ROLES, type Role } from '../../src/auth/api-keys.js';
import { createKey } from '../../src/auth/key-file.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { consume } from '../../src/ledger/consume.js';
import { reserve } from '../../src/ledger/reservation.js';
import { consumeCommand, defineQuota } from '../support/db.js';
import { allMethodNames, EXPECTED_ROLES, SERVICES } from '../support/roles.js';
import { startTestServer, type TestServer } from '../support/server.js';

// Every method of every mounted service, called by every role (and without a key, and with a
// key that is not in the file), over gRPC and Connect, against a real server with a keys file.
// An allowed call must succeed; a refused one must be refused with the right code and leave
// every table exactly as it was.

type Caller = Role | 'no key' | 'bad key';
const CALLERS: readonly Caller[] = [...ROLES, 'no key', 'bad key'];
const TRANSPORTS = ['grpc', 'connect'] as const;

/**
 * A valid request for each method, about a subject that has a DAY quota of 10 on api_calls and
 * one usage (key "u1") already, so that any call let through would really change something.
 */
const REQUESTS: Record<string, (subject: string) => object> = {
  'quota.v1.QuotaService/Consume': (subject) => ({ subject, metric: 'api_calls', amount: 1n }),
  'quota.v1.QuotaService/ConsumeBatch': (subject) => ({
    items: [{ subject, metric: 'api_calls', amount: 1n }],
  }),
  // Naming the usage: a refund that names none is an admin operation (key-scopes.test.ts).
  'quota.v1.QuotaService/Refund': (subject) => ({
    subject,
    metric: 'api_calls',
    amount: 1n,
    usageIdempotencyKey: 'u1',
  }),
  'quota.v1.QuotaService/GetQuota': (subject) => ({ subject }),
  'quota.v1.QuotaService/Reserve': (subject) => ({
    subject,
    metric: 'api_calls',
    amount: 1n,
    ttl: { seconds: 60n, nanos: 0 },
  }),
  'quota.v1.QuotaService/CommitReservation': (subject) => ({
    subject,
    reservationId: holds.get(subject),
    amount: 1n,
  }),
  'quota.v1.QuotaService/CancelReservation': (subject) => ({
    subject,
    reservationId: holds.get(subject),
  }),
  'quota.v1.QuotaAdminService/SetQuota': (subject) => ({
    subject,
    metric: 'api_calls',
    period: Period.DAY,
    limit: 5n,
  }),
  'quota.v1.QuotaAdminService/DeleteQuota': (subject) => ({
    subject,
    metric: 'api_calls',
    period: Period.DAY,
  }),
  'quota.v1.QuotaAdminService/ResetQuota': (subject) => ({ subject, reason: 'matrix' }),
  'quota.v1.QuotaAdminService/ListQuotas': (subject) => ({ subject }),
  'quota.v1.QuotaAdminService/ListEvents': (subject) => ({ subject }),
  'quota.v1.QuotaAdminService/ListResetRuns': () => ({}),
  'quota.v1.QuotaAdminService/TriggerResetSweep': () => ({}),
  'quota.v1.QuotaAdminService/GetResetStatus': () => ({}),
  'quota.v1.QuotaAdminService/BacktestQuota': (subject) => ({
    subject,
    metric: 'api_calls',
    quotas: [{ period: Period.DAY, limit: 1n }],
    startTime: { seconds: 0n, nanos: 0 },
    endTime: { seconds: 4_000_000_000n, nanos: 0 },
  }),
  // Allowed, the stream's first progress message comes after the first page.
  'quota.v1.QuotaAdminService/BacktestQuotaStream': (subject) => ({
    subject,
    metric: 'api_calls',
    quotas: [{ period: Period.DAY, limit: 1n }],
    startTime: { seconds: 0n, nanos: 0 },
    endTime: { seconds: 4_000_000_000n, nanos: 0 },
  }),
  'quota.v1.QuotaAdminService/VerifyProjection': (subject) => ({ subject, repair: true }),
  'quota.v1.QuotaAdminService/VerifyLedger': (subject) => ({ subject }),
  // The subject has events, so an allowed stream answers with one at once.
  'quota.v1.QuotaAdminService/StreamEvents': (subject) => ({ subject }),
  // An allowed stream ends with its result message at least.
  'quota.v1.QuotaAdminService/VerifyLedgerStream': (subject) => ({ subject }),
  'quota.v1.QuotaAdminService/WhoAmI': () => ({}),
};

/** The open reservation (of 1) each fresh subject has, by subject. */
const holds = new Map<string, string>();

let dir: string;
let s: TestServer;
const keys: Partial<Record<Caller, string>> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quota-matrix-'));
  const file = join(dir, 'keys.json');
  for (const role of ROLES) keys[role] = await createKey(file, `${role}-key`, role);
  keys['bad key'] = 'qlk_this-key-is-in-no-file';
  const store = new KeyStore(readKeyFile(file));
  s = await startTestServer({ authenticate: store.authenticate.bind(store) });
});
afterAll(async () => {
  await s?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Everything a call could change, as one comparable value. */
async function snapshot(): Promise<unknown> {
  const { rows } = await s.database.db.query(`SELECT
    (SELECT count(*) FROM ledger_events)::int AS events,
    (SELECT coalesce(max(position), 0) FROM ledger_events)::text AS position,
    (SELECT coalesce(string_agg(c::text, '|' ORDER BY subject, metric, period), '') FROM counters c) AS counters,
    (SELECT coalesce(string_agg(q::text, '|' ORDER BY subject, metric, period), '') FROM quotas q) AS quotas,
    (SELECT coalesce(string_agg(x::text, '|' ORDER BY subject), '') FROM subjects x) AS subjects,
    (SELECT coalesce(string_agg(r::text, '|' ORDER BY subject, reservation_id), '') FROM reservations r) AS holds,
    (SELECT count(*) FROM reset_runs)::int AS runs`);
  return rows[0];
}

/** The outcome of one call: 'ok' or the status code, the same numbers on both transports. */
async function call(
  transport: (typeof TRANSPORTS)[number],
  service: DescService,
  method: DescMethod,
  req: object,
  caller: Caller,
): Promise<number | 'ok'> {
  const key = keys[caller];
  if (method.methodKind === 'server_streaming')
    return firstMessage(transport, service, method, req, key);
  if (transport === 'grpc') {
    const md: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
    return s.grpc.call(service, method as never, req as never, md).then(
      () => 'ok' as const,
      (e: { code?: number }) => {
        if (typeof e.code !== 'number') throw e;
        return e.code;
      },
    );
  }
  const client = createClient(
    service,
    createConnectTransport({
      baseUrl: s.baseUrl,
      httpVersion: '1.1',
      interceptors: key
        ? [(next) => (r) => (r.header.set('authorization', `Bearer ${key}`), next(r))]
        : [],
    }),
  ) as unknown as Record<string, (r: object) => Promise<unknown>>;
  return client[method.localName]!(req).then(
    () => 'ok' as const,
    (e: unknown) => {
      if (!(e instanceof ConnectError)) throw e;
      return e.code as number;
    },
  );
}

/** A streaming call's outcome: 'ok' once its first message arrives (then it is cancelled). */
async function firstMessage(
  transport: (typeof TRANSPORTS)[number],
  service: DescService,
  method: DescMethod,
  req: object,
  key: string | undefined,
): Promise<number | 'ok'> {
  const header: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  const ac = new AbortController();
  try {
    const stream =
      transport === 'grpc'
        ? s.grpc.stream(service, method as never, req as never, header)
        : (
            createClient(
              service,
              createConnectTransport({ baseUrl: s.baseUrl, httpVersion: '1.1' }),
            ) as unknown as Record<string, (r: object, o: object) => AsyncIterable<unknown>>
          )[method.localName]!(req, { headers: header, signal: ac.signal });
    for await (const _ of stream) return 'ok';
    return 'ok';
  } catch (e) {
    if (e instanceof ConnectError) return e.code as number;
    if (typeof (e as { code?: unknown }).code === 'number') return (e as { code: number }).code;
    throw e;
  } finally {
    ac.abort();
  }
}

let n = 0;
async function freshSubject(): Promise<string> {
  const subject = `matrix-${++n}`;
  const deps = s.server.deps;
  await defineQuota(deps, { subject, period: 'DAY', limit: 10n });
  await consume(deps, consumeCommand(subject, { idempotencyKey: 'u1' }), 'fixture');
  const r = await reserve(
    deps,
    {
      subject,
      metric: 'api_calls',
      amount: 1n,
      ttlMs: 60_000,
      idempotencyKey: null,
      attributes: {},
    },
    'fixture',
  );
  holds.set(subject, r.reservationId!);
  return subject;
}

describe('role × method matrix', () => {
  it('decides the roles of every method in the service descriptors, and of nothing else', () => {
    const methods = allMethodNames();
    const undecided = methods.filter((m) => !(m in EXPECTED_ROLES));
    expect(undecided, 'methods without a role decision in test/support/roles.ts').toEqual([]);
    expect(Object.keys(EXPECTED_ROLES).filter((m) => !methods.includes(m))).toEqual([]);
    const noRequest = methods.filter((m) => !(m in REQUESTS));
    expect(noRequest, 'methods without a request in REQUESTS of this file').toEqual([]);
  });

  for (const service of SERVICES) {
    for (const method of service.methods) {
      const name = `${service.typeName}/${method.name}`;
      it(`${name}: each caller on both transports`, async () => {
        const allowed = EXPECTED_ROLES[name];
        const request = REQUESTS[name];
        expect(allowed && request, `${name} has no role decision or no request`).toBeTruthy();
        const seen: string[] = [];
        const want: string[] = [];
        for (const transport of TRANSPORTS) {
          for (const caller of CALLERS) {
            const subject = await freshSubject();
            const before = await snapshot();
            const got = await call(transport, service, method, request!(subject), caller);
            const expected =
              caller === 'no key' || caller === 'bad key'
                ? status.UNAUTHENTICATED
                : allowed!.includes(caller)
                  ? 'ok'
                  : status.PERMISSION_DENIED;
            seen.push(`${transport} ${caller}: ${got}`);
            want.push(`${transport} ${caller}: ${expected}`);
            if (expected !== 'ok') {
              expect(await snapshot(), `${transport} ${caller} was refused but wrote`).toEqual(
                before,
              );
            }
          }
        }
        expect(seen).toEqual(want);
      });
    }
  }

  it('refuses with the same codes on Connect as the gRPC numbers', () => {
    expect(Code.PermissionDenied as number).toBe(status.PERMISSION_DENIED);
    expect(Code.Unauthenticated as number).toBe(status.UNAUTHENTICATED);
  });
});
