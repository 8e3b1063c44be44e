// The report of `npm run bench`: medians over rounds, ratios, the printed table and the JSON.
import { cpus, totalmem } from 'node:os';
import { budget } from './budget.js';
import { median } from './load.js';

export interface PhaseFigures {
  phase: string;
  eventsPerSec: number;
  callsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: number;
  serverCpuUsPerCall: number | null;
  serverCpuUsPerEvent: number | null;
  serverRssMb: number | null;
  /** Share of the server's CPU spent in the kernel (system calls, loopback TCP). */
  serverSystemShare: number | null;
  loadGenCores: number;
  dbCores: number | null;
  /** Consume calls per group-commit transaction during the phase (the service's metrics). */
  callsPerFlush: number | null;
  /** How long a group-commit transaction took on average during the phase, ms. */
  msPerFlush: number | null;
}

export interface BenchSettings {
  clients: number;
  subjects: number;
  seconds: number;
  warmup: number;
  rounds: number;
  batch: number;
  channels: number;
  database: string;
}

/** Medians over rounds, ratios to the baseline, a printed table, and the JSON report. */
export function summarize(
  rounds: PhaseFigures[][],
  problems: string[],
  contention: string,
  settings: BenchSettings,
) {
  const BATCH = settings.batch;
  const phases = rounds[0]!.map((f, i) => {
    const all = rounds.map((r) => r[i]!);
    const m = (k: keyof PhaseFigures) => {
      const xs = all.map((x) => x[k]).filter((x): x is number => typeof x === 'number');
      return xs.length ? median(xs) : null;
    };
    return {
      phase: f.phase.replace(/@\d+\/s$/, '@half'),
      eventsPerSec: m('eventsPerSec'),
      callsPerSec: m('callsPerSec'),
      p50Ms: m('p50Ms'),
      p99Ms: m('p99Ms'),
      p999Ms: m('p999Ms'),
      errors: all.reduce((a, x) => a + x.errors, 0),
      serverCpuUsPerCall: m('serverCpuUsPerCall'),
      serverCpuUsPerEvent: m('serverCpuUsPerEvent'),
      serverRssMb: m('serverRssMb'),
      serverSystemShare: m('serverSystemShare'),
      loadGenCores: m('loadGenCores'),
      dbCores: m('dbCores'),
      callsPerFlush: m('callsPerFlush'),
      msPerFlush: m('msPerFlush'),
      rounds: all,
    };
  });
  // One figure of one phase's medians; NaN for a phase skipped or a figure not measured.
  const phase = (name: string) => phases.find((p) => p.phase === name);
  const figure = (
    name: string,
    key: 'eventsPerSec' | 'serverCpuUsPerCall' | 'p50Ms' | 'p99Ms',
  ): number => phase(name)?.[key] ?? NaN;
  const rate = (name: string) => figure(name, 'eventsPerSec');
  const cpu = (name: string) => figure(name, 'serverCpuUsPerCall');
  const ratios = {
    consume: rate('consume') / rate('baseline'),
    consumeWithKey: rate('consume+key') / rate('baseline'),
    consumeBatch: rate(`consume-batch-${BATCH}`) / rate('baseline'),
    hot: rate('consume-hot') / rate('baseline-hot'),
    // Against the references of the same run (issue 17's targets).
    consumeVsTransport: rate('consume') / rate('ref-transport'),
    getQuotaVsTransport: rate('get-quota') / rate('ref-transport'),
    hotVsTransport: rate('consume-hot') / rate('ref-transport'),
    cpuVsTransport: cpu('consume') / cpu('ref-transport'),
    // The layers below the ledger (see bench/run.ts): plumbing, then the call framework.
    healthCpuVsTransport: cpu('health') / cpu('ref-transport'),
    refusedCpuVsTransport: cpu('get-quota-refused') / cpu('ref-transport'),
    lowLatencyOverFloorMs: figure('consume@low', 'p50Ms') - figure('ref-one-insert@low', 'p50Ms'),
    // p99 at half the unary maximum, and the one-statement floor's at the same rate.
    halfLoadP99Ms: figure('consume@half', 'p99Ms'),
    halfLoadFloorP99Ms: figure('ref-one-insert@half', 'p99Ms'),
  };
  // Issue 17's throughput targets, as server CPU per call on these shared cores (bench/budget.ts).
  const ceiling = phase('ref-transport');
  const budgets = Object.fromEntries(
    (
      [
        ['consume', 0.7],
        ['get-quota', 0.9],
        ['consume-hot', 0.8],
      ] as const
    ).map(([name, share]) => {
      const p = phase(name);
      const b = p && ceiling ? budget(p, ceiling, share) : null;
      return [name, b && { targetShare: share, ...b }];
    }),
  );
  console.log('\nmedians:');
  console.log(
    'phase                   events/s    p50     p99    p999 ms  server µs/call  RSS MB  loadgen cores  db cores  calls/flush  ms/flush',
  );
  for (const p of phases) {
    const f = (x: number | null, d = 0) => (x === null ? '-' : x.toFixed(d));
    console.log(
      `${p.phase.padEnd(22)} ${f(p.eventsPerSec).padStart(9)} ${f(p.p50Ms, 2).padStart(6)} ${f(p.p99Ms, 2).padStart(7)} ${f(p.p999Ms, 2).padStart(7)}` +
        `  ${f(p.serverCpuUsPerCall).padStart(14)} ${f(p.serverRssMb).padStart(7)} ${f(p.loadGenCores, 2).padStart(14)} ${f(p.dbCores, 2).padStart(9)} ${f(p.callsPerFlush, 1).padStart(12)} ${f(p.msPerFlush, 1).padStart(9)}`,
    );
  }
  console.log(
    `service/baseline: consume ${ratios.consume.toFixed(2)}x, consume+key ${ratios.consumeWithKey.toFixed(2)}x, ` +
      `batch ${ratios.consumeBatch.toFixed(2)}x, hot key ${ratios.hot.toFixed(2)}x`,
  );
  console.log(
    `service/references: consume ${ratios.consumeVsTransport.toFixed(2)}x and get-quota ${ratios.getQuotaVsTransport.toFixed(2)}x ` +
      `and hot ${ratios.hotVsTransport.toFixed(2)}x the transport ceiling; server CPU ${ratios.cpuVsTransport.toFixed(2)}x the no-op server's; ` +
      `p50 at the low rate ${ratios.lowLatencyOverFloorMs.toFixed(2)} ms over the one-statement floor; ` +
      `p99 at half load ${ratios.halfLoadP99Ms.toFixed(1)} ms, the floor's at that rate ${ratios.halfLoadFloorP99Ms.toFixed(1)} ms`,
  );
  console.log(
    `server CPU per call against the no-op server's: health check ${ratios.healthCpuVsTransport.toFixed(2)}x, ` +
      `GetQuota refused by validation ${ratios.refusedCpuVsTransport.toFixed(2)}x, consume ${ratios.cpuVsTransport.toFixed(2)}x`,
  );
  for (const [name, b] of Object.entries(budgets)) {
    if (!b) continue;
    console.log(
      `budget: ${name} at ${b.targetShare}x the ceiling needs server CPU <= ${b.serverUsForTarget.toFixed(0)} µs/call ` +
        `(${b.serverUsForTargetVsNoop.toFixed(2)}x the no-op server's); as cheap as the no-op server it would reach ${b.shareIfNoop.toFixed(2)}x ` +
        `(${b.busyCores.toFixed(2)} cores busy)`,
    );
  }
  console.log(contention);
  return {
    when: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGiB: totalmem() / 2 ** 30,
      node: process.version,
    },
    settings,
    phases,
    ratios,
    budgets,
    contention,
    problems,
  };
}
