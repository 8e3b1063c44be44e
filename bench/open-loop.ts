// `npm run bench:open-loop`: one service process (`dist/`, so `npm run build` first) at a fixed
// rate of unary Consume, alone: its CPU per call and the latency percentiles, in under a
// minute. For comparing settings of the process itself at the same load, e.g. V8 flags with
// their effect on garbage collection: BENCH_NODE_FLAGS="--trace-gc" BENCH_SERVICE_OUTPUT=file
// keeps V8's trace of every collection (docs/benchmarks.md, ninth round).
//
// Settings: BENCH_RATE (1,000 calls/s), BENCH_SECONDS (15), BENCH_WARMUP (8 s of 64 closed-loop
// callers first), BENCH_SUBJECTS (10,000), BENCH_BATCH (0: unary Consume; n: ConsumeBatch calls
// of n items, CPU then also per item), BENCH_METHOD (consume, or get-quota: GetQuota of one
// subject instead of unary Consume). Needs DATABASE_URL or starts embedded PostgreSQL.
import { create, toBinary } from '@bufbuild/protobuf';
import {
  ConsumeBatchRequestSchema,
  ConsumeRequestSchema,
  GetQuotaRequestSchema,
} from '../src/gen/quota/v1/quota_service_pb.js';
import { createPool } from '../src/ledger/db.js';
import { seedQuotas } from './checks.js';
import { benchDatabase } from './db.js';
import { closedLoop, openLoop, percentiles } from './load.js';
import { cpuSeconds } from './proc.js';
import { channels, prefill, startService, unary } from './service.js';

const RATE = Number(process.env.BENCH_RATE ?? 1_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 8);
const SUBJECTS = Number(process.env.BENCH_SUBJECTS ?? 10_000);
const BATCH = Number(process.env.BENCH_BATCH ?? 0);
const CONSUME = '/quota.v1.QuotaService/Consume';
const CONSUME_BATCH = '/quota.v1.QuotaService/ConsumeBatch';
const GET_QUOTA = '/quota.v1.QuotaService/GetQuota';
const READS = process.env.BENCH_METHOD === 'get-quota';
if (READS && BATCH > 0) throw new Error('BENCH_METHOD=get-quota takes no BENCH_BATCH');

process.env.BENCH_DIST = '1';
const database = await benchDatabase();
const db = createPool({ connectionString: database.url, max: 2 });
let server: Awaited<ReturnType<typeof startService>> | null = null;
let conns: ReturnType<typeof channels> = [];
try {
  server = await startService(database.url, null);
  conns = channels(server.port, 8);
  await seedQuotas(db);
  const subjects = Array.from({ length: SUBJECTS }, (_, i) => `tenant-${i}`);
  // Every subject's rows first, as `npm run bench` does.
  await prefill(server.port, subjects);
  const random = () => subjects[Math.floor(Math.random() * SUBJECTS)]!;
  // Requests encoded in advance and picked at random: one per subject, or 500 batches.
  const requests = Array.from({ length: BATCH > 0 ? 500 : SUBJECTS }, (_, i) =>
    Buffer.from(
      BATCH > 0
        ? toBinary(
            ConsumeBatchRequestSchema,
            create(ConsumeBatchRequestSchema, {
              items: Array.from({ length: BATCH }, () => ({
                subject: random(),
                metric: 'requests',
                amount: 1n,
              })),
            }),
          )
        : READS
          ? toBinary(GetQuotaRequestSchema, create(GetQuotaRequestSchema, { subject: subjects[i] }))
          : toBinary(
              ConsumeRequestSchema,
              create(ConsumeRequestSchema, {
                subject: subjects[i],
                metric: 'requests',
                amount: 1n,
              }),
            ),
    ),
  );
  const call = (n: number) =>
    unary(
      conns[n % conns.length]!,
      BATCH > 0 ? CONSUME_BATCH : READS ? GET_QUOTA : CONSUME,
      requests[Math.floor(Math.random() * requests.length)]!,
    );
  await closedLoop(64, 0, WARMUP, async (w) => (await call(w), 1));
  await db.query('CHECKPOINT').catch(() => {});
  const pid = server.child.pid!;
  const cpu0 = cpuSeconds(pid);
  const r = await openLoop(RATE, 0, SECONDS, async (_w, n) => (await call(n), 1));
  const cpu1 = cpuSeconds(pid);
  const p = percentiles(r.latenciesMs);
  const perCall = cpu0 === null || cpu1 === null ? null : ((cpu1 - cpu0) / r.calls) * 1e6;
  const cpu =
    perCall === null
      ? '-'
      : `${perCall.toFixed(0)} µs CPU a call` +
        (BATCH > 0 ? ` (${(perCall / BATCH).toFixed(1)} an item)` : '');
  console.log(
    `${r.calls} calls at ${RATE}/s: server ${cpu}, ` +
      `p50 ${p.p50.toFixed(2)} p99 ${p.p99.toFixed(2)} p999 ${p.p999.toFixed(2)} ms, ${r.errors} errors`,
  );
} finally {
  for (const c of conns) c.close();
  await server?.stop();
  await db.end();
  await database.cleanup();
}
