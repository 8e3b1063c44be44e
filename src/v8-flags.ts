/**
 * The V8 settings the service runs with (src/main.ts sets them before it loads the service,
 * so `node dist/main.js` gets them as `npm start` does), less any that node's command line
 * already chose: an explicit flag there wins.
 *
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
  const chosen = execArgv.some((a) => /^--(no-?)?allocation[-_]site[-_]pretenuring(=|$)/.test(a));
  return chosen ? [] : ['--no-allocation-site-pretenuring'];
}
