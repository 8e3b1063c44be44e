import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ConsumeCommand, LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { getQuota, getQuotaAsOf } from '../../src/ledger/read.js';
import { refund } from '../../src/ledger/refund.js';
import { reserve } from '../../src/ledger/reservation.js';
import { resetAllSubjects, resetSubject } from '../../src/ledger/reset.js';
import { deleteQuota, setQuota } from '../../src/ledger/quota-admin.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import { createTestDatabase, TestClock, type TestDatabase } from '../support/db.js';

let t: TestDatabase;
let deps: LedgerDeps;
const clock = new TestClock(new Date('2026-03-10T12:00:00Z'));
let n = 0;
// Every subject a test makes; after each test its projection must equal the fold of its ledger.
let touched: string[] = [];
const fresh = (prefix: string): string => {
  const s = `${prefix}-${++n}`;
  touched.push(s);
  return s;
};

/** A call's outcome as a value, so that an unexpected error fails an assertion. */
const outcome = <T>(
  p: Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );

/** The stored counters of a subject's "messages" quotas, as [period, used], DAY..NEVER. */
const stored = async (subject: string, metric = 'messages') =>
  (
    await t.db.query<{ period: string; used: string }>(
      `SELECT period, used::text FROM counters WHERE subject = $1 AND metric = $2
        ORDER BY array_position(ARRAY['DAY','WEEK','MONTH','NEVER'], period)`,
      [subject, metric],
    )
  ).rows.map((r) => [r.period, BigInt(r.used)]);

const eventCount = async (subject: string): Promise<number> =>
  (
    await t.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM ledger_events WHERE subject = $1',
      [subject],
    )
  ).rows[0]!.n;

const use = (subject: string, amount: number, extra: Partial<ConsumeCommand> = {}) =>
  consume(
    deps,
    {
      subject,
      metric: 'messages',
      amount: BigInt(amount),
      idempotencyKey: null,
      mode: 'ENFORCE',
      attributes: {},
      ...extra,
    },
    'tester',
  );

const quota = (
  subject: string,
  period: 'DAY' | 'WEEK' | 'MONTH' | 'NEVER',
  limit: number,
  timeZone = 'UTC',
  anchorDay = 0,
) =>
  setQuota(
    deps,
    {
      subject,
      metric: 'messages',
      period,
      limit: BigInt(limit),
      timeZone,
      anchorDay,
      reason: null,
    },
    'tester',
  );

const events = async (subject: string) =>
  (
    await t.db.query(
      'SELECT type, amount, period, period_start FROM ledger_events WHERE subject = $1 ORDER BY sequence',
      [subject],
    )
  ).rows;

beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());
beforeEach(() => {
  clock.set('2026-03-10T12:00:00Z');
  touched = [];
});
afterEach(async () => {
  for (const subject of touched) {
    expect((await verifyProjection(t.db, { subject })).differences, subject).toEqual([]);
    const negative = (await stored(subject)).filter(([, used]) => (used as bigint) < 0n);
    expect(negative, subject).toEqual([]);
  }
});

describe('consume', () => {
  it('charges within the limit and refuses beyond it, saying when it resets', async () => {
    const s = fresh('alice');
    await quota(s, 'DAY', 3);
    for (let i = 0; i < 3; i++) expect((await use(s, 1)).allowed).toBe(true);
    const denied = await use(s, 1);
    expect(denied.allowed).toBe(false);
    expect(denied.recorded).toBe(false);
    expect(denied.retryAt).toEqual(new Date('2026-03-11T00:00:00Z'));
    expect(denied.quotas[0]).toMatchObject({ used: 3n, remaining: 0n, exceeded: true });
    expect((await events(s)).map((e) => e.type)).toEqual(['QUOTA_SET', 'USAGE', 'USAGE', 'USAGE']);
    expect(await stored(s)).toEqual([['DAY', 3n]]);
  });

  it('is all-or-nothing across several quotas on one metric', async () => {
    const s = fresh('multi');
    await quota(s, 'DAY', 200);
    await quota(s, 'WEEK', 250);
    expect((await use(s, 200)).allowed).toBe(true);
    clock.set('2026-03-11T12:00:00Z');
    const r = await use(s, 60);
    expect(r.allowed).toBe(false);
    expect(r.quotas.map((q) => [q.period, q.used, q.exceeded])).toEqual([
      ['DAY', 0n, false],
      ['WEEK', 200n, true],
    ]);
    // Nothing charged anywhere: the DAY counter that had room is as untouched as the WEEK one.
    expect(await stored(s)).toEqual([
      ['DAY', 0n],
      ['WEEK', 200n],
    ]);
    expect((await events(s)).filter((e) => e.type === 'USAGE')).toHaveLength(1);
    expect((await use(s, 50)).allowed).toBe(true);
    const q = await getQuota(deps, s, 'messages');
    expect(q.map((x) => x.used)).toEqual([50n, 250n]);
    expect(await stored(s)).toEqual([
      ['DAY', 50n],
      ['WEEK', 250n],
    ]);
  });

  it('uses the "*" default for subjects without their own quota, and their own when set', async () => {
    const metric = fresh('m').replace('-', '');
    await setQuota(
      deps,
      {
        subject: '*',
        metric,
        period: 'DAY',
        limit: 2n,
        timeZone: 'UTC',
        anchorDay: 0,
        reason: null,
      },
      'tester',
    );
    const s = fresh('bob');
    const c = (amount: number) => use(s, amount, { metric });
    expect((await c(2)).quotas[0]).toMatchObject({ isDefault: true, used: 2n, limit: 2n });
    expect((await c(1)).allowed).toBe(false);
    await setQuota(
      deps,
      {
        subject: s,
        metric,
        period: 'DAY',
        limit: 5n,
        timeZone: 'UTC',
        anchorDay: 0,
        reason: 'upgrade',
      },
      'tester',
    );
    // Usage so far in the period carries over to the subject's own quota.
    const r = await c(3);
    expect(r.allowed).toBe(true);
    expect(r.quotas[0]).toMatchObject({ isDefault: false, used: 5n, limit: 5n });
  });

  it('refuses an unknown metric with NOT_FOUND naming subject and metric', async () => {
    await expect(use('nobody', 1, { metric: 'nothing' })).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringMatching(/"nobody".*"nothing"/),
    });
  });

  it('RECORD always records and reports going over; DRY_RUN records nothing', async () => {
    const s = fresh('rec');
    await quota(s, 'DAY', 5);
    const dry = await use(s, 4, { mode: 'DRY_RUN' });
    expect(dry).toMatchObject({ allowed: true, recorded: false, sequence: 0n });
    const rec = await use(s, 7, { mode: 'RECORD' });
    expect(rec).toMatchObject({ allowed: false, recorded: true });
    expect(rec.quotas[0]).toMatchObject({ used: 7n, remaining: 0n, exceeded: true });
    expect((await use(s, 1, { mode: 'DRY_RUN' })).allowed).toBe(false);
  });

  it('refuses a RECORD that would overflow int64 and writes nothing', async () => {
    const s = fresh('big');
    await quota(s, 'NEVER', 10);
    const max = 2n ** 63n - 1n;
    await use(s, 0, { mode: 'RECORD', amount: max });
    const before = (await events(s)).length;
    await expect(use(s, 0, { mode: 'RECORD', amount: 1n })).rejects.toMatchObject({
      code: 'OUT_OF_RANGE',
    });
    expect((await events(s)).length).toBe(before);
  });

  it('rolls back a consume whose caller gave up before the commit', async () => {
    const s = fresh('deadline');
    await quota(s, 'DAY', 10);
    const before = await events(s);
    const gone = AbortSignal.abort();
    await expect(
      consume(
        deps,
        {
          subject: s,
          metric: 'messages',
          amount: 1n,
          idempotencyKey: 'k',
          mode: 'ENFORCE',
          attributes: {},
        },
        'tester',
        gone,
      ),
    ).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
      message: expect.stringMatching(/nothing was recorded/),
    });
    expect(await events(s)).toEqual(before);
    expect((await getQuota(deps, s, 'messages'))[0]!.used).toBe(0n);
  });

  it('replays an idempotent retry and refuses the key for a different usage', async () => {
    const s = fresh('idem');
    await quota(s, 'DAY', 10);
    const first = await use(s, 4, { idempotencyKey: 'k1' });
    await use(s, 1);
    const before = await eventCount(s);
    const again = await outcome(use(s, 4, { idempotencyKey: 'k1' }));
    expect(again).toMatchObject({
      ok: true,
      value: { replayed: true, sequence: first.sequence, allowed: true },
    });
    expect(again.ok && again.value.quotas).toEqual(first.quotas);
    // The retry recorded nothing and charged nothing.
    expect(await eventCount(s)).toBe(before);
    expect(await stored(s)).toEqual([['DAY', 5n]]);
    await expect(use(s, 5, { idempotencyKey: 'k1' })).rejects.toMatchObject({
      code: 'ALREADY_EXISTS',
    });
    expect(await eventCount(s)).toBe(before);
    expect((await getQuota(deps, s, 'messages'))[0]!.used).toBe(5n);
  });

  it('replays every part of an answer from the ledger, which keeps it without repeating the event', async () => {
    const s = fresh('answer');
    await quota(s, 'DAY', 10, 'Europe/Berlin');
    await quota(s, 'MONTH', 12, 'America/New_York', 31);
    await quota(s, 'NEVER', 100);
    await use(s, 3);
    clock.advance(60_000);
    await resetSubject(
      deps,
      s,
      { subject: s, metric: 'messages', period: 'DAY', reason: null },
      'ops',
    );
    await reserve(
      deps,
      {
        subject: s,
        metric: 'messages',
        amount: 2n,
        ttlMs: 60_000,
        idempotencyKey: null,
        attributes: {},
      },
      'tester',
    );
    // Over the month's limit (3 used + 2 held + 9 > 12) but recorded: every field is set somewhere.
    const first = await use(s, 9, { idempotencyKey: 'k', mode: 'RECORD' });
    expect(first).toMatchObject({ allowed: false, recorded: true });
    expect(
      first.quotas.map((q) => [q.period, q.used, q.reserved, q.remaining, q.exceeded]),
    ).toEqual([
      ['DAY', 9n, 2n, 0n, true],
      ['MONTH', 12n, 2n, 0n, true],
      ['NEVER', 12n, 2n, 86n, false],
    ]);
    expect(first.quotas[0]!.lastResetAt).toEqual(clock.now());
    const again = await use(s, 9, { idempotencyKey: 'k', mode: 'RECORD' });
    expect(again).toMatchObject({ replayed: true, allowed: false, sequence: first.sequence });
    expect(again.quotas).toEqual(first.quotas);
    const { rows } = await t.db.query<{ data: Record<string, unknown> }>(
      "SELECT data FROM ledger_events WHERE subject = $1 AND idempotency_key = 'k'",
      [s],
    );
    expect(Object.keys(rows[0]!.data).sort()).toEqual(['answer', 'effects', 'overLimit']);
    expect(rows[0]!.data.answer).toEqual([
      {
        timeZone: 'Europe/Berlin',
        anchorDay: 0,
        limit: '10',
        used: '9',
        reserved: '2',
        lastResetAt: clock.now().toISOString(),
        exceeded: true,
      },
      {
        timeZone: 'America/New_York',
        anchorDay: 31,
        limit: '12',
        used: '12',
        reserved: '2',
        exceeded: true,
      },
      { timeZone: 'UTC', anchorDay: 0, limit: '100', used: '12', reserved: '2' },
    ]);
  });
});

describe('periods', () => {
  it('rolls an ended period lazily with one reset event, even across many missed periods', async () => {
    const s = fresh('lazy');
    await quota(s, 'DAY', 3, 'America/New_York');
    await use(s, 3);
    clock.set('2026-03-20T12:00:00Z'); // ten days later, across the DST change
    const r = await use(s, 1);
    expect(r.allowed).toBe(true);
    expect(r.quotas[0]).toMatchObject({
      used: 1n,
      periodStart: new Date('2026-03-20T04:00:00Z'),
      periodEnd: new Date('2026-03-21T04:00:00Z'),
    });
    const resets = (await events(s)).filter((e) => e.type === 'RESET_SCHEDULED');
    expect(resets).toHaveLength(1);
    expect(await stored(s)).toEqual([['DAY', 1n]]);
  });

  it('anchors billing months on day 31 without drifting', async () => {
    const s = fresh('anchor');
    clock.set('2026-01-31T10:00:00Z');
    await setQuota(
      deps,
      {
        subject: s,
        metric: 'messages',
        period: 'MONTH',
        limit: 10n,
        timeZone: 'UTC',
        anchorDay: 31,
        reason: null,
      },
      'tester',
    );
    const starts: string[] = [];
    for (const now of [
      '2026-01-31T10:00:00Z',
      '2026-02-28T10:00:00Z',
      '2026-03-31T10:00:00Z',
      '2026-04-30T10:00:00Z',
    ]) {
      clock.set(now);
      starts.push((await use(s, 1)).quotas[0]!.periodStart.toISOString().slice(0, 10));
    }
    expect(starts).toEqual(['2026-01-31', '2026-02-28', '2026-03-31', '2026-04-30']);
  });
});

describe('refund', () => {
  it('gives back usage in the current periods, never below zero', async () => {
    const s = fresh('ref');
    await quota(s, 'DAY', 10);
    await quota(s, 'WEEK', 100);
    await use(s, 3);
    clock.set('2026-03-11T12:00:00Z');
    await use(s, 2);
    const give = (amount: bigint) =>
      outcome(
        refund(
          deps,
          {
            subject: s,
            metric: 'messages',
            amount,
            idempotencyKey: null,
            usageIdempotencyKey: null,
            reason: 'bad call',
          },
          'tester',
        ),
      );
    const r = await give(4n);
    expect(r.ok, String(!r.ok && r.error)).toBe(true);
    if (!r.ok) return;
    expect(r.value.quotas.map((q) => q.used)).toEqual([0n, 1n]);
    expect(r.value.credited.map((c) => [c.period, c.delta])).toEqual([
      ['DAY', 2n],
      ['WEEK', 4n],
    ]);
    // The stored counters say the same as the answer.
    expect(await stored(s)).toEqual([
      ['DAY', 0n],
      ['WEEK', 1n],
    ]);
    // More than is left: everything left comes back, nothing below zero.
    const all = await give(50n);
    expect(all.ok, String(!all.ok && all.error)).toBe(true);
    if (!all.ok) return;
    expect(all.value.credited.map((c) => [c.period, c.delta])).toEqual([['WEEK', 1n]]);
    expect(all.value.quotas.map((q) => q.used)).toEqual([0n, 0n]);
    expect(await stored(s)).toEqual([
      ['DAY', 0n],
      ['WEEK', 0n],
    ]);
  });

  it('credits only the period the named usage was charged in', async () => {
    const s = fresh('refk');
    await quota(s, 'DAY', 10);
    await quota(s, 'MONTH', 100);
    await use(s, 5, { idempotencyKey: 'u1' });
    clock.set('2026-03-12T12:00:00Z');
    await use(s, 2);
    const r = await refund(
      deps,
      {
        subject: s,
        metric: 'messages',
        amount: 5n,
        idempotencyKey: 'u1',
        usageIdempotencyKey: null,
        reason: null,
      },
      'tester',
    );
    // The day of the usage has ended; its month has not.
    expect(r.quotas.map((q) => [q.period, q.used])).toEqual([
      ['DAY', 2n],
      ['MONTH', 2n],
    ]);
    expect(await stored(s)).toEqual([
      ['DAY', 2n],
      ['MONTH', 2n],
    ]);
    const before = await eventCount(s);
    await expect(
      refund(
        deps,
        {
          subject: s,
          metric: 'messages',
          amount: 1n,
          idempotencyKey: 'r2',
          usageIdempotencyKey: 'u1',
          reason: null,
        },
        'tester',
      ),
    ).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    expect(await eventCount(s)).toBe(before);
    expect(await stored(s)).toEqual([
      ['DAY', 2n],
      ['MONTH', 2n],
    ]);
  });
});

describe('reset, delete and history', () => {
  it('resets one subject or every subject, and answers as_of from the ledger', async () => {
    const metric = 'resets';
    await setQuota(
      deps,
      {
        subject: '*',
        metric,
        period: 'DAY',
        limit: 10n,
        timeZone: 'UTC',
        anchorDay: 0,
        reason: null,
      },
      'tester',
    );
    const [a, b] = [fresh('ra'), fresh('rb')];
    await use(a, 4, { metric });
    await use(b, 6, { metric });
    const before = clock.now();
    clock.advance(60_000);
    const one = await resetSubject(
      deps,
      a,
      { subject: a, metric, period: null, reason: 'support ticket' },
      'ops',
    );
    expect(one).toMatchObject({ eventsAppended: 1 });
    expect(one.quotas[0]).toMatchObject({ used: 0n, lastResetAt: clock.now() });
    expect(await stored(a, metric)).toEqual([['DAY', 0n]]);
    expect(await stored(b, metric)).toEqual([['DAY', 6n]]);
    const all = await resetAllSubjects(
      deps,
      { subject: null, metric, period: 'DAY', reason: 'incident' },
      'ops',
    );
    expect(all.eventsAppended).toBe(2);
    expect(await stored(b, metric)).toEqual([['DAY', 0n]]);
    expect((await getQuota(deps, b, metric))[0]!.used).toBe(0n);
    expect((await getQuotaAsOf(deps, b, metric, before))[0]!.used).toBe(6n);
  });

  it('deletes a quota, after which the metric is unknown for the subject', async () => {
    const s = fresh('del');
    await quota(s, 'DAY', 1);
    await deleteQuota(
      deps,
      { subject: s, metric: 'messages', period: 'DAY', reason: null },
      'tester',
    );
    await expect(use(s, 1)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(
      deleteQuota(deps, { subject: s, metric: 'messages', period: 'DAY', reason: null }, 'tester'),
    ).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  // Even the table's owner is stopped by the trigger (the service's role has no such grants).
  it('the database refuses to change or delete ledger events', async () => {
    await expect(
      t.owner.query("UPDATE ledger_events SET amount = 1 WHERE type = 'USAGE'"),
    ).rejects.toThrow(/append-only/);
    await expect(t.owner.query('DELETE FROM ledger_events')).rejects.toThrow(/append-only/);
    await expect(t.owner.query('TRUNCATE ledger_events')).rejects.toThrow(/append-only/);
  });

  it('refuses a second RESET_SCHEDULED for the same counter and period start', async () => {
    const s = `dup-${++n}`; // raw inserts with no counter: left out of the afterEach check
    const ins = `INSERT INTO ledger_events (subject, sequence, type, metric, period, period_start, actor, recorded_at)
                 VALUES ($1, $2, 'RESET_SCHEDULED', 'messages', 'DAY', '2026-03-10T00:00:00Z', 'x', now())`;
    await t.owner.query(ins, [s, 1]);
    await expect(t.owner.query(ins, [s, 2])).rejects.toThrow(/ledger_events_one_scheduled_reset/);
  });

  it('keeps the projection equal to the fold of the ledger', async () => {
    expect((await verifyProjection(t.db)).differences).toEqual([]);
  });
});
