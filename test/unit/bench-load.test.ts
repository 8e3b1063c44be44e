import { describe, expect, it } from 'vitest';
import { openLoop, percentiles } from '../../bench/load.js';

// The load generator measures latency from the moment each call was due. An instant call must
// show (close to) no latency at a low rate, not the gap between two calls.
describe('openLoop', () => {
  it('measures an instant call as next to no latency, not as one interval', async () => {
    const rate = 20; // one call every 50 ms
    const r = await openLoop(rate, 0, 0.6, async () => 1);
    expect(r.calls).toBeGreaterThanOrEqual(8);
    expect(percentiles(r.latenciesMs).p50).toBeLessThan(1000 / rate / 2);
  });
});
