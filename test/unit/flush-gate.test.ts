import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FlushGate } from '../../src/batching/flush-gate.js';

describe('FlushGate', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  const settings = { maxFlushes: 4, minParallel: 64, maxWaitMs: 25 };

  it('sends a lone item at once, and a long queue in parts of at least minParallel', () => {
    const gate = new FlushGate(settings, () => {});
    expect(gate.parts(1)).toBe(1);
    expect(gate.parts(63)).toBe(1);
    expect(gate.parts(128)).toBe(2);
    expect(gate.parts(10_000)).toBe(4);
    expect(gate.parts(0)).toBe(0);
  });

  it('holds a few items back while a statement runs, until it has run maxWaitMs', () => {
    const wake = vi.fn();
    const gate = new FlushGate(settings, wake);
    gate.started();
    expect(gate.parts(10)).toBe(0);
    vi.advanceTimersByTime(10);
    expect(gate.parts(10)).toBe(0);
    expect(wake).not.toHaveBeenCalled();
    // One wake-up, however often the gate was asked.
    vi.advanceTimersByTime(15);
    expect(wake).toHaveBeenCalledTimes(1);
    expect(gate.parts(10)).toBe(1);
    // A new statement restarts the wait.
    gate.started();
    expect(gate.parts(10)).toBe(0);
    // Enough waiting items go beside the running ones at once.
    expect(gate.parts(64)).toBe(1);
    expect(gate.parts(200)).toBe(2);
  });

  it('never runs more than maxFlushes, and lets items go when a statement finishes', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.nat(300), fc.constant(-1)), { maxLength: 60 }), (steps) => {
        const gate = new FlushGate(settings, () => {});
        for (const waiting of steps) {
          if (waiting < 0) {
            if (gate.inFlight > 0) gate.finished();
            // Nothing running: whatever waits goes now.
            if (gate.inFlight === 0) expect(gate.parts(1)).toBe(1);
            continue;
          }
          const parts = gate.parts(waiting);
          expect(parts).toBeLessThanOrEqual(settings.maxFlushes - gate.inFlight);
          // Each part carries minParallel items at least, unless it is the only one.
          if (parts > 1) expect(waiting / parts).toBeGreaterThanOrEqual(settings.minParallel);
          for (let i = 0; i < parts; i++) gate.started();
          expect(gate.inFlight).toBeLessThanOrEqual(settings.maxFlushes);
        }
      }),
    );
  });
});
