import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyConsumes, type ConsumeCall } from '../../src/domain/consume.js';
import { evolveCounter } from '../../src/domain/counter.js';
import { QuotaError } from '../../src/domain/errors.js';
import type { StoredEvent } from '../../src/domain/events.js';
import { foldCounters } from '../../src/domain/fold.js';
import { periodContaining } from '../../src/domain/period.js';
import { counterKey, type CounterState, type QuotaDef } from '../../src/domain/quota.js';
import { decideDeleteQuota, decideSetQuota } from '../../src/domain/quota-settings.js';
import { decideRefund } from '../../src/domain/refund.js';
import {
  decideCancel,
  decideCommit,
  decideExpiry,
  decideReserve,
} from '../../src/domain/reservation-commands.js';
import { decideReset } from '../../src/domain/reset.js';
import { decideRoll } from '../../src/domain/roll.js';
import { Stage, type SequencedEvent, type SubjectState } from '../../src/domain/subject-state.js';

// Given a subject's state, when a command is decided, then these events and counters: every
// decision of the write path as a pure function, without a database.

const NOW = new Date('2026-03-10T12:00:00Z');
const TOMORROW = new Date('2026-03-11T12:00:00Z');
const def = (over: Partial<QuotaDef> = {}): QuotaDef => ({
  subject: 'alice',
  metric: 'api',
  period: 'DAY',
  limit: 10n,
  timeZone: 'UTC',
  anchorDay: 0,
  updatedAt: new Date(0),
  ...over,
});
const day = def();
const month = def({ period: 'MONTH', limit: 100n });

/** A subject whose every event so far is `history`: state and counters as the fold says. */
function given(defs: QuotaDef[], history: SequencedEvent[] = []): SubjectState {
  return {
    subject: 'alice',
    lastSequence: BigInt(history.length),
    defs,
    counters: foldCounters(history),
    priors: new Map(),
    lapsed: [],
  };
}

const consume = (amount: bigint, over: Partial<ConsumeCall['cmd']> = {}): ConsumeCall => ({
  cmd: {
    subject: 'alice',
    metric: 'api',
    amount,
    idempotencyKey: null,
    mode: 'ENFORCE',
    attributes: {},
    ...over,
  },
  actor: 'svc',
});

/** The events of consumes decided on `state`, as a history to start another decision from. */
function consumed(state: SubjectState, ...amounts: bigint[]): SequencedEvent[] {
  return applyConsumes(
    state,
    amounts.map((a) => consume(a)),
    NOW,
  ).changes.events;
}

/** Then: the counters written are exactly the fold of the whole ledger. */
function expectCountersFold(
  before: SequencedEvent[],
  after: SequencedEvent[],
  state: SubjectState,
) {
  const folded = foldCounters([...before, ...after]);
  for (const [key, c] of state.counters) expect(folded.get(key)).toEqual(c);
  expect([...folded.keys()].sort()).toEqual([...state.counters.keys()].sort());
}

describe('evolveCounter', () => {
  const start = periodContaining(day, NOW);
  const base: CounterState = {
    used: 4n,
    reserved: 2n,
    periodStart: start.start,
    periodEnd: start.end,
    lastResetAt: null,
    lastSequence: 3n,
  };
  const event = (over: Partial<StoredEvent>): SequencedEvent =>
    ({
      type: 'USAGE',
      subject: 'alice',
      metric: 'api',
      amount: null,
      period: null,
      periodStart: null,
      periodEnd: null,
      actor: 'a',
      reason: null,
      idempotencyKey: null,
      attributes: null,
      recordedAt: NOW,
      data: {},
      sequence: 4n,
      ...over,
    }) as SequencedEvent;
  const fx = (delta: bigint, periodStart = start.start) => ({
    period: 'DAY' as const,
    periodStart,
    periodEnd: start.end,
    delta,
  });

  it('adds a usage to its period and starts a counter at zero', () => {
    const e = event({ data: { effects: [fx(3n)] } });
    expect(evolveCounter(base, e, 'DAY')).toMatchObject({ used: 7n, lastSequence: 4n });
    expect(evolveCounter(null, e, 'DAY')).toMatchObject({ used: 3n, reserved: 0n });
    expect(evolveCounter(base, e, 'MONTH')).toBe(base);
  });

  it('zeroes usage on a manual reset, keeps holds, ignores a counter that never existed', () => {
    const e = event({ type: 'RESET_MANUAL', period: 'DAY' });
    expect(evolveCounter(base, e, 'DAY')).toMatchObject({
      used: 0n,
      reserved: 2n,
      lastResetAt: NOW,
    });
    expect(evolveCounter(null, e, 'DAY')).toBeNull();
  });

  it('starts the new period of a scheduled reset from zero, holds included', () => {
    const next = periodContaining(day, TOMORROW);
    const e = event({
      type: 'RESET_SCHEDULED',
      period: 'DAY',
      periodStart: next.start,
      periodEnd: next.end,
    });
    expect(evolveCounter(base, e, 'DAY')).toEqual({
      used: 0n,
      reserved: 0n,
      periodStart: next.start,
      periodEnd: next.end,
      lastResetAt: next.start,
      lastSequence: 4n,
    });
  });

  it('releases a hold only from the period it was made in', () => {
    const e = event({ type: 'RESERVATION_CANCELLED', data: { holds: [fx(-2n)] } });
    expect(evolveCounter(base, e, 'DAY')).toMatchObject({ reserved: 0n });
    const old = event({
      type: 'RESERVATION_CANCELLED',
      data: { holds: [fx(-2n, new Date('2026-03-09T00:00:00Z'))] },
    });
    expect(evolveCounter(base, old, 'DAY')).toBe(base);
  });
});

describe('decideConsume (applyConsumes)', () => {
  it('records usage on every quota of the metric', () => {
    const state = given([day, month]);
    const { outcomes, changes } = applyConsumes(state, [consume(4n)], NOW);
    expect(outcomes[0]).toMatchObject({ ok: true, result: { allowed: true, sequence: 1n } });
    expect(changes.events.map((e) => e.type)).toEqual(['USAGE']);
    expect(changes.counters.map((c) => [c.period, c.state.used])).toEqual([
      ['DAY', 4n],
      ['MONTH', 4n],
    ]);
    expectCountersFold([], changes.events, state);
  });

  it('leaves no trace of a call that fails, not even its roll', () => {
    const history = consumed(given([day]), 3n);
    const state = given([day], history);
    state.lastSequence = 1n;
    const calls = [consume(1n, { metric: 'nothing' }), consume(2n)];
    const { outcomes, changes } = applyConsumes(state, calls, TOMORROW);
    expect(outcomes[0]).toMatchObject({ ok: false });
    expect((outcomes[0] as { error: QuotaError }).error.code).toBe('NOT_FOUND');
    // The second call rolls the day and charges the new one.
    expect(changes.events.map((e) => [e.type, e.sequence])).toEqual([
      ['RESET_SCHEDULED', 2n],
      ['USAGE', 3n],
    ]);
    expectCountersFold(history, changes.events, state);
  });

  it('undoes the roll a failing call recorded before it failed', () => {
    const history = consumed(given([day]), 3n);
    const state = given([day], history);
    // Recording 2^63 would overflow the counter: OUT_OF_RANGE, after the roll was recorded.
    const huge = consume(2n ** 63n, { mode: 'RECORD' });
    const { outcomes, changes } = applyConsumes(state, [huge, consume(2n)], TOMORROW);
    expect((outcomes[0] as { error: QuotaError }).error.code).toBe('OUT_OF_RANGE');
    expect(changes.events.map((e) => [e.type, e.sequence])).toEqual([
      ['RESET_SCHEDULED', 2n],
      ['USAGE', 3n],
    ]);
    expect(changes.counters).toHaveLength(1);
    expectCountersFold(history, changes.events, state);
  });

  it('refuses what does not fit and appends nothing', () => {
    const { outcomes, changes } = applyConsumes(given([day]), [consume(11n)], NOW);
    expect(outcomes[0]).toMatchObject({ ok: true, result: { allowed: false, recorded: false } });
    expect(changes.events).toEqual([]);
    expect(changes.counters).toEqual([]);
  });
});

describe('decideRefund', () => {
  const history = consumed(given([day]), 5n);
  const usage = { ...history[0]!, position: 1n } as StoredEvent;
  const cmd = {
    subject: 'alice',
    metric: 'api',
    amount: 3n,
    idempotencyKey: 'r1',
    usageIdempotencyKey: null,
    reason: null,
  };

  it('credits the period the named usage was charged in', () => {
    const state = given([day], history);
    const d = decideRefund(state, cmd, { prior: null, usage, refundedSoFar: 0n }, 'a', NOW);
    expect(d.changes.events.map((e) => e.type)).toEqual(['REFUND']);
    expect(d.result.quotas[0]).toMatchObject({ used: 2n });
    expectCountersFold(history, d.changes.events, state);
  });

  it('refuses more than is left of the usage', () => {
    const state = given([day], history);
    expect(() =>
      decideRefund(state, cmd, { prior: null, usage, refundedSoFar: 3n }, 'a', NOW),
    ).toThrow(/more than the 2 left/);
  });

  it('replays a refund already recorded under its key', () => {
    const prior = { ...usage, type: 'REFUND', amount: 3n, sequence: 2n } as StoredEvent;
    const d = decideRefund(
      given([day], history),
      cmd,
      { prior, usage: null, refundedSoFar: 0n },
      'a',
      NOW,
    );
    expect(d.result).toMatchObject({ replayed: true, sequence: 2n });
    expect(d.changes.events).toEqual([]);
  });

  it('needs role admin for a refund that names no usage', () => {
    const state = given([day], history);
    const unnamed = { ...cmd, idempotencyKey: null, unnamedAllowed: false };
    expect(() =>
      decideRefund(state, unnamed, { prior: null, usage: null, refundedSoFar: 0n }, 'a', NOW),
    ).toThrow(/needs role admin/);
  });
});

describe('decideReset', () => {
  it('resets the counters that exist, after rolling them', () => {
    const history = consumed(given([day, month]), 4n);
    const state = given([day, month], history);
    const d = decideReset(
      state,
      { subject: 'alice', metric: null, period: null, reason: 'x' },
      'op',
      TOMORROW,
    );
    // The day rolls first; then both counters, which exist, are reset.
    expect(d.changes.events.map((e) => [e.type, e.period, e.data.usedBefore])).toEqual([
      ['RESET_SCHEDULED', 'DAY', 4n],
      ['RESET_MANUAL', 'DAY', 0n],
      ['RESET_MANUAL', 'MONTH', 4n],
    ]);
    expect(d.result.eventsAppended).toBe(3);
    expectCountersFold(history, d.changes.events, state);
  });

  it('is NOT_FOUND for a subject without the quota', () => {
    expect(() =>
      decideReset(
        given([]),
        { subject: 'alice', metric: 'api', period: null, reason: null },
        'op',
        NOW,
      ),
    ).toThrow(/has no quota/);
  });
});

describe('decideSetQuota / decideDeleteQuota', () => {
  const set = {
    subject: 'alice',
    metric: 'api',
    period: 'DAY' as const,
    limit: 7n,
    timeZone: 'UTC',
    anchorDay: 0,
    reason: null,
  };
  it('records the settings and answers them', () => {
    const d = decideSetQuota(given([]), set, 'op', NOW);
    expect(d.changes.events[0]).toMatchObject({
      type: 'QUOTA_SET',
      data: { quota: { limit: 7n } },
    });
    expect(d.result.quota).toMatchObject({ limit: 7n, updatedAt: NOW });
  });
  it('deletes only a quota of the subject itself', () => {
    const del = { subject: 'alice', metric: 'api', period: 'DAY' as const, reason: null };
    expect(decideDeleteQuota(given([day]), del, 'op', NOW).changes.events[0]).toMatchObject({
      type: 'QUOTA_DELETED',
      data: { quota: { limit: 10n } },
    });
    expect(() => decideDeleteQuota(given([def({ subject: '*' })]), del, 'op', NOW)).toThrow(
      /no DAY quota of its own/,
    );
  });
});

describe('decideRoll', () => {
  it('records one RESET_SCHEDULED per ended period and nothing for current ones', () => {
    const history = consumed(given([day, month]), 4n);
    const state = given([day, month], history);
    const stage = new Stage(state);
    const live = decideRoll(stage, null, TOMORROW);
    expect(stage.events.map((e) => [e.type, e.period, e.data.usedBefore])).toEqual([
      ['RESET_SCHEDULED', 'DAY', 4n],
    ]);
    expect(live.map((q) => q.counter.used)).toEqual([0n, 4n]);
    expectCountersFold(history, stage.events, state);
  });
});

describe('reservation decisions', () => {
  const reserveCmd = {
    subject: 'alice',
    metric: 'api',
    amount: 6n,
    ttlMs: 60_000,
    idempotencyKey: null,
    attributes: {},
  };
  const made = () => {
    const state = given([day]);
    const d = decideReserve(state, reserveCmd, null, 'r1', 'svc', NOW);
    const events = d.changes.events;
    const hold = {
      reservationId: 'r1',
      metric: 'api',
      amount: 6n,
      expiresAt: new Date(NOW.getTime() + 60_000),
      sequence: events[0]!.sequence,
      holds: [{ period: 'DAY' as const, periodStart: periodContaining(day, NOW).start }],
    };
    return { events, hold };
  };

  it('holds the amount on every quota, and refuses what does not fit', () => {
    const { events } = made();
    expect(foldCounters(events).get(counterKey('api', 'DAY'))).toMatchObject({ reserved: 6n });
    const more = decideReserve(given([day], events), reserveCmd, null, 'r2', 'svc', NOW);
    expect(more.result.allowed).toBe(false);
    expect(more.changes.events).toEqual([]);
  });

  it('commits usage and releases the hold', () => {
    const { events, hold } = made();
    const state = given([day], events);
    const cmd = {
      subject: 'alice',
      reservationId: 'r1',
      amount: 4n,
      allowOverrun: false,
      reason: null,
    };
    const d = decideCommit(state, cmd, { hold, reserved: null, settled: null }, 'svc', NOW);
    expect(state.counters.get(counterKey('api', 'DAY'))).toMatchObject({ used: 4n, reserved: 0n });
    expectCountersFold(events, d.changes.events, state);
  });

  it('cancels, and replays a second cancel', () => {
    const { events, hold } = made();
    const state = given([day], events);
    const cmd = { subject: 'alice', reservationId: 'r1', reason: null };
    const d = decideCancel(state, cmd, { hold, reserved: null, settled: null }, 'svc', NOW);
    expect(d.result.quotas[0]).toMatchObject({ reserved: 0n, remaining: 10n });
    expectCountersFold(events, d.changes.events, state);
    const [reserved, settled] = [events[0], d.changes.events[0]].map((e) => ({
      ...e!,
      position: 0n,
    }));
    const again = decideCancel(
      given([day], [...events, ...d.changes.events]),
      cmd,
      { hold: null, reserved: reserved!, settled: settled! },
      'svc',
      NOW,
    );
    expect(again.result).toMatchObject({ replayed: true, sequence: settled!.sequence });
  });

  it('expires lapsed holds only', () => {
    const { events, hold } = made();
    const state = given([day], events);
    state.lapsed = [hold];
    expect(decideExpiry(state, NOW).result).toBe(0);
    const later = new Date(NOW.getTime() + 61_000);
    const d = decideExpiry(state, later);
    expect(d.result).toBe(1);
    expect(state.counters.get(counterKey('api', 'DAY'))).toMatchObject({ reserved: 0n });
    expectCountersFold(events, d.changes.events, state);
  });
});

describe('every decision writes the fold of the ledger', () => {
  it('holds for random runs of consumes, refunds and resets across period ends', () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('consume' as const), amount: fc.bigInt(1n, 12n) }),
      fc.record({ kind: fc.constant('refund' as const), amount: fc.bigInt(1n, 5n) }),
      fc.record({ kind: fc.constant('reset' as const) }),
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(step, fc.integer({ min: 0, max: 40 })), { maxLength: 30 }),
        (steps) => {
          const history: SequencedEvent[] = [];
          let hours = 0;
          for (const [s, advance] of steps) {
            hours += advance;
            const now = new Date(NOW.getTime() + hours * 3600_000);
            const state = given([day, month], history);
            try {
              const changes =
                s.kind === 'consume'
                  ? applyConsumes(state, [consume(s.amount, { mode: 'RECORD' })], now).changes
                  : s.kind === 'refund'
                    ? decideRefund(
                        state,
                        {
                          subject: 'alice',
                          metric: 'api',
                          amount: s.amount,
                          idempotencyKey: null,
                          usageIdempotencyKey: null,
                          reason: null,
                        },
                        { prior: null, usage: null, refundedSoFar: 0n },
                        'a',
                        now,
                      ).changes
                    : decideReset(
                        state,
                        { subject: 'alice', metric: null, period: null, reason: null },
                        'op',
                        now,
                      ).changes;
              expectCountersFold(history, changes.events, state);
              expect(
                changes.counters.every(
                  (c) => state.counters.get(counterKey(c.metric, c.period)) === c.state,
                ),
              ).toBe(true);
              history.push(...changes.events);
            } catch (err) {
              if (!(err instanceof QuotaError)) throw err;
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
