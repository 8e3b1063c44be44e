/**
 * A linearizability checker in the style of Wing & Gong (with Lowe's memoization): given a
 * history of operations on one object, each with its invocation time, its response time and
 * its result (or none: the caller never learned the outcome), it searches for a sequential
 * order that respects real time (an operation that responded before another was invoked comes
 * first) in which a sequential specification gives every recorded result. An operation without
 * a response may take effect at any point after its invocation, or never.
 */

export interface Op<I, O> {
  id: number;
  /** Who issued it (for the report). */
  client: string;
  input: I;
  /** Invocation and response times, on one monotonic clock. */
  call: number;
  /** null: no response (a crash, a cut connection, a timeout); it may or may not have happened. */
  ret: number | null;
  output: O | null;
}

export interface Spec<S, I, O> {
  init(): S;
  /** Applies `input` to a copy of `state`; never changes `state` itself. */
  step(state: S, input: I): { state: S; output: O };
  /** Whether the service's recorded `actual` is what the specification says. */
  matches(expected: O, actual: O): boolean;
  /** Equal keys, equal states (for memoization). */
  key(state: S): string;
}

export type CheckResult<S> =
  | { ok: true; order: number[]; state: S }
  | { ok: false; reason: 'no order' | 'budget'; explored: number };

/**
 * Searches for a linearization. `accept` is asked about the state at the end (every operation
 * that responded placed): a history is linearizable only with a final state it accepts (the
 * ledger the history implies must be the ledger there is).
 */
export function checkLinearizable<S, I, O>(
  ops: readonly Op<I, O>[],
  spec: Spec<S, I, O>,
  accept: (state: S) => boolean = () => true,
  budget = 500_000,
): CheckResult<S> {
  const n = ops.length;
  if (n > 60) throw new Error(`history of ${n} operations: keep it at 60 or fewer per object`);
  const completed = ops.map((o) => o.ret !== null);
  const allCompleted = ops.reduce((m, o, i) => (o.ret !== null ? m | (1n << BigInt(i)) : m), 0n);
  const failed = new Set<string>();
  const order: number[] = [];
  let explored = 0;

  const search = (done: bigint, state: S): S | null | 'budget' => {
    if ((done & allCompleted) === allCompleted && accept(state)) return state;
    const memo = `${done.toString(36)}|${spec.key(state)}`;
    if (failed.has(memo)) return null;
    if (++explored > budget) return 'budget';
    // The earliest response among operations not yet placed bounds which may go next.
    let horizon = Infinity;
    for (let i = 0; i < n; i++) {
      if (completed[i] && !(done & (1n << BigInt(i))) && ops[i]!.ret! < horizon)
        horizon = ops[i]!.ret!;
    }
    for (let i = 0; i < n; i++) {
      const bit = 1n << BigInt(i);
      if (done & bit) continue;
      const op = ops[i]!;
      if (op.call > horizon) continue;
      const next = spec.step(state, op.input);
      if (op.output !== null && !spec.matches(next.output, op.output)) continue;
      order.push(op.id);
      const found = search(done | bit, next.state);
      if (found !== null) return found;
      order.pop();
    }
    failed.add(memo);
    return null;
  };

  const found = search(0n, spec.init());
  if (found === 'budget') return { ok: false, reason: 'budget', explored };
  if (found === null) return { ok: false, reason: 'no order', explored };
  return { ok: true, order: [...order], state: found };
}

/**
 * A smallest failing part of a history that cannot be linearized even without the final-state
 * condition: operations are dropped one at a time while what is left still fails.
 */
export function minimalFailing<S, I, O>(
  ops: readonly Op<I, O>[],
  spec: Spec<S, I, O>,
): Op<I, O>[] | null {
  if (checkLinearizable(ops, spec).ok) return null;
  let kept = [...ops];
  for (let i = kept.length - 1; i >= 0; i--) {
    const without = kept.filter((_, j) => j !== i);
    const r = checkLinearizable(without, spec);
    if (!r.ok && r.reason === 'no order') kept = without;
  }
  return kept;
}

/** One line per operation, in invocation order, for a failure report. */
export function describeHistory<I, O>(ops: readonly Op<I, O>[], t0 = 0): string {
  const big = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);
  return [...ops]
    .sort((a, b) => a.call - b.call)
    .map(
      (o) =>
        `#${o.id} ${o.client} [${(o.call - t0).toFixed(2)} ms, ${o.ret === null ? 'no answer' : `${(o.ret - t0).toFixed(2)} ms`}] ${JSON.stringify(o.input, big)} -> ${o.output === null ? '?' : JSON.stringify(o.output, big)}`,
    )
    .join('\n');
}
