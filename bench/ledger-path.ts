// `npm run bench:ledger`: the Consume write path without the network. 64 callers submit unary
// Consumes to the group committer in this process (the same committer, ledger code and pool
// the service uses), so the CPU and allocation per call measured here are the service's own
// work per Consume below gRPC, with far less noise than the whole-service bench.
//
// Settings: BENCH_CALLS (default 40,000), BENCH_CLIENTS (64), BENCH_SUBJECTS (2,000),
// BENCH_KEYS=1 (idempotency keys), BENCH_HEAP=1 (allocation per call, V8's sampling heap
// profiler counting collected objects; slower), BENCH_RUNS (3; medians printed).
import { Session } from 'node:inspector/promises';
import { ConsumeGroupCommitter, DEFAULT_GROUP_COMMIT } from '../src/batching/group-commit.js';
import { systemClock } from '../src/domain/clock.js';
import type { LedgerDeps } from '../src/ledger/commands.js';
import { createPool } from '../src/ledger/db.js';
import { SubjectCache } from '../src/ledger/subject-cache.js';
import { seedQuotas } from './checks.js';
import { benchDatabase } from './db.js';
import { median } from './load.js';

const CALLS = Number(process.env.BENCH_CALLS ?? 40_000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 64);
const SUBJECTS = Number(process.env.BENCH_SUBJECTS ?? 2_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const KEYS = process.env.BENCH_KEYS === '1';
const HEAP = process.env.BENCH_HEAP === '1';

interface Figures {
  callsPerSecond: number;
  cpuMicrosPerCall: number;
  callsPerFlush: number;
  kernelShare: number;
  kbPerCall: number | null;
}

async function run(committer: ConsumeGroupCommitter, calls: number, tag: string) {
  let next = 0;
  const caller = async () => {
    for (let i = next++; i < calls; i = next++) {
      await committer.submit(
        {
          subject: `tenant-${i % SUBJECTS}`,
          metric: 'requests',
          amount: 1n,
          idempotencyKey: KEYS ? `${tag}-${i}` : null,
          mode: 'ENFORCE',
          attributes: {},
        },
        'bench',
      );
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, caller));
}

async function allocatedBytes<T>(session: Session, body: () => Promise<T>): Promise<number> {
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 1024,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  await body();
  const { profile } = await session.post('HeapProfiler.stopSampling');
  type Node = { selfSize: number; children: Node[] };
  const sum = (n: Node): number => n.children.reduce((a, c) => a + sum(c), n.selfSize);
  return sum(profile.head as Node);
}

async function main() {
  const database = await benchDatabase();
  const db = createPool({ connectionString: database.url, max: 16 });
  try {
    await seedQuotas(db);
    let flushes = 0;
    let flushed = 0;
    const deps: LedgerDeps = { db, clock: systemClock, cache: new SubjectCache(100_000) };
    const committer = new ConsumeGroupCommitter(deps, DEFAULT_GROUP_COMMIT, {
      flushed(size) {
        flushes++;
        flushed += size;
      },
    });
    // Warm: every subject's first event, its state kept, the code optimised.
    await run(committer, Math.max(SUBJECTS * 3, 10_000), 'warm');
    const session = new Session();
    session.connect();
    const figures: Figures[] = [];
    for (let r = 0; r < RUNS; r++) {
      flushes = 0;
      flushed = 0;
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      let bytes: number | null = null;
      if (HEAP) bytes = await allocatedBytes(session, () => run(committer, CALLS, `r${r}`));
      else await run(committer, CALLS, `r${r}`);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = process.cpuUsage(cpu0);
      figures.push({
        callsPerSecond: CALLS / seconds,
        cpuMicrosPerCall: (cpu.user + cpu.system) / CALLS,
        callsPerFlush: flushed / flushes,
        kernelShare: cpu.system / (cpu.user + cpu.system),
        kbPerCall: bytes === null ? null : bytes / CALLS / 1024,
      });
      const f = figures.at(-1)!;
      console.log(
        `run ${r + 1}: ${f.callsPerSecond.toFixed(0)} calls/s, ${f.cpuMicrosPerCall.toFixed(1)} µs CPU a call, ` +
          `${f.callsPerFlush.toFixed(1)} calls a flush, ${(f.kernelShare * 100).toFixed(0)} % in the kernel` +
          (f.kbPerCall === null ? '' : `, ${f.kbPerCall.toFixed(1)} KB allocated a call`),
      );
    }
    session.disconnect();
    const m = (k: keyof Figures) => median(figures.map((f) => f[k] ?? NaN));
    console.log(
      `median: ${m('callsPerSecond').toFixed(0)} calls/s, ${m('cpuMicrosPerCall').toFixed(1)} µs CPU a call` +
        (HEAP ? `, ${m('kbPerCall').toFixed(1)} KB a call` : ''),
    );
  } finally {
    await db.end();
    await database.cleanup();
  }
}

await main();
