import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  QuotaAdminService,
  type StreamEventsResponse,
} from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { StreamEventsRequestSchema } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// StreamEvents on every transport: the backlog, then new events as they commit, heartbeats
// while idle, and a stream cut in the middle resumed from its last position misses nothing.

let s: TestServer;
let web: Client<typeof QuotaAdminService>;
type Req = MessageInitShape<typeof StreamEventsRequestSchema>;

beforeAll(async () => {
  s = await startTestServer();
  web = createClient(
    QuotaAdminService,
    createGrpcWebTransport({ baseUrl: s.baseUrl, httpVersion: '1.1' }),
  );
  await s.connect.admin.setQuota({
    subject: 'acme',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 1000n,
    reason: 's',
  });
});
afterAll(() => s.close());

const use = (n = 1) =>
  Promise.all(
    Array.from({ length: n }, () =>
      s.connect.quota.consume({ subject: 'acme', metric: 'api_calls', amount: 1n }),
    ),
  );

const TRANSPORTS = {
  grpc: (req: Req, signal: AbortSignal) => {
    const it = s.grpc.stream(QuotaAdminService, QuotaAdminService.method.streamEvents, req);
    signal.addEventListener('abort', () => void it.return(undefined));
    return it;
  },
  connect: (req: Req, signal: AbortSignal) => s.connect.admin.streamEvents(req, { signal }),
  'grpc-web': (req: Req, signal: AbortSignal) => web.streamEvents(req, { signal }),
};

/** Reads until `until` says enough, then cancels the stream. */
async function read(
  via: keyof typeof TRANSPORTS,
  req: Req,
  until: (got: StreamEventsResponse[]) => boolean,
  meanwhile: () => Promise<unknown> = async () => {},
): Promise<StreamEventsResponse[]> {
  const ac = new AbortController();
  const got: StreamEventsResponse[] = [];
  const timer = setTimeout(() => ac.abort(), 15_000);
  try {
    const stream = TRANSPORTS[via](req, ac.signal) as AsyncIterable<StreamEventsResponse>;
    let started = false;
    for await (const m of stream) {
      got.push(m);
      if (!started) {
        started = true;
        void meanwhile();
      }
      if (until(got)) break;
    }
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return got;
}

const positions = (got: StreamEventsResponse[]) =>
  got.flatMap((m) => (m.item.case === 'event' ? [m.item.value.position] : []));

describe('StreamEvents', () => {
  for (const via of Object.keys(TRANSPORTS) as (keyof typeof TRANSPORTS)[]) {
    it(`sends the backlog, then new events as they commit, then heartbeats (${via})`, async () => {
      await use(2);
      const before = (await s.connect.admin.listEvents({ subject: 'acme', pageSize: 1000 })).events;
      const got = await read(
        via,
        { subject: 'acme', heartbeatSeconds: 1 },
        (g) => positions(g).length >= before.length + 3 && g.at(-1)!.item.case === 'heartbeat',
        () => use(3),
      );
      const after = (await s.connect.admin.listEvents({ subject: 'acme', pageSize: 1000 })).events;
      expect(positions(got)).toEqual(after.map((e) => e.position));
      expect(got.at(-1)!.item.case).toBe('heartbeat');
    });
  }

  it('from now on: only what commits after the call', async () => {
    // The first heartbeat shows the stream is open; the write comes after it.
    const got = await read(
      'connect',
      { fromNow: true, heartbeatSeconds: 1 },
      (g) => positions(g).length >= 1,
      () => use(1),
    );
    const newest = (await s.connect.admin.listEvents({ newestFirst: true, pageSize: 1 })).events;
    expect(got[0]!.item.case).toBe('heartbeat');
    expect(positions(got)).toEqual([newest[0]!.position]);
  });

  it('resumed from the last position of a cut stream, misses nothing and repeats nothing', async () => {
    const first = await read('grpc', {}, (g) => positions(g).length >= 5);
    const last = positions(first).at(-1)!;
    const writing = use(20);
    const rest = await read(
      'connect',
      { afterPosition: last, heartbeatSeconds: 1 },
      (g) => g.at(-1)!.item.case === 'heartbeat',
      () => writing,
    );
    await writing;
    const all = (await s.connect.admin.listEvents({ pageSize: 1000 })).events;
    const seen = [...positions(first), ...positions(rest)];
    // A heartbeat means caught up; anything committed after it comes in a later poll.
    expect(seen).toEqual(all.map((e) => e.position).slice(0, seen.length));
    expect(seen.length).toBeGreaterThanOrEqual(all.length - 20);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('refuses bad requests before the first message, naming the field', async () => {
    for (const [req, field] of [
      [{ heartbeatSeconds: 301 }, 'heartbeat_seconds'],
      [{ afterPosition: 999_999n }, 'after_position'],
      [{ subject: 'x'.repeat(1000) }, 'subject'],
    ] as const) {
      const err = await read('connect', req, () => true).then(
        () => null,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.InvalidArgument);
      expect(err?.rawMessage.startsWith(field)).toBe(true);
      const grpcErr = await read('grpc', req, () => true).then(
        () => null,
        (e: { code: number; details: string }) => e,
      );
      expect(grpcErr?.code).toBe(3);
      expect(grpcErr?.details.startsWith(field)).toBe(true);
    }
  });
});
