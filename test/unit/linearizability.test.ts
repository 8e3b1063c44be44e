import { describe, expect, it } from 'vitest';
import {
  checkLinearizable,
  minimalFailing,
  type Op,
  type Spec,
} from '../support/linearizability.js';

// The checker itself, on a register (write v / read) where the answers are easy to work out.

type In = { w: number } | { r: true };
const register: Spec<number, In, number | 'ok'> = {
  init: () => 0,
  step: (s, i) => ('w' in i ? { state: i.w, output: 'ok' } : { state: s, output: s }),
  matches: (a, b) => a === b,
  key: (s) => String(s),
};
let id = 0;
const op = (input: In, call: number, ret: number | null, output: number | 'ok' | null) =>
  ({ id: ++id, client: 'c', input, call, ret, output }) as Op<In, number | 'ok'>;

describe('checkLinearizable', () => {
  it('accepts a read that overlaps a write and sees either value', () => {
    for (const seen of [0, 1]) {
      const h = [op({ w: 1 }, 0, 10, 'ok'), op({ r: true }, 5, 6, seen)];
      expect(checkLinearizable(h, register).ok).toBe(true);
    }
  });

  it('refuses a read after a finished write that sees the old value (real-time order)', () => {
    const h = [op({ w: 1 }, 0, 3, 'ok'), op({ r: true }, 5, 6, 0)];
    expect(checkLinearizable(h, register)).toMatchObject({ ok: false, reason: 'no order' });
  });

  it('lets an unanswered operation take effect late, or never', () => {
    const late = [op({ w: 7 }, 0, null, null), op({ r: true }, 5, 6, 0), op({ r: true }, 8, 9, 7)];
    expect(checkLinearizable(late, register).ok).toBe(true);
    const never = [op({ w: 7 }, 0, null, null), op({ r: true }, 5, 6, 0)];
    expect(checkLinearizable(never, register).ok).toBe(true);
    // But it cannot take effect before it was invoked.
    const early = [op({ r: true }, 0, 1, 7), op({ w: 7 }, 2, null, null)];
    expect(checkLinearizable(early, register).ok).toBe(false);
  });

  it('holds the end state to what is given', () => {
    const h = [op({ w: 1 }, 0, 3, 'ok'), op({ w: 2 }, 1, null, null)];
    expect(checkLinearizable(h, register, (s) => s === 2).ok).toBe(true);
    expect(checkLinearizable(h, register, (s) => s === 1).ok).toBe(true);
    expect(checkLinearizable(h, register, (s) => s === 3).ok).toBe(false);
  });

  it('finds the smallest failing part of a history', () => {
    const bad = op({ r: true }, 20, 21, 0);
    const h = [
      op({ w: 1 }, 0, 3, 'ok'),
      op({ r: true }, 4, 5, 1),
      op({ w: 2 }, 6, 8, 'ok'),
      op({ r: true }, 9, 10, 2),
      bad,
    ];
    const min = minimalFailing(h, register)!;
    expect(min.map((o) => o.id)).toContain(bad.id);
    expect(min.length).toBeLessThanOrEqual(2);
    expect(checkLinearizable(min, register).ok).toBe(false);
  });
});
