import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cancellation, type CallSignal } from '../../src/cancellation.js';

// Cancellation stands in for an AbortSignal on plain gRPC calls: whatever is done to it, the
// listeners that run, their order and the state it ends in are those of an AbortController's.

type Step = { op: 'add' | 'remove'; listener: number } | { op: 'abort' };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constantFrom('add' as const, 'remove' as const), listener: fc.nat(3) }),
  fc.constant({ op: 'abort' as const }),
);

/** Plays the steps on a signal; returns the listeners run, in order, and its final state. */
function play(signal: CallSignal, abort: () => void, steps: readonly Step[]) {
  const ran: number[] = [];
  // Listener 3 removes listener 0 when it runs: a removal during the abort counts at once.
  const listeners: (() => void)[] = [0, 1, 2, 3].map((i) => () => {
    ran.push(i);
    if (i === 3) signal.removeEventListener('abort', listeners[0]!);
  });
  for (const st of steps) {
    if (st.op === 'abort') abort();
    else if (st.op === 'add') signal.addEventListener('abort', listeners[st.listener]!);
    else signal.removeEventListener('abort', listeners[st.listener]!);
  }
  const reason = signal.reason as DOMException | undefined;
  return { ran, aborted: signal.aborted, reason: reason && [reason.name, reason.message] };
}

describe('Cancellation', () => {
  it('runs the listeners an AbortController would, in its order, and ends in its state', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 20 }), (steps) => {
        const ac = new AbortController();
        const c = new Cancellation();
        expect(play(c, () => c.abort(), steps)).toEqual(play(ac.signal, () => ac.abort(), steps));
      }),
    );
  });

  it('runs the other listeners when one throws, and reports the error as uncaught', async () => {
    const c = new Cancellation();
    const ran: string[] = [];
    c.addEventListener('abort', () => {
      throw new Error('listener failed');
    });
    c.addEventListener('abort', () => void ran.push('second'));
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    const reported = new Promise<Error>((ok) => process.once('uncaughtException', ok));
    try {
      c.abort();
      expect(ran).toEqual(['second']);
      expect((await reported).message).toBe('listener failed');
    } finally {
      for (const l of listeners) process.on('uncaughtException', l);
    }
  });
});
