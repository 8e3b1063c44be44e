import { performance } from 'node:perf_hooks';
import { ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { ConsumeMode, Period as ProtoPeriod } from '../../src/gen/quota/v1/types_pb.js';
import { createPool, type Db } from '../../src/ledger/db.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import { createQuotaServer, type QuotaServer } from '../../src/server.js';
import { createTestDatabase, defineQuota, TestClock, type TestDatabase } from '../support/db.js';
import {
  checkLinearizable,
  describeHistory,
  minimalFailing,
  type Op,
  type Spec,
} from '../support/linearizability.js';
import { QuotaModel, type Mode, type Period } from '../support/model.js';
import { GrpcCaller } from '../support/server.js';
import { startService, type ServiceProcess } from '../support/process.js';
import { fixedPort } from '../support/ports.js';

// Many clients issue random Consume / ConsumeBatch / Refund / ResetQuota / GetQuota calls
// against several replicas of the service on one database (three in this process, one a real
// process of its own), over gRPC and Connect; the process is killed with SIGKILL and one
// in-process replica shut down without draining in the middle. Every invocation and answer is recorded with its time. Afterwards, for each subject,
// a linearizability check must find an order of the calls that respects real time, in which
// the model (test/support/model.ts) gives every recorded answer, and which ends in exactly the
// counters and ledger the database holds. Calls that got no answer may have happened or not.

const SUBJECTS = ['h0', 'h1', 'h2', 'h3'];
const OPS_PER_SUBJECT = 40;
const CLIENTS = 8;
const REPLICAS = 3;
const NOW = new Date('2026-03-10T12:00:00Z');
const LIMITS: [Period, bigint][] = [
  ['DAY', 7n],
  ['WEEK', 12n],
];

type Input =
  | { k: 'consume'; amount: bigint; mode: Mode; key: string | null }
  | { k: 'refund'; amount: bigint }
  | { k: 'get' }
  | { k: 'reset' };
/** What a call answered, reduced to what the model decides. */
type Output = string;

let database: TestDatabase;
const clock = new TestClock(NOW);
interface Replica {
  name: string;
  /** In-process replicas have a server and a pool; the child-process one a process. */
  server?: QuotaServer;
  db?: Db;
  child?: ServiceProcess;
  grpc: GrpcCaller;
  connect: Client<typeof QuotaService>;
  admin: Client<typeof QuotaAdminService>;
  alive: boolean;
  /** When its hard stop began: calls on it from then on may be cut in any way. */
  stoppedAt?: number;
}
const replicas: Replica[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  for (let i = 0; i < REPLICAS; i++) {
    // Each replica its own pool, as separate processes would have.
    const db = createPool({ connectionString: database.url, max: 4 });
    const server = createQuotaServer({
      db,
      clock,
      addr: { host: '127.0.0.1', port: 0 },
      drainTimeoutMs: 0,
    });
    const { addr } = await server.listen();
    replicas.push({
      name: `replica ${i}`,
      server,
      db,
      grpc: new GrpcCaller(`127.0.0.1:${addr.port}`),
      ...connectClients(`http://127.0.0.1:${addr.port}`),
      alive: true,
    });
  }
  // One more replica as a real process of its own (src/main.ts), to be killed with SIGKILL.
  const port = await fixedPort();
  const child = await startService(
    {
      DATABASE_URL: database.url,
      QUOTA_ADDR: `127.0.0.1:${port}`,
      QUOTA_RESET_ENABLED: 'false',
      LOG_LEVEL: 'info',
      QUOTA_TEST_CLOCK_START: NOW.toISOString(),
    },
    ['--import', './test/support/shifted-clock.ts'],
  );
  replicas.push({
    name: 'process',
    child,
    grpc: new GrpcCaller(`127.0.0.1:${port}`),
    ...connectClients(`http://127.0.0.1:${port}`),
    alive: true,
  });
  for (const subject of SUBJECTS) {
    for (const [period, limit] of LIMITS) {
      await defineQuota({ db: database.db, clock }, { subject, metric: 'm', period, limit });
    }
  }
});
afterAll(async () => {
  for (const r of replicas) {
    r.grpc.close();
    if (r.child && r.child.child.exitCode === null && r.child.child.signalCode === null) {
      r.child.child.kill('SIGKILL');
      await r.child.exited;
    }
    if (r.alive) await r.server?.close();
    await r.db?.end();
  }
  await database?.drop();
});

const connectClients = (baseUrl: string) => {
  const transport = createConnectTransport({ baseUrl, httpVersion: '1.1' });
  return {
    connect: createClient(QuotaService, transport),
    admin: createClient(QuotaAdminService, transport),
  };
};

const big = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);
const PERIOD_OF: Record<number, Period> = {
  [ProtoPeriod.DAY]: 'DAY',
  [ProtoPeriod.WEEK]: 'WEEK',
  [ProtoPeriod.MONTH]: 'MONTH',
  [ProtoPeriod.NEVER]: 'NEVER',
};

// Codes after which the caller cannot know whether the call took effect. (The service never
// answers ABORTED itself; connect-node reports a connection cut mid-call with it.) INTERNAL is
// not among them: the service answering it to a valid call is a failure of its own.
const UNKNOWN_OUTCOME = new Set([
  status.ABORTED,
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.CANCELLED,
  status.UNKNOWN,
]);

interface QuotaLike {
  period: number | Period;
  used: bigint;
  exceeded: boolean;
  periodStart?: { seconds: bigint; nanos: number } | Date | number;
}
const quotasOut = (qs: QuotaLike[]) =>
  qs.map((q) => [
    typeof q.period === 'number' ? PERIOD_OF[q.period] : q.period,
    q.used,
    q.exceeded,
  ]);

/** One call through a replica and transport; the answer reduced to a comparable string. */
async function invoke(r: Replica, transport: 'grpc' | 'connect', subject: string, input: Input) {
  const req =
    input.k === 'consume'
      ? {
          subject,
          metric: 'm',
          amount: input.amount,
          mode: ConsumeMode[input.mode],
          idempotencyKey: input.key ?? '',
        }
      : input.k === 'refund'
        ? { subject, metric: 'm', amount: input.amount }
        : input.k === 'reset'
          ? { subject, metric: 'm', reason: 'history' }
          : { subject, metric: 'm' };
  const service = input.k === 'reset' ? QuotaAdminService : QuotaService;
  const method =
    input.k === 'consume'
      ? QuotaService.method.consume
      : input.k === 'refund'
        ? QuotaService.method.refund
        : input.k === 'reset'
          ? QuotaAdminService.method.resetQuota
          : QuotaService.method.getQuota;
  const client = input.k === 'reset' ? r.admin : r.connect;
  const res: Record<string, unknown> =
    transport === 'grpc'
      ? await r.grpc.call(service, method as never, req as never)
      : await (
          client as unknown as Record<string, (x: object) => Promise<Record<string, unknown>>>
        )[method.localName]!(req);
  const quotas = quotasOut(res.quotas as QuotaLike[]);
  if (input.k === 'consume') return consumeOut(res);
  if (input.k === 'refund') {
    const credited = (res.credited as { period: number; amount: bigint }[]).map((c) => [
      PERIOD_OF[c.period],
      c.amount,
    ]);
    return JSON.stringify([credited, quotas], big);
  }
  return JSON.stringify([quotas], big);
}

const consumeOut = (res: Record<string, unknown>): Output =>
  JSON.stringify(
    [res.allowed, res.recorded, res.replayed, quotasOut(res.quotas as QuotaLike[])],
    big,
  );

/** One ConsumeBatch of usages of one subject: per item, its answer or its error code. */
async function invokeBatch(
  r: Replica,
  transport: 'grpc' | 'connect',
  subject: string,
  inputs: Extract<Input, { k: 'consume' }>[],
): Promise<(Output | number)[]> {
  const req = {
    items: inputs.map((i) => ({
      subject,
      metric: 'm',
      amount: i.amount,
      mode: ConsumeMode[i.mode],
      idempotencyKey: i.key ?? '',
    })),
  };
  const res =
    transport === 'grpc'
      ? await r.grpc.call(QuotaService, QuotaService.method.consumeBatch, req)
      : await r.connect.consumeBatch(req);
  return res.results.map((x) =>
    x.result.case === 'response'
      ? consumeOut(x.result.value as unknown as Record<string, unknown>)
      : (x.result.value?.code ?? status.UNKNOWN),
  );
}

/** The model's answer, reduced the same way. */
function modelStep(m: QuotaModel, subject: string, input: Input): Output {
  const now = NOW.getTime();
  if (input.k === 'consume') {
    const r = m.consume(subject, input.amount, input.mode, input.key, now);
    return r.ok
      ? JSON.stringify(
          [r.value.allowed, r.value.recorded, r.value.replayed, quotasOut(r.value.quotas)],
          big,
        )
      : `error ${r.code}`;
  }
  if (input.k === 'refund') {
    const r = m.refund(subject, input.amount, null, null, now);
    return r.ok
      ? JSON.stringify([r.value.credited, quotasOut(r.value.quotas)], big)
      : `error ${r.code}`;
  }
  if (input.k === 'reset') {
    const r = m.reset(subject, now);
    return r.ok ? JSON.stringify([quotasOut(r.value)], big) : `error ${r.code}`;
  }
  const r = m.getQuota(subject, now);
  return r.ok ? JSON.stringify([quotasOut(r.value)], big) : `error ${r.code}`;
}

const specFor = (subject: string): Spec<QuotaModel, Input, Output> => ({
  init: () => {
    const m = new QuotaModel();
    for (const [period, limit] of LIMITS) m.setQuota(subject, period, limit, 0);
    return m;
  },
  step: (state, input) => {
    const next = state.clone();
    return { state: next, output: modelStep(next, subject, input) };
  },
  matches: (a, b) => a === b,
  key: (s) => s.fingerprint(),
});

describe('a concurrent history against the model', () => {
  it('is linearizable per subject across replicas, transports, a SIGKILL and a hard stop', async () => {
    const rng = fc.sample(fc.integer({ min: 0, max: 1_000_000 }), { numRuns: 4_000, seed: 21 });
    let cursor = 0;
    const rand = (n: number): number => rng[cursor++ % rng.length]! % n;
    const history = new Map<string, Op<Input, Output>[]>(SUBJECTS.map((s) => [s, []]));
    const keysOf = new Map<string, Input[]>(SUBJECTS.map((s) => [s, []]));
    const t0 = performance.now();
    let id = 0;
    let issued = 0;
    const total = SUBJECTS.length * OPS_PER_SUBJECT;
    const stops: Promise<unknown>[] = [];
    // A third of the way in the process replica is killed (SIGKILL); two thirds in, an
    // in-process one is shut down with no time to drain. Each with a call of ours in flight.
    const stopAt = new Map([
      [Math.floor(total / 3), 'process'],
      [Math.floor((2 * total) / 3), 'replica 1'],
    ]);
    const stop = (r: Replica): void => {
      r.alive = false;
      r.stoppedAt = performance.now();
      if (r.child) {
        r.child.child.kill('SIGKILL');
        stops.push(r.child.exited);
      } else {
        stops.push(r.server!.close());
      }
    };

    const nextInput = (subject: string, consumeOnly = false): Input => {
      const roll = consumeOnly ? 12 + rand(60) : rand(100);
      const previous = keysOf.get(subject)!;
      if (roll < 12 && previous.length > 0) return previous[rand(previous.length)]!; // exact retry
      if (roll < 72) {
        const mode: Mode = (['ENFORCE', 'ENFORCE', 'ENFORCE', 'RECORD', 'DRY_RUN'] as const)[
          rand(5)
        ]!;
        const input: Input = {
          k: 'consume',
          amount: BigInt(1 + rand(3)),
          mode,
          // Items of one ConsumeBatch share the id, so their keys may collide with another
          // amount (ALREADY_EXISTS) on purpose.
          key: rand(2) === 0 ? `${subject}-k${id}` : null,
        };
        if (input.key) previous.push(input);
        return input;
      }
      if (roll < 87) return { k: 'refund', amount: BigInt(1 + rand(5)) };
      if (roll < 92) return { k: 'reset' };
      return { k: 'get' };
    };

    const client = async (c: number): Promise<void> => {
      while (issued < total) {
        issued++;
        const open = SUBJECTS.filter((s) => history.get(s)!.length < OPS_PER_SUBJECT);
        if (open.length === 0) return;
        const subject = open[rand(open.length)]!;
        // One call in ten is a ConsumeBatch of two or three usages; each item is an operation.
        const batch = rand(10) === 0;
        const inputs = Array.from({ length: batch ? 2 + rand(2) : 1 }, () =>
          nextInput(subject, batch),
        );
        const alive = replicas.filter((r) => r.alive);
        const victim = replicas.find((r) => r.alive && r.name === stopAt.get(issued));
        const replica = victim ?? alive[rand(alive.length)]!;
        const transport = rand(2) === 0 ? 'grpc' : 'connect';
        const call = performance.now();
        const ops = inputs.map((input): Op<Input, Output> => ({
          id: ++id,
          client: `client ${c} via ${replica.name} ${transport}${batch ? ' ConsumeBatch' : ''}`,
          input,
          call,
          ret: null,
          output: null,
        }));
        history.get(subject)!.push(...ops);
        // An error is a definite answer only from a replica not being stopped: a call on one
        // being stopped can fail in any way (a connection cut mid-answer is INTERNAL to
        // connect-node), so its outcome is unknown, whatever the code says.
        const settle = (op: Op<Input, Output>, answer: Output | number, at: number): void => {
          if (typeof answer === 'string') {
            op.output = answer;
            op.ret = at;
          } else if (replica.stoppedAt === undefined && !UNKNOWN_OUTCOME.has(answer)) {
            op.output = `error ${status[answer]}`;
            op.ret = at;
          }
        };
        try {
          const answers = batch
            ? invokeBatch(replica, transport, subject, inputs as Extract<Input, { k: 'consume' }>[])
            : invoke(replica, transport, subject, inputs[0]!).then((a) => [a]);
          if (victim) stop(victim);
          const got = await answers;
          const at = performance.now();
          ops.forEach((op, i) => settle(op, got[i]!, at));
        } catch (err) {
          const code =
            err instanceof ConnectError ? err.code : ((err as { code?: number }).code ?? -1);
          const at = performance.now();
          if (code !== -1) for (const op of ops) settle(op, code as number, at);
        }
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    await Promise.all(stops);
    for (const r of replicas.filter((x) => x.alive && x.server))
      await r.server!.close().then(() => (r.alive = false));
    expect(replicas.filter((r) => r.stoppedAt !== undefined).map((r) => r.name)).toEqual([
      'replica 1',
      'process',
    ]);

    const reports: string[] = [];
    for (const subject of SUBJECTS) {
      const ops = history.get(subject)!;
      const { rows } = await database.db.query<{ period: Period; used: string }>(
        `SELECT period, used::text FROM counters WHERE subject = $1 ORDER BY period`,
        [subject],
      );
      const stored = Object.fromEntries(rows.map((r) => [r.period, BigInt(r.used)]));
      const ev = await database.db.query<{ type: string; n: number }>(
        `SELECT type, count(*)::int AS n FROM ledger_events WHERE subject = $1 GROUP BY type`,
        [subject],
      );
      const events = Object.fromEntries(ev.rows.map((r) => [r.type, r.n]));
      const ledger = JSON.stringify(
        {
          used: stored,
          usage: events.USAGE ?? 0,
          refund: events.REFUND ?? 0,
          reset: events.RESET_MANUAL ?? 0,
        },
        big,
      );
      const implied = (m: QuotaModel) => {
        const e = m.events(subject);
        return JSON.stringify(
          {
            used: Object.fromEntries(
              m
                .counters(subject)
                .map(([p, used]) => [p, used])
                .sort(),
            ),
            usage: e.USAGE ?? 0,
            refund: e.REFUND ?? 0,
            reset: e.RESET_MANUAL ?? 0,
          },
          big,
        );
      };
      const spec = specFor(subject);
      const result = checkLinearizable(ops, spec, (m) => implied(m) === ledger);
      if (!result.ok) {
        const min = minimalFailing(ops, spec);
        reports.push(
          min
            ? `${subject}: no linearization; smallest failing part of the history:\n${describeHistory(min, t0)}`
            : `${subject}: the answers linearize, but no linearization ends in the ledger there is (${ledger});` +
                ` ${result.reason === 'budget' ? '(search budget spent) ' : ''}history:\n${describeHistory(ops, t0)}`,
        );
      }
      expect((await verifyProjection(database.db, { subject })).differences).toEqual([]);
    }
    expect(reports.join('\n\n')).toBe('');
    // The run did what it is for: answers on both transports, denials, and calls cut by the stop.
    const all = [...history.values()].flat();
    if (process.env.HISTORY_STATS)
      console.log({
        ops: all.length,
        unanswered: all.filter((o) => o.ret === null).length,
        errors: all.filter((o) => o.output?.startsWith('error')).length,
        denied: all.filter((o) => o.output?.startsWith('[false')).length,
        replayed: all.filter((o) => o.output?.startsWith('[true,true,true')).length,
        grpc: all.filter((o) => o.client.includes('grpc')).length,
        batched: all.filter((o) => o.client.includes('ConsumeBatch')).length,
        viaProcess: all.filter((o) => o.client.includes('via process')).length,
        maxOverlap: Math.max(
          ...all.map(
            (o) => all.filter((p) => p.call <= o.call && (p.ret ?? Infinity) >= o.call).length,
          ),
        ),
      });
    expect(all.length).toBeGreaterThanOrEqual(total);
    expect(all.filter((o) => o.output?.startsWith('[false')).length).toBeGreaterThan(0);
  }, 60_000);
});
