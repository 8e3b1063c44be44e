/**
 * The V8 settings the service runs with, less any that node's command line already chose: an
 * explicit flag there wins. src/main.ts sets the first before it loads the service, src/app.ts
 * the second once the configuration is read, so `node dist/main.js` gets them as `npm start`
 * does.
 */

/** Whether node's command line names a V8 flag, in any of its spellings. */
const named = (execArgv: readonly string[], flag: RegExp): boolean =>
  execArgv.some((a) => flag.test(a));

/**
 * Allocation-site pretenuring is off. V8 watches where objects are allocated and, when most
 * objects of one site survive a young-generation collection, allocates that site's objects in
 * the old generation from then on. Under load, per-call objects (the group committer's waiting
 * calls, events, answers) reached the old generation far more often than calls a few
 * milliseconds long explain, as that would make them: there they die, and keep the young
 * objects they point to alive until the next full collection. With it off, at 1,000 Consume
 * calls/s (docs/benchmarks.md, ninth round), half as much was promoted per scavenge, and so
 * full collections, each a pause of tens of milliseconds, came half as often; throughput moved
 * within the noise.
 */
export function serviceV8Flags(execArgv: readonly string[]): string[] {
  return named(execArgv, /^--(no-?)?allocation[-_]site[-_]pretenuring(=|$)/)
    ? []
    : ['--no-allocation-site-pretenuring'];
}

/**
 * The heap's growth factor (QUOTA_HEAP_GROWING_PERCENT, 50 by default: the old generation may
 * grow to 1.5 times what survived the last full collection before the next one starts). Left
 * to itself, V8 let a heap of 35-60 MB of live objects grow to about 250 MB under load, most
 * of a peak RSS of 290-320 MB; with 50 and pretenuring off, peak RSS stayed under 200 MB in
 * every phase of `npm run bench` at a cost of about a tenth of ConsumeBatch's rate and none
 * measurable on unary Consume (docs/benchmarks.md, tenth round). 0 gives the choice back to V8.
 * V8 reads it whenever it sets the next collection's limit, so setting it after start-up works.
 */
export function heapGrowingFlags(percent: number, execArgv: readonly string[]): string[] {
  return named(execArgv, /^--heap[-_]growing[-_]percent(=|$)/)
    ? []
    : [`--heap-growing-percent=${percent}`];
}
