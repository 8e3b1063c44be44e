import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaError } from '../../src/domain/errors.js';
import type { PeriodKind } from '../../src/domain/period.js';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { getQuota, getQuotaAsOf } from '../../src/ledger/read.js';
import { refund } from '../../src/ledger/refund.js';
import { resetAllSubjects, resetSubject } from '../../src/ledger/reset.js';
import { deleteQuota, setQuota } from '../../src/ledger/quota-admin.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import { expireReservations } from '../../src/ledger/reservation-sweep.js';
import { cancelReservation, commitReservation, reserve } from '../../src/ledger/reservation.js';
import { createTestDatabase, TestClock, type TestDatabase } from '../support/db.js';

// Random command sequences against the real database; afterwards the projection must be
// exactly the fold of the ledger, and GetQuota(as_of = now) must equal GetQuota.

let t: TestDatabase;
let deps: LedgerDeps;
const clock = new TestClock(new Date('2026-01-01T00:00:00Z'));

beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());

const ZONES = ['UTC', 'America/New_York', 'Asia/Kolkata', 'Pacific/Chatham', 'Australia/Lord_Howe'];
const PERIODS: PeriodKind[] = ['DAY', 'WEEK', 'MONTH', 'NEVER'];

type Cmd =
  | {
      k: 'consume';
      who: number;
      amount: number;
      mode: 'ENFORCE' | 'RECORD' | 'DRY_RUN';
      key: number | null;
    }
  | { k: 'refund'; who: number; amount: number; key: number | null; usageKey: number | null }
  | { k: 'set'; who: number; period: PeriodKind; limit: number; zone: string; anchor: number }
  | { k: 'delete'; who: number; period: PeriodKind }
  | { k: 'reset'; who: number | null; period: PeriodKind | null }
  | { k: 'advance'; hours: number }
  | { k: 'reserve'; who: number; amount: number; ttlMinutes: number; key: number | null }
  | { k: 'commit'; who: number; hold: number; amount: number; overrun: boolean }
  | { k: 'cancel'; who: number; hold: number }
  | { k: 'expire' };

const who = fc.integer({ min: 0, max: 2 }); // subject 0 is "*", the defaults
const command: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('consume' as const),
      who: fc.integer({ min: 1, max: 2 }),
      amount: fc.integer({ min: 1, max: 40 }),
      mode: fc.constantFrom('ENFORCE' as const, 'RECORD' as const, 'DRY_RUN' as const),
      key: fc.option(fc.integer({ min: 0, max: 5 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('refund' as const),
      who: fc.integer({ min: 1, max: 2 }),
      amount: fc.integer({ min: 1, max: 30 }),
      key: fc.option(fc.integer({ min: 0, max: 5 })),
      usageKey: fc.option(fc.integer({ min: 0, max: 5 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('set' as const),
      who,
      period: fc.constantFrom(...PERIODS),
      limit: fc.integer({ min: 0, max: 120 }),
      zone: fc.constantFrom(...ZONES),
      anchor: fc.integer({ min: 0, max: 31 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('delete' as const),
      who,
      period: fc.constantFrom(...PERIODS),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('reset' as const),
      who: fc.option(fc.integer({ min: 1, max: 2 })),
      period: fc.option(fc.constantFrom(...PERIODS)),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('advance' as const),
      hours: fc.integer({ min: 1, max: 24 * 40 }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant('reserve' as const),
      who: fc.integer({ min: 1, max: 2 }),
      amount: fc.integer({ min: 1, max: 40 }),
      ttlMinutes: fc.integer({ min: 1, max: 24 * 60 }),
      key: fc.option(fc.integer({ min: 0, max: 5 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('commit' as const),
      who: fc.integer({ min: 1, max: 2 }),
      hold: fc.integer({ min: 0, max: 3 }),
      amount: fc.integer({ min: 1, max: 30 }),
      overrun: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('cancel' as const),
      who: fc.integer({ min: 1, max: 2 }),
      hold: fc.integer({ min: 0, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ k: 'expire' as const }) },
);

/** Reservation ids each run has been given, by subject index; commands pick one by number. */
let holds: string[][] = [[], [], []];
// Counted from the newest: the holds most likely still open (hold 0 is the last one made).
// A subject without holds yet lends the command to the other one, so settlements are common.
const holder = (who: number): number => (holds[who]!.length > 0 ? who : 3 - who);
const pick = (who: number, i: number): string =>
  holds[who]!.at(-1 - i) ?? '00000000-0000-0000-0000-000000000000';

let run = 0;

async function apply(c: Cmd, metric: string, subjects: string[]): Promise<void> {
  const s = (i: number) => subjects[i]!;
  const key = (i: number | null) => (i === null ? null : `${metric}-k${i}`);
  switch (c.k) {
    case 'consume':
      await consume(
        deps,
        {
          subject: s(c.who),
          metric,
          amount: BigInt(c.amount),
          idempotencyKey: key(c.key),
          mode: c.mode,
          attributes: {},
        },
        'prop',
      );
      return;
    case 'refund':
      await refund(
        deps,
        {
          subject: s(c.who),
          metric,
          amount: BigInt(c.amount),
          idempotencyKey: key(c.key),
          usageIdempotencyKey: key(c.usageKey),
          reason: null,
        },
        'prop',
      );
      return;
    case 'set':
      await setQuota(
        deps,
        {
          subject: s(c.who),
          metric,
          period: c.period,
          limit: BigInt(c.limit),
          timeZone: c.zone,
          anchorDay: c.period === 'MONTH' ? c.anchor : 0,
          reason: null,
        },
        'prop',
      );
      return;
    case 'delete':
      await deleteQuota(
        deps,
        { subject: s(c.who), metric, period: c.period, reason: null },
        'prop',
      );
      return;
    case 'reset':
      if (c.who === null)
        await resetAllSubjects(
          deps,
          { subject: null, metric, period: c.period, reason: null },
          'prop',
        );
      else
        await resetSubject(
          deps,
          s(c.who),
          { subject: s(c.who), metric, period: c.period, reason: null },
          'prop',
        );
      return;
    case 'advance':
      clock.advance(c.hours * 3_600_000);
      return;
    case 'reserve': {
      const r = await reserve(
        deps,
        {
          subject: s(c.who),
          metric,
          amount: BigInt(c.amount),
          ttlMs: c.ttlMinutes * 60_000,
          idempotencyKey: key(c.key),
          attributes: {},
        },
        'prop',
      );
      if (r.reservationId && !r.replayed) holds[c.who]!.push(r.reservationId);
      return;
    }
    case 'commit':
      await commitReservation(
        deps,
        {
          subject: s(holder(c.who)),
          reservationId: pick(holder(c.who), c.hold),
          amount: BigInt(c.amount),
          allowOverrun: c.overrun,
          reason: null,
        },
        'prop',
      );
      return;
    case 'cancel':
      await cancelReservation(
        deps,
        {
          subject: s(holder(c.who)),
          reservationId: pick(holder(c.who), c.hold),
          reason: null,
        },
        'prop',
      );
      return;
    case 'expire':
      await expireReservations(t.db, clock.now());
  }
}

describe('the projection is the fold of the ledger', () => {
  it('after random sequences of every command', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 5, maxLength: 40 }), async (cmds) => {
        const metric = `m${++run}`;
        // "*" carries the defaults; the two real subjects are new for every run.
        const subjects = ['*', `s${run}-a`, `s${run}-b`];
        holds = [[], [], []];
        for (const c of cmds) {
          try {
            await apply(c, metric, subjects);
          } catch (err) {
            // Refusals a caller can get (no quota, key reused, refund too large) are fine;
            // anything else is a bug.
            if (
              !(err instanceof QuotaError) ||
              ![
                'NOT_FOUND',
                'ALREADY_EXISTS',
                'FAILED_PRECONDITION',
                'OUT_OF_RANGE',
                'INVALID_ARGUMENT',
              ].includes(err.code)
            )
              throw err;
          }
        }
        for (const subject of subjects.slice(1)) {
          // No metric named: a subject without quotas answers [], so any error here is a bug.
          const current = await getQuota(deps, subject, null);
          const asOf = await getQuotaAsOf(deps, subject, null, clock.now());
          // as_of does not rebuild holds: it answers what was used.
          const unheld = current.map((q) => {
            const remaining = q.limit - q.used;
            return { ...q, reserved: 0n, remaining: remaining > 0n ? remaining : 0n };
          });
          expect(asOf).toEqual(unheld);
          for (const q of current) expect(q.used >= 0n && q.reserved >= 0n).toBe(true);
        }
        expect((await verifyProjection(t.db)).differences).toEqual([]);
      }),
      { numRuns: 40, seed: 20261123 },
    );
    // The runs really went through every reservation path, not just refusals.
    const { rows } = await t.db.query<{ type: string }>(
      `SELECT DISTINCT type FROM ledger_events WHERE type LIKE 'RESERV%' ORDER BY type`,
    );
    expect(rows.map((r) => r.type)).toEqual([
      'RESERVATION_CANCELLED',
      'RESERVATION_COMMITTED',
      'RESERVATION_EXPIRED',
      'RESERVED',
    ]);
  }, 120_000);
});
