// npm run bench — the service against a raw-SQL baseline, in one run on one machine.
// Settings (environment): BENCH_CLIENTS (64), BENCH_SUBJECTS (10000), BENCH_SECONDS (10 per
// phase), BENCH_WARMUP (2), BENCH_ROUNDS (1; figures are medians over rounds), BENCH_BATCH
// (100 items per ConsumeBatch), BENCH_CHANNELS (8 HTTP/2 connections), BENCH_JSON (where the
// JSON goes), BENCH_CPU_PROF (a directory: profile the server with --cpu-prof), DATABASE_URL,
// BENCH_NO_CHAIN=1 (without the hash-chain trigger, to measure its cost), BENCH_DIST=1 (the
// service compiled by `npm run build` and run as `npm run start:dist` does, without tsx),
// BENCH_SERVICE_WARMUP (8: seconds of every kind of service call before the first round).
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { create, toBinary } from '@bufbuild/protobuf';
import { status } from '@grpc/grpc-js';
import {
  ConsumeBatchRequestSchema,
  ConsumeRequestSchema,
  GetQuotaRequestSchema,
} from '../src/gen/quota/v1/quota_service_pb.js';
import { createPool } from '../src/ledger/db.js';
import { baselineConsume, baselinePool, checkBaseline, createBaselineTables } from './baseline.js';
import { benchDatabase } from './db.js';
import { closedLoop, openLoop, percentiles, type Call, type LoadResult } from './load.js';
import { summarize, type PhaseFigures } from './report.js';
import { cpuSeconds, cpuTimes, groupCommitTotals, postgresCpuSeconds, watchRss } from './proc.js';
import {
  channels,
  prefill,
  startReference,
  startService,
  unary,
  type ServiceUnderTest,
} from './service.js';
import { checkService, contentionCheck, seedQuotas } from './checks.js';

const env = (name: string, def: number): number => {
  const v = Number(process.env[name] ?? def);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};
const CLIENTS = env('BENCH_CLIENTS', 64);
const SUBJECTS = env('BENCH_SUBJECTS', 10_000);
const SECONDS = env('BENCH_SECONDS', 10);
const WARMUP = env('BENCH_WARMUP', 2);
const ROUNDS = env('BENCH_ROUNDS', 1);
const BATCH = env('BENCH_BATCH', 100);
const CHANNELS = env('BENCH_CHANNELS', 8);
const SERVICE_WARMUP = env('BENCH_SERVICE_WARMUP', 8);
// A comma-separated list of phases to run (for profiling one of them); all by default.
const ONLY = process.env.BENCH_ONLY?.split(',').map((p) => p.trim()) ?? null;

const skipped = (phase: string): PhaseFigures => ({
  phase,
  eventsPerSec: NaN,
  callsPerSec: NaN,
  p50Ms: NaN,
  p99Ms: NaN,
  p999Ms: NaN,
  errors: 0,
  serverCpuUsPerCall: null,
  serverCpuUsPerEvent: null,
  serverRssMb: null,
  serverSystemShare: null,
  loadGenCores: 0,
  dbCores: null,
  callsPerFlush: null,
  msPerFlush: null,
});

const CONSUME = '/quota.v1.QuotaService/Consume';
const CONSUME_BATCH = '/quota.v1.QuotaService/ConsumeBatch';
const GET_QUOTA = '/quota.v1.QuotaService/GetQuota';
const HEALTH_CHECK = '/grpc.health.v1.Health/Check';
const METRIC = 'requests';
const subjectName = (i: number): string => `tenant-${i}`;
const pick = (): number => Math.floor(Math.random() * SUBJECTS);

/**
 * Runs before every phase (see main): waits for autovacuum workers, then VACUUM (ANALYZE) and a
 * CHECKPOINT, so that each phase starts with the database quiet. Otherwise the vacuum of one
 * phase's rows and a checkpoint started by its writes (in the seventh round's run, one ran on
 * for four and a half minutes) ran during the phases after it, charging them for it.
 */
let settle = async (): Promise<void> => {};

/** Runs one phase and measures everything around it. */
async function measure(
  phase: string,
  server: ServiceUnderTest | null,
  run: () => Promise<LoadResult>,
): Promise<PhaseFigures> {
  if (ONLY && !ONLY.includes(phase.replace(/@\d+\/s$/, '@half'))) {
    return skipped(phase);
  }
  await settle();
  const pid = server?.child.pid ?? null;
  // Read before the CPU counters start and after they stop: a scrape costs the server CPU.
  const flushes0 = server ? await groupCommitTotals(server.port) : null;
  const cpu0 = pid ? cpuSeconds(pid) : null;
  const times0 = pid ? cpuTimes(pid) : null;
  const db0 = postgresCpuSeconds();
  const gen0 = process.cpuUsage();
  const t0 = performance.now();
  const rss = pid ? watchRss(pid) : null;
  const r = await run();
  const wall = (performance.now() - t0) / 1000;
  const gen = process.cpuUsage(gen0);
  const cpu1 = pid ? cpuSeconds(pid) : null;
  const times1 = pid ? cpuTimes(pid) : null;
  const db1 = postgresCpuSeconds();
  const peak = rss?.stop() ?? null;
  const flushes1 = server ? await groupCommitTotals(server.port) : null;
  // CPU is measured over the whole phase (warm-up too), so per-call figures divide by every
  // call made; wall-clock shares use the whole phase as well.
  const totalCalls = r.calls / (r.seconds / wall);
  const serverCpu = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
  const p = percentiles(r.latenciesMs);
  const figures: PhaseFigures = {
    phase,
    eventsPerSec: r.events / r.seconds,
    callsPerSec: r.calls / r.seconds,
    p50Ms: p.p50,
    p99Ms: p.p99,
    p999Ms: p.p999,
    errors: r.errors,
    serverCpuUsPerCall: serverCpu === null ? null : (serverCpu / totalCalls) * 1e6,
    serverCpuUsPerEvent:
      serverCpu === null
        ? null
        : (serverCpu / (totalCalls * (r.events / Math.max(1, r.calls)))) * 1e6,
    serverRssMb: peak === null ? null : peak / 2 ** 20,
    serverSystemShare:
      times0 && times1
        ? (times1.system - times0.system) /
          Math.max(1e-9, times1.system - times0.system + times1.user - times0.user)
        : null,
    loadGenCores: (gen.user + gen.system) / 1e6 / wall,
    // Ended backends count through the postmaster (proc.ts); a database restarted
    // mid-phase gives no figure.
    dbCores: db0 !== null && db1 !== null && db1 >= db0 ? (db1 - db0) / wall : null,
    callsPerFlush:
      flushes0 && flushes1 && flushes1.flushes > flushes0.flushes
        ? (flushes1.calls - flushes0.calls) / (flushes1.flushes - flushes0.flushes)
        : null,
    msPerFlush:
      flushes0 && flushes1 && flushes1.flushes > flushes0.flushes
        ? ((flushes1.seconds - flushes0.seconds) / (flushes1.flushes - flushes0.flushes)) * 1e3
        : null,
  };
  console.log(
    `  ${phase.padEnd(22)} ${figures.eventsPerSec.toFixed(0).padStart(7)} events/s` +
      `  p50 ${p.p50.toFixed(2)} p99 ${p.p99.toFixed(2)} p999 ${p.p999.toFixed(2)} ms` +
      (figures.serverCpuUsPerCall !== null
        ? `  server ${figures.serverCpuUsPerCall.toFixed(0)} µs/call (${((figures.serverSystemShare ?? 0) * 100).toFixed(0)}% kernel)`
        : ''),
  );
  return figures;
}

/** A rate low enough that every call finds the servers idle: what one lone call costs
 * (phases named "@low"). */
const LOW_RATE = env('BENCH_LOW_RATE', 50);

/**
 * The references, measured with the same load generator as the service: the transport ceiling
 * (a grpc-js server that answers at once) and the one-statement floor (one durable INSERT per
 * call), each at full closed-loop load and at LOW_RATE calls/s.
 */
async function references(url: string, request: Buffer, halfRate: number): Promise<PhaseFigures[]> {
  const out: PhaseFigures[] = [];
  for (const mode of ['noop', 'insert'] as const) {
    const name = mode === 'noop' ? 'ref-transport' : 'ref-one-insert';
    if (ONLY && !ONLY.some((p) => p.startsWith(name))) continue;
    const ref = await startReference(mode, url);
    const conns = channels(ref.port, CHANNELS);
    const call: Call = async (w) => (await unary(conns[w % conns.length]!, CONSUME, request), 1);
    out.push(await measure(name, ref, () => closedLoop(CLIENTS, WARMUP, SECONDS, call)));
    out.push(
      await measure(`${name}@low`, ref, () =>
        openLoop(LOW_RATE, WARMUP, SECONDS, (_w, n) => call(n, n)),
      ),
    );
    // The floor at the rate of the service's `consume@half`: the tail the machine itself gives
    // a durable call at that load (issue 17's p99 target is measured there).
    if (mode === 'insert') {
      const phase = `${name}@${halfRate}/s`;
      out.push(
        Number.isFinite(halfRate)
          ? await measure(phase, ref, () =>
              openLoop(halfRate, WARMUP, SECONDS, (_w, n) => call(n, n)),
            )
          : skipped(phase),
      );
    }
    for (const c of conns) c.close();
    await ref.stop();
  }
  return out;
}

/** The requests the service phases send, encoded once. */
function serviceRequests() {
  const consumeReq = (subject: string, key = ''): Buffer =>
    Buffer.from(
      toBinary(
        ConsumeRequestSchema,
        create(ConsumeRequestSchema, { subject, metric: METRIC, amount: 1n, idempotencyKey: key }),
      ),
    );
  const bySubject = Array.from({ length: SUBJECTS }, (_, i) => consumeReq(subjectName(i)));
  const hot = consumeReq('hot');
  const getReqs = Array.from({ length: SUBJECTS }, (_, i) =>
    Buffer.from(
      toBinary(
        GetQuotaRequestSchema,
        create(GetQuotaRequestSchema, { subject: subjectName(i), metric: METRIC }),
      ),
    ),
  );
  const batches = Array.from({ length: 256 }, () =>
    Buffer.from(
      toBinary(
        ConsumeBatchRequestSchema,
        create(ConsumeBatchRequestSchema, {
          items: Array.from({ length: BATCH }, () => ({
            subject: subjectName(pick()),
            metric: METRIC,
            amount: 1n,
          })),
        }),
      ),
    ),
  );
  return { consumeReq, bySubject, hot, getReqs, batches };
}

type ServiceRequests = ReturnType<typeof serviceRequests>;

/**
 * Every kind of call the service phases make, for BENCH_SERVICE_WARMUP seconds before the
 * first round, unmeasured. Under load V8 spends the first seconds compiling, deoptimising and
 * recompiling the write path (docs/benchmarks.md, seventh round); without this the first
 * measured phase (unary Consume) carried that one-off cost in its CPU per call and the later
 * phases did not.
 */
async function warmUp(port: number, requests: ServiceRequests): Promise<void> {
  const conns = channels(port, CHANNELS);
  const ch = (w: number) => conns[w % conns.length]!;
  const { consumeReq, bySubject, hot, getReqs, batches } = requests;
  await closedLoop(CLIENTS, 0, SERVICE_WARMUP, async (w, n) => {
    switch (n % 8) {
      case 0:
        await unary(ch(w), CONSUME, consumeReq(subjectName(pick()), `warm-${w}-${n}`));
        break;
      case 1:
        await unary(ch(w), GET_QUOTA, getReqs[pick()]!);
        break;
      case 2:
        await unary(ch(w), CONSUME, hot);
        break;
      case 3:
        if (w % 16 === 0) await unary(ch(w), CONSUME_BATCH, batches[n % batches.length]!);
        break;
      default:
        await unary(ch(w), CONSUME, bySubject[pick()]!);
    }
    return 1;
  });
  for (const c of conns) c.close();
}

async function round(
  url: string,
  server: ServiceUnderTest,
  pool: ReturnType<typeof baselinePool>,
  requests: ServiceRequests,
): Promise<PhaseFigures[]> {
  const out: PhaseFigures[] = [];
  const closed = (call: Call) => () => closedLoop(CLIENTS, WARMUP, SECONDS, call);
  out.push(
    await measure(
      'baseline',
      null,
      closed(() => baselineConsume(pool, subjectName(pick()))),
    ),
  );
  out.push(
    await measure(
      'baseline-hot',
      null,
      closed(() => baselineConsume(pool, 'hot')),
    ),
  );

  const conns = channels(server.port, CHANNELS);
  const { consumeReq, bySubject, hot, getReqs, batches } = requests;
  const ch = (w: number) => conns[w % conns.length]!;
  const consumeCall: Call = async (w) => (await unary(ch(w), CONSUME, bySubject[pick()]!), 1);
  const unaryFig = await measure('consume', server, closed(consumeCall));
  out.push(unaryFig);
  const run = Math.random().toString(36).slice(2, 8);
  out.push(
    await measure(
      'consume+key',
      server,
      closed(
        async (w, n) => (
          await unary(ch(w), CONSUME, consumeReq(subjectName(pick()), `${run}-${w}-${n}`)),
          1
        ),
      ),
    ),
  );
  out.push(
    await measure(
      `consume-batch-${BATCH}`,
      server,
      closed(
        async (w, n) => (
          await unary(ch(w), CONSUME_BATCH, batches[(w + n) % batches.length]!),
          BATCH
        ),
      ),
    ),
  );
  out.push(
    await measure(
      'consume-hot',
      server,
      closed(async (w) => (await unary(ch(w), CONSUME, hot), 1)),
    ),
  );
  out.push(
    await measure(
      'get-quota',
      server,
      closed(async (w) => (await unary(ch(w), GET_QUOTA, getReqs[pick()]!), 1)),
    ),
  );
  // Two calls that stop short of the ledger, to tell the layers' costs apart (server CPU per
  // call beside ref-transport's): the health check is a plain grpc-js handler behind the
  // service's one-port dispatch; a GetQuota refused by validation also passes through the call
  // framework (authentication, span, metrics, decoding, error mapping), but reads nothing.
  const health = Buffer.alloc(0);
  out.push(
    await measure(
      'health',
      server,
      closed(async (w) => (await unary(ch(w), HEALTH_CHECK, health), 1)),
    ),
  );
  const refused = Buffer.from(
    toBinary(GetQuotaRequestSchema, create(GetQuotaRequestSchema, { subject: '', metric: METRIC })),
  );
  out.push(
    await measure(
      'get-quota-refused',
      server,
      closed(async (w) => {
        await unary(ch(w), GET_QUOTA, refused).then(
          () => Promise.reject(new Error('an empty subject was accepted')),
          (err: { code?: number }) =>
            err.code === status.INVALID_ARGUMENT ? undefined : Promise.reject(err as Error),
        );
        return 1;
      }),
    ),
  );
  // A lone call's latency, beside the references' at the same rate.
  out.push(
    await measure('consume@low', server, () =>
      openLoop(
        LOW_RATE,
        WARMUP,
        SECONDS,
        async (_w, n) => (await unary(ch(n), CONSUME, bySubject[pick()]!), 1),
      ),
    ),
  );
  // Latency at half the unary maximum, from an open loop that keeps its pace whatever happens.
  const rate = Math.max(1, Math.round(unaryFig.eventsPerSec / 2));
  out.push(
    await measure(`consume@${rate}/s`, server, () =>
      openLoop(
        rate,
        WARMUP,
        SECONDS,
        async (_w, n) => (await unary(ch(n), CONSUME, bySubject[pick()]!), 1),
      ),
    ),
  );
  for (const c of conns) c.close();
  out.push(...(await references(url, bySubject[0]!, rate)));
  return out;
}

async function main(): Promise<void> {
  if (process.env.BENCH_DIST === '1') {
    execFileSync(
      process.execPath,
      ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'],
      {
        stdio: 'inherit',
      },
    );
  }
  const database = await benchDatabase();
  const profDir = process.env.BENCH_CPU_PROF ?? null;
  if (profDir) await mkdir(profDir, { recursive: true });
  const subjects = Array.from({ length: SUBJECTS }, (_, i) => subjectName(i));
  const seedDb = createPool({ connectionString: database.url, max: 4 });
  let server: ServiceUnderTest | null = null;
  try {
    await createBaselineTables(database.url, [...subjects, 'hot'], 10n ** 15n);
    await seedQuotas(seedDb);
    let quiet = true;
    settle = async () => {
      // Autovacuum workers are visible to any role; at most a minute's wait.
      for (let waited = 0; waited < 60_000; waited += 250) {
        const { rows } = await seedDb.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'`,
        );
        if (rows[0]!.n === 0) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      // VACUUM skips tables the role does not own; CHECKPOINT needs a superuser or (PostgreSQL
      // 15+) pg_checkpoint: without them, the phases run as they come.
      if (!quiet) return;
      try {
        await seedDb.query('VACUUM (ANALYZE)');
        await seedDb.query('CHECKPOINT');
      } catch (err) {
        console.log(`  (the database is not settled between phases: ${(err as Error).message})`);
        quiet = false;
      }
    };
    server = await startService(database.url, profDir);
    await prefill(server.port, [...subjects, 'hot']);
    const requests = serviceRequests();
    if (!ONLY || ONLY.some((p) => !p.startsWith('ref-') && !p.startsWith('baseline'))) {
      await warmUp(server.port, requests);
    }
    const pool = baselinePool(database.url, CLIENTS);
    console.log(
      `${CLIENTS} clients, ${SUBJECTS} subjects, ${SECONDS}s per phase after ${WARMUP}s warm-up, ` +
        `${ROUNDS} round(s); database: ${database.server}; ${cpus().length} CPUs`,
    );
    const rounds: PhaseFigures[][] = [];
    for (let i = 0; i < ROUNDS; i++) {
      console.log(`round ${i + 1}:`);
      rounds.push(await round(database.url, server, pool, requests));
    }
    await pool.end();
    const contention = await contentionCheck(server.port, CLIENTS);
    const problems = [
      ...(await checkBaseline(database.url)),
      ...(await checkService(seedDb)),
      ...contention.problems,
    ];
    await server.stop();
    server = null;
    const report = summarize(rounds, problems, contention.summary, {
      clients: CLIENTS,
      subjects: SUBJECTS,
      seconds: SECONDS,
      warmup: WARMUP,
      rounds: ROUNDS,
      batch: BATCH,
      channels: CHANNELS,
      database: database.server,
    });
    const path =
      process.env.BENCH_JSON ??
      join('bench-results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, JSON.stringify(report, null, 2) + '\n');
    console.log(`\nwritten to ${path}`);
    if (problems.length > 0) {
      console.error(`CHECKS FAILED:\n  ${problems.join('\n  ')}`);
      process.exitCode = 1;
    } else {
      console.log('checks: projection equals the ledger fold; no limit overspent');
    }
  } finally {
    await server?.stop();
    await seedDb.end();
    await database.cleanup();
  }
}

await main();
