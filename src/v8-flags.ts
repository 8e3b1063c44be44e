/**
 * The V8 settings the service runs with (src/main.ts sets them before it loads the service,
 * so `node dist/main.js` gets them as `npm start` does), less any that node's command line
 * already chose: an explicit flag there wins.
 *
 * Allocation-site pretenuring is off. V8 watches where objects are allocated and, when most
 * objects of one site survive a young-generation collection, allocates that site's objects in
 * the old generation from then on. Under load it did so for per-call objects (the group
 * committer's waiting calls, events, answers), which then died in the old generation and kept
 * the young objects they pointed to alive until the next full collection. Measured at 1,000
 * Consume calls/s (docs/benchmarks.md, ninth round): half as much promoted to the old
 * generation per scavenge, and so fewer full collections, each pausing the process for tens of
 * milliseconds; throughput moved within the noise.
 */
export function serviceV8Flags(execArgv: readonly string[]): string[] {
  const chosen = execArgv.some((a) => /^--(no-?)?allocation[-_]site[-_]pretenuring(=|$)/.test(a));
  return chosen ? [] : ['--no-allocation-site-pretenuring'];
}
