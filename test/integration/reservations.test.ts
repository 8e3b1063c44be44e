import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { QuotaError } from '../../src/domain/errors.js';
import type { ReserveCommand } from '../../src/domain/reservation.js';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { getQuota } from '../../src/ledger/read.js';
import { expireReservations } from '../../src/ledger/reservation-sweep.js';
import { cancelReservation, commitReservation, reserve } from '../../src/ledger/reservation.js';
import { sweep } from '../../src/ledger/reset-sweep.js';
import { Metrics } from '../../src/metrics.js';
import { ResetScheduler } from '../../src/scheduler/reset-scheduler.js';
import { pino } from 'pino';
import {
  consumeCommand,
  createTestDatabase,
  defineQuota,
  expectProjectionClean,
  TestClock,
  type TestDatabase,
} from '../support/db.js';

let t: TestDatabase;
let deps: LedgerDeps;
const clock = new TestClock(new Date('2026-03-10T12:00:00Z'));
let n = 0;
const fresh = (p: string): string => `${p}-${++n}`;

const hold = (subject: string, amount: number, extra: Partial<ReserveCommand> = {}) =>
  reserve(
    deps,
    {
      subject,
      metric: 'api_calls',
      amount: BigInt(amount),
      ttlMs: 60_000,
      idempotencyKey: null,
      attributes: {},
      ...extra,
    },
    'tester',
  );
const commit = (subject: string, id: string, amount: number, allowOverrun = false) =>
  commitReservation(
    deps,
    { subject, reservationId: id, amount: BigInt(amount), allowOverrun, reason: null },
    'tester',
  );
const cancel = (subject: string, id: string) =>
  cancelReservation(deps, { subject, reservationId: id, reason: 'not needed' }, 'tester');

const failure = async (p: Promise<unknown>): Promise<{ code: string; message: string }> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof QuotaError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected the call to fail');
};

const status = async (subject: string) => {
  const [q] = await getQuota(deps, subject, 'api_calls');
  return { used: q!.used, reserved: q!.reserved, remaining: q!.remaining };
};

const types = async (subject: string): Promise<string[]> =>
  (
    await t.db.query<{ type: string }>(
      'SELECT type FROM ledger_events WHERE subject = $1 ORDER BY sequence',
      [subject],
    )
  ).rows.map((r) => r.type);

beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());
beforeEach(() => clock.set('2026-03-10T12:00:00Z'));
// VerifyProjection covers reservations: counters.reserved must equal the fold after each test.
afterEach(() => expectProjectionClean(t.db));

describe('Reserve', () => {
  it('holds the amount: GetQuota shows it, remaining = limit - used - reserved, and Consume counts it', async () => {
    const s = fresh('hold');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    await consume(deps, consumeCommand(s, { amount: 2n }), 'tester');
    const r = await hold(s, 5);
    expect(r.allowed).toBe(true);
    expect(r.reservationId).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.expiresAt).toEqual(new Date('2026-03-10T12:01:00Z'));
    expect(r.quotas[0]).toMatchObject({ used: 2n, reserved: 5n, remaining: 3n });
    expect(await status(s)).toEqual({ used: 2n, reserved: 5n, remaining: 3n });
    // 2 used + 5 held + 4 > 10: refused, and nothing is recorded.
    const c = await consume(deps, consumeCommand(s, { amount: 4n }), 'tester');
    expect(c.allowed).toBe(false);
    expect((await consume(deps, consumeCommand(s, { amount: 3n }), 'tester')).allowed).toBe(true);
  });

  it('is all or nothing across quotas, with retry hints, and a refusal records nothing', async () => {
    const s = fresh('refuse');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 100n });
    await defineQuota(deps, { subject: s, period: 'WEEK', limit: 6n });
    expect((await hold(s, 4)).allowed).toBe(true);
    const before = await types(s);
    const r = await hold(s, 3);
    expect(r.allowed).toBe(false);
    expect(r.reservationId).toBeNull();
    expect(r.retryAt).toEqual(new Date('2026-03-16T00:00:00Z'));
    expect(r.quotas.map((q) => [q.period, q.reserved, q.exceeded])).toEqual([
      ['DAY', 4n, false],
      ['WEEK', 4n, true],
    ]);
    expect(await types(s)).toEqual(before);
  });

  it('replays the same idempotency key, and refuses it for a different amount', async () => {
    const s = fresh('idem');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    const a = await hold(s, 3, { idempotencyKey: 'job-1' });
    const b = await hold(s, 3, { idempotencyKey: 'job-1' });
    expect(b).toMatchObject({
      replayed: true,
      reservationId: a.reservationId,
      sequence: a.sequence,
    });
    expect((await status(s)).reserved).toBe(3n);
    expect(await failure(hold(s, 4, { idempotencyKey: 'job-1' }))).toMatchObject({
      code: 'ALREADY_EXISTS',
    });
  });

  it('refuses a metric without quota (NOT_FOUND); near int64 a sum past the limit is refused, never wrapped', async () => {
    const s = fresh('nf');
    expect((await failure(hold(s, 1))).code).toBe('NOT_FOUND');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 2n ** 63n - 1n });
    expect((await hold(s, 2 ** 62)).allowed).toBe(true);
    // 2^62 held + 2^62 = 2^63: one past int64, so past every possible limit.
    expect((await hold(s, 2 ** 62)).allowed).toBe(false);
    expect((await status(s)).reserved).toBe(2n ** 62n);
  });
});

describe('CommitReservation and CancelReservation', () => {
  it('commit lower than the hold records the usage and releases the rest; a retry replays', async () => {
    const s = fresh('commit');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    const r = await hold(s, 6);
    const c = await commit(s, r.reservationId!, 4);
    expect(c.replayed).toBe(false);
    expect(c.quotas[0]).toMatchObject({ used: 4n, reserved: 0n, remaining: 6n });
    expect(await status(s)).toEqual({ used: 4n, reserved: 0n, remaining: 6n });
    const again = await commit(s, r.reservationId!, 4);
    expect(again).toMatchObject({ replayed: true, sequence: c.sequence });
    expect(await status(s)).toEqual({ used: 4n, reserved: 0n, remaining: 6n });
    const other = await failure(commit(s, r.reservationId!, 5));
    expect(other.code).toBe('FAILED_PRECONDITION');
    expect(other.message).toMatch(/already committed with amount 4/);
    expect((await failure(cancel(s, r.reservationId!))).code).toBe('FAILED_PRECONDITION');
    expect(await types(s)).toEqual(['QUOTA_SET', 'RESERVED', 'RESERVATION_COMMITTED']);
  });

  it('commit above the hold needs allow_overrun, and then must fit', async () => {
    const s = fresh('overrun');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    const r = await hold(s, 5);
    const other = await hold(s, 3);
    const noFlag = await failure(commit(s, r.reservationId!, 6));
    expect(noFlag.code).toBe('INVALID_ARGUMENT');
    expect(noFlag.message).toMatch(/^amount: .*allow_overrun/);
    // 8 does not fit: 3 held by the other reservation + 8 > 10. The hold stays open.
    const tooMuch = await failure(commit(s, r.reservationId!, 8, true));
    expect(tooMuch.code).toBe('FAILED_PRECONDITION');
    expect(await status(s)).toEqual({ used: 0n, reserved: 8n, remaining: 2n });
    const ok = await commit(s, r.reservationId!, 7, true);
    expect(ok.quotas[0]).toMatchObject({ used: 7n, reserved: 3n, remaining: 0n });
    await cancel(s, other.reservationId!);
    expect(await status(s)).toEqual({ used: 7n, reserved: 0n, remaining: 3n });
  });

  it('cancel releases everything; a retry replays; unknown ids are NOT_FOUND', async () => {
    const s = fresh('cancel');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    const r = await hold(s, 6);
    const c = await cancel(s, r.reservationId!);
    expect(c.quotas[0]).toMatchObject({ used: 0n, reserved: 0n, remaining: 10n });
    expect(await cancel(s, r.reservationId!)).toMatchObject({
      replayed: true,
      sequence: c.sequence,
    });
    expect((await failure(commit(s, r.reservationId!, 1))).message).toMatch(/already cancelled/);
    const unknown = await failure(cancel(s, '00000000-0000-0000-0000-000000000000'));
    expect(unknown.code).toBe('NOT_FOUND');
    expect((await failure(commit(fresh('nobody'), r.reservationId!, 1))).code).toBe('NOT_FOUND');
  });

  it('the database refuses a second settlement of one reservation', async () => {
    const s = fresh('once');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    const r = await hold(s, 2);
    const c = await cancel(s, r.reservationId!);
    const err = await t.owner
      .query(
        `INSERT INTO ledger_events (subject, sequence, type, metric, amount, actor, data, recorded_at)
         VALUES ($1, $2, 'RESERVATION_EXPIRED', 'api_calls', 2, 'x', $3, now())`,
        [s, c.sequence + 1n, JSON.stringify({ reservationId: r.reservationId })],
      )
      .then(
        () => null,
        (e: { code?: string }) => e.code,
      );
    expect(err).toBe('23505');
  });
});

describe('expiry', () => {
  it('a hold past expires_at stops counting at once; the sweep then writes RESERVATION_EXPIRED', async () => {
    const s = fresh('expire');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    const r = await hold(s, 8, { ttlMs: 5_000 });
    clock.advance(4_999);
    expect((await hold(s, 3)).allowed).toBe(false);
    clock.advance(1);
    // Nothing has run: the lazy rule alone frees the amount.
    expect(await status(s)).toEqual({ used: 0n, reserved: 0n, remaining: 10n });
    expect((await consume(deps, consumeCommand(s, { amount: 9n }), 'tester')).allowed).toBe(true);
    const late = await failure(commit(s, r.reservationId!, 1));
    expect(late.code).toBe('FAILED_PRECONDITION');
    expect(late.message).toMatch(/expired at 2026-03-10T12:00:05.000Z/);
    expect((await failure(cancel(s, r.reservationId!))).message).toMatch(/expired/);
    expect(await expireReservations(t.db, clock.now())).toBeGreaterThanOrEqual(1);
    expect(await types(s)).toContain('RESERVATION_EXPIRED');
    expect((await failure(commit(s, r.reservationId!, 1))).message).toMatch(/already expired/);
    const row = await t.db.query(
      'SELECT reserved::text FROM counters WHERE subject = $1 AND period = $2',
      [s, 'DAY'],
    );
    expect(row.rows[0]).toEqual({ reserved: '0' });
  });
});

describe('the scheduler', () => {
  it('arms its timer for the next hold expiry and, when it fires, writes RESERVATION_EXPIRED', async () => {
    const s = fresh('timer');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    await hold(s, 2, { ttlMs: 1_000 });
    const metrics = new Metrics({ defaultMetrics: false });
    const scheduler = new ResetScheduler({
      db: t.db,
      clock,
      logger: pino({ level: 'silent' }),
      metrics,
      cron: '0 0 1 1 *',
      timeZone: 'UTC',
      replicaId: 'test',
      maxAttempts: 1,
      retryBaseMs: 10,
      batchSize: 100,
      maxTimerMs: 3_600_000,
    });
    try {
      const before = Date.now();
      await scheduler.armTimer();
      // Set for the expiry 1 s ahead (by the service clock), not for the next period boundary.
      expect(scheduler.status().nextRunTime!.getTime() - before).toBeLessThanOrEqual(1_050);
      clock.advance(1_000);
      // The event commits before the sweep's caller counts it: wait for both.
      const settled = () =>
        metrics.registry.getSingleMetricAsString('quota_reservations_settled_total');
      const deadline = Date.now() + 15_000;
      while (
        !(await types(s)).includes('RESERVATION_EXPIRED') ||
        !/outcome="expired"\} [1-9]/.test(await settled())
      ) {
        if (Date.now() > deadline) throw new Error('the timer did not expire and count the hold');
        await new Promise((ok) => setTimeout(ok, 20));
      }
    } finally {
      await scheduler.stop();
    }
  });
});

describe('period boundary', () => {
  it('a hold belongs to its period and vanishes with its roll; a commit after the roll is charged to the current period', async () => {
    const s = fresh('boundary');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    clock.set('2026-03-10T23:30:00Z');
    const r = await hold(s, 8, { ttlMs: 3_600_000 });
    expect(await status(s)).toMatchObject({ reserved: 8n, remaining: 2n });
    clock.set('2026-03-11T00:10:00Z');
    // The new day starts with nothing held, whether the sweep ran or not ...
    expect(await status(s)).toEqual({ used: 0n, reserved: 0n, remaining: 10n });
    await sweep(t.db, { now: clock.now(), batchSize: 10, runId: 'r' });
    // ... and the hold, still open until its ttl, is charged to the new day when committed.
    const c = await commit(s, r.reservationId!, 6);
    expect(c.quotas[0]).toMatchObject({
      used: 6n,
      reserved: 0n,
      periodStart: new Date('2026-03-11T00:00:00Z'),
    });
    expect(await status(s)).toEqual({ used: 6n, reserved: 0n, remaining: 4n });
  });

  it('a cancel after the roll releases nothing from the new period', async () => {
    const s = fresh('boundary-cancel');
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    clock.set('2026-03-10T23:30:00Z');
    const r = await hold(s, 8, { ttlMs: 3_600_000 });
    clock.set('2026-03-11T00:10:00Z');
    const other = await hold(s, 7);
    await cancel(s, r.reservationId!);
    expect(await status(s)).toEqual({ used: 0n, reserved: 7n, remaining: 3n });
    await cancel(s, other.reservationId!);
  });
});

describe('under concurrency', () => {
  it('64 callers reserving, committing, cancelling and letting holds expire never overspend one limit', async () => {
    const s = fresh('race');
    const LIMIT = 100n;
    await defineQuota(deps, { subject: s, period: 'DAY', limit: LIMIT });
    const committed: bigint[] = [];
    // Each caller's choice is fixed by its index, so every run exercises all four paths.
    const caller = async (i: number): Promise<void> => {
      const amount = 1 + (i % 7);
      const r = await hold(s, amount, { ttlMs: 1_000 + (i % 4) * 1_000 });
      if (!r.allowed) return;
      switch (i % 4) {
        case 0:
          await commit(s, r.reservationId!, amount);
          committed.push(BigInt(amount));
          break;
        case 1:
          await commit(s, r.reservationId!, Math.max(1, amount - 2));
          committed.push(BigInt(Math.max(1, amount - 2)));
          break;
        case 2:
          await cancel(s, r.reservationId!);
          break;
        default:
          break; // left to expire
      }
    };
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 64 }, (_, i) => caller(i)));
      const q = await status(s);
      expect(q.used + q.reserved).toBeLessThanOrEqual(LIMIT);
      // The holds left open expire: the clock moves past every ttl and the sweep runs.
      clock.advance(5_000);
      await expireReservations(t.db, clock.now());
    }
    const q = await status(s);
    expect(q.reserved).toBe(0n);
    expect(q.used).toBe(committed.reduce((a, b) => a + b, 0n));
    expect(q.used).toBeLessThanOrEqual(LIMIT);
    const open = await t.db.query(
      'SELECT count(*)::int AS n FROM reservations WHERE subject = $1',
      [s],
    );
    expect(open.rows[0]).toEqual({ n: 0 });
  });
});
