import { describe, expect, it } from 'vitest';
import { budget } from '../../bench/budget.js';

// The arithmetic behind "what server CPU per call would meet the throughput target".
describe('budget', () => {
  const ceiling = { callsPerSec: 2000, serverCpuUsPerCall: 200, loadGenCores: 1, dbCores: 0 };

  it('asks for the server cost that fills the same busy cores at the target rate', () => {
    // 1,000 calls/s: load generator 500 µs, PostgreSQL 300 µs, server 400 µs a call: 1.2 cores.
    const phase = { callsPerSec: 1000, serverCpuUsPerCall: 400, loadGenCores: 0.5, dbCores: 0.3 };
    const b = budget(phase, ceiling, 0.5)!;
    expect(b.serverUsForTarget).toBeCloseTo(400); // already at half the ceiling
    expect(b.busyCores).toBeCloseTo(1.2);
    const tighter = budget(phase, ceiling, 0.6)!; // 1,200 calls/s in 1.2 cores: 1,000 µs a call
    expect(tighter.serverUsForTarget).toBeCloseTo(200);
    expect(tighter.serverUsForTargetVsNoop).toBeCloseTo(1);
    // At the no-op's 200 µs: 1.2 cores / 1,000 µs = 1,200 calls/s, 0.6 of the ceiling.
    expect(b.shareIfNoop).toBeCloseTo(0.6);
  });

  it('says when even a free service would miss: the others alone take more than the budget', () => {
    const phase = { callsPerSec: 1000, serverCpuUsPerCall: 400, loadGenCores: 0.5, dbCores: 0.3 };
    expect(budget(phase, ceiling, 0.9)!.serverUsForTarget).toBeLessThan(0);
  });

  it('gives nothing for a phase that was not measured', () => {
    expect(budget({ ...ceiling, serverCpuUsPerCall: null }, ceiling, 0.7)).toBeNull();
    expect(budget({ ...ceiling, callsPerSec: 0 }, ceiling, 0.7)).toBeNull();
  });
});
