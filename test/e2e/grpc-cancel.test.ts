import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConsumeRequest,
  ConsumeRequestSchema,
  ConsumeResponseSchema,
  QuotaService,
} from '../../src/gen/quota/v1/quota_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// A plain gRPC caller that cancels while its Consume waits behind another of the same subject
// gets nothing recorded: the cancellation travels from grpc-js's 'cancelled' event to the group
// committer, which drops the queued call (src/cancellation.ts, src/batching/group-commit.ts).

let s: TestServer;
let client: grpc.Client;

beforeAll(async () => {
  s = await startTestServer();
  client = new grpc.Client(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
  await s.connect.admin.setQuota({
    subject: 'held',
    metric: 'api',
    period: Period.DAY,
    limit: 100n,
  });
});
afterAll(async () => {
  client.close();
  await s.close();
});

type Outcome = { ok: boolean; code?: number };

/** A Consume of `amount` on "held"; `call` cancels it, `done` says how it ended. */
const consume = (amount: bigint) => {
  let settle!: (r: Outcome) => void;
  const done = new Promise<Outcome>((ok) => (settle = ok));
  const call = client.makeUnaryRequest(
    '/quota.v1.QuotaService/Consume',
    (m: ConsumeRequest) => Buffer.from(toBinary(ConsumeRequestSchema, m)),
    (b: Buffer) => fromBinary(ConsumeResponseSchema, b),
    create(ConsumeRequestSchema, { subject: 'held', metric: 'api', amount }),
    (err) => settle(err ? { ok: false, code: err.code } : { ok: true }),
  );
  return { call, done };
};

/** The number of Consume calls the server is working on, from its own gauge. */
async function inFlight(): Promise<number> {
  const text = await (await fetch(`${s.baseUrl}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`quota_rpc_in_flight{method="${QuotaService.typeName}/Consume"`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function until(what: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200 && !(await what()); i++) await new Promise((r) => setTimeout(r, 25));
  expect(await what()).toBe(true);
}

describe('a plain gRPC Consume cancelled by its caller', () => {
  it('while queued behind a running flush of its subject, records nothing', async () => {
    expect((await consume(1n).done).ok).toBe(true);

    // Hold the subject's row so that the next flush blocks in its append.
    const lock = await s.database.owner.connect();
    try {
      await lock.query('BEGIN');
      await lock.query("SELECT 1 FROM subjects WHERE subject = 'held' FOR UPDATE");
      const first = consume(2n);
      await until(async () => {
        const { rows } = await s.database.owner.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND query LIKE '%quota_append%'`,
        );
        return rows[0]!.n === 1;
      });
      // The second waits in the queue: its subject is in the blocked flush.
      const second = consume(3n);
      await until(async () => (await inFlight()) === 2);
      second.call.cancel();
      expect(await second.done).toEqual({ ok: false, code: grpc.status.CANCELLED });
      await until(async () => (await inFlight()) === 1);
      await lock.query('COMMIT');
      expect((await first.done).ok).toBe(true);
    } finally {
      lock.release();
    }

    const q = await s.connect.quota.getQuota({ subject: 'held', metric: 'api' });
    expect(q.quotas[0]!.used).toBe(3n);
    const { rows } = await s.database.owner.query<{ amounts: string[] }>(
      `SELECT array_agg(amount::text ORDER BY sequence) AS amounts FROM ledger_events
        WHERE subject = 'held' AND type = 'USAGE'`,
    );
    expect(rows[0]!.amounts).toEqual(['1', '2']);
  });
});
