// What a throughput target asks of the service when it shares the machine's cores with the load
// generator and PostgreSQL, as every phase of `npm run bench` does.
//
// In a phase the three processes keep some number of cores busy, B, and each call costs the load
// generator g, PostgreSQL d and the server s of CPU time, so the rate is B / (g + d + s). Keeping B,
// g and d as measured, a target rate R needs s ≤ B / R − g − d. g and d hardly depend on the
// server's cost (the same calls, the same statements), so this says how cheap the service would
// have to be, and what it would reach if it cost no more than the no-op server.

/** A phase's medians; null where a figure was not measured. */
export interface PhaseCost {
  callsPerSec: number | null;
  serverCpuUsPerCall: number | null;
  loadGenCores: number | null;
  dbCores: number | null;
}

export interface Budget {
  /** Server CPU per call, µs, at which the phase would run at the target rate. */
  serverUsForTarget: number;
  /** The same, as a multiple of the no-op server's CPU per call. */
  serverUsForTargetVsNoop: number;
  /** The rate, as a share of the ceiling, if the server cost what the no-op server does. */
  shareIfNoop: number;
  /** Cores the three processes kept busy in the phase: the budget assumes they stay so. */
  busyCores: number;
}

export function budget(phase: PhaseCost, ceiling: PhaseCost, targetShare: number): Budget | null {
  const { callsPerSec: rate, serverCpuUsPerCall: server, loadGenCores: gen } = phase;
  const { callsPerSec: ceilingRate, serverCpuUsPerCall: noop } = ceiling;
  if (!rate || !ceilingRate || server === null || noop === null || gen === null) return null;
  const db = phase.dbCores ?? 0;
  const others = ((gen + db) / rate) * 1e6; // µs of CPU per call outside the server
  const busyCores = gen + db + (server * rate) / 1e6;
  const targetRate = targetShare * ceilingRate;
  const serverUsForTarget = (busyCores / targetRate) * 1e6 - others;
  return {
    serverUsForTarget,
    serverUsForTargetVsNoop: serverUsForTarget / noop,
    shareIfNoop: busyCores / ((others + noop) / 1e6) / ceilingRate,
    busyCores,
  };
}
