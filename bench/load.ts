// Load generation for `npm run bench`: closed loops (N callers, each sending its next call
// when the last is answered) and an open loop at a fixed rate, with latency percentiles.

export interface LoadResult {
  /** Calls answered inside the measured window. */
  calls: number;
  /** Events those calls carried (1 per Consume, the item count per ConsumeBatch). */
  events: number;
  /** Calls that failed inside the window. */
  errors: number;
  seconds: number;
  latenciesMs: number[];
}

export interface Percentiles {
  p50: number;
  p99: number;
  p999: number;
}

/** One call; resolves to the number of events it carried. */
export type Call = (worker: number, n: number) => Promise<number>;

const nowMs = (): number => performance.now();

/**
 * `clients` callers, each calling in a loop for `warmupS + seconds`; only calls that start
 * after the warm-up and end before the deadline are counted.
 */
export async function closedLoop(
  clients: number,
  warmupS: number,
  seconds: number,
  call: Call,
): Promise<LoadResult> {
  const start = nowMs() + warmupS * 1000;
  const end = start + seconds * 1000;
  const r: LoadResult = { calls: 0, events: 0, errors: 0, seconds, latenciesMs: [] };
  let firstError: unknown;
  const worker = async (w: number): Promise<void> => {
    for (let n = 0; nowMs() < end; n++) {
      const t0 = nowMs();
      let events = 0;
      let failed = false;
      try {
        events = await call(w, n);
      } catch (err) {
        failed = true;
        firstError ??= err;
      }
      const t1 = nowMs();
      if (t0 < start || t1 > end) continue;
      if (failed) r.errors++;
      else {
        r.calls++;
        r.events += events;
        r.latenciesMs.push(t1 - t0);
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
  if (r.errors > 0) console.error(`  ${r.errors} calls failed; the first: ${String(firstError)}`);
  return r;
}

/**
 * Calls at `rate` per second for `seconds`, whatever the answers' pace. Latency counts from
 * when each call was due, so a stall shows in the percentiles instead of hiding in fewer
 * calls (no coordinated omission).
 */
export async function openLoop(
  rate: number,
  warmupS: number,
  seconds: number,
  call: Call,
  maxInFlight = 4096,
): Promise<LoadResult> {
  const t0 = nowMs();
  const start = t0 + warmupS * 1000;
  const end = start + seconds * 1000;
  const r: LoadResult = { calls: 0, events: 0, errors: 0, seconds, latenciesMs: [] };
  let issued = 0;
  let inFlight = 0;
  const pending = new Set<Promise<void>>();
  await new Promise<void>((done) => {
    const timer = setInterval(() => {
      const now = nowMs();
      if (now >= end) {
        clearInterval(timer);
        done();
        return;
      }
      // Calls whose start time has come: call n is due at t0 + n / rate (call 0 at once).
      const due = Math.floor(((now - t0) / 1000) * rate) + 1;
      while (issued < due && inFlight < maxInFlight) {
        const dueAt = t0 + (issued / rate) * 1000;
        const n = issued++;
        inFlight++;
        const p = call(0, n).then(
          (events) => {
            const t1 = nowMs();
            if (dueAt >= start && t1 <= end) {
              r.calls++;
              r.events += events;
              r.latenciesMs.push(t1 - dueAt);
            }
          },
          () => {
            if (dueAt >= start) r.errors++;
          },
        );
        const tracked = p.finally(() => {
          inFlight--;
          pending.delete(tracked);
        });
        pending.add(tracked);
      }
    }, 1);
  });
  await Promise.all(pending);
  return r;
}

/** The value below which the share `q` of `xs` lies (the nearest rank); NaN for none. */
export function quantile(xs: ArrayLike<number>, q: number): number {
  return sortedQuantile(Float64Array.from(xs).sort(), q);
}

const sortedQuantile = (s: Float64Array, q: number): number =>
  s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]!;

export function percentiles(latencies: number[]): Percentiles {
  const s = Float64Array.from(latencies).sort();
  return {
    p50: sortedQuantile(s, 0.5),
    p99: sortedQuantile(s, 0.99),
    p999: sortedQuantile(s, 0.999),
  };
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
