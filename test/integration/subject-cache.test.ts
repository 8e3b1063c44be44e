import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { consume, consumeMany } from '../../src/ledger/consume.js';
import { refund } from '../../src/ledger/refund.js';
import { reserve } from '../../src/ledger/reservation.js';
import { SubjectCache } from '../../src/ledger/subject-cache.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import {
  consumeCommand as cmd,
  createTestDatabase,
  defineQuota,
  expectProjectionClean,
  TestClock,
  type TestDatabase,
} from '../support/db.js';

// Two replicas of the service on one database, each keeping the states its own appends left
// (SubjectCache): whatever one does must never let the other decide from a state that is no
// longer the database's.

let t: TestDatabase;
const clock = new TestClock(new Date('2026-05-04T09:00:00Z'));
let a: LedgerDeps;
let b: LedgerDeps;

beforeAll(async () => {
  t = await createTestDatabase();
  a = { db: t.db, clock, cache: new SubjectCache(1000) };
  b = { db: t.db, clock, cache: new SubjectCache(1000) };
});
afterAll(() => t.drop());
afterEach(async () => {
  vi.restoreAllMocks();
  await expectProjectionClean(t.db);
});

const allowed = async (deps: LedgerDeps, subject: string, extra = {}): Promise<boolean> =>
  (await consume(deps, cmd(subject, extra), 'test')).allowed;

const usages = async (subject: string): Promise<number> =>
  (
    await t.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM ledger_events WHERE subject = $1 AND type = 'USAGE'",
      [subject],
    )
  ).rows[0]!.n;

describe('deciding from the state the last append left', () => {
  it('takes one statement for a Consume after the first, two without a kept state', async () => {
    await defineQuota(a, { subject: 'one-trip', period: 'DAY', limit: 100n });
    expect(await allowed(a, 'one-trip')).toBe(true);
    const query = vi.spyOn(t.db, 'query');
    expect(await allowed(a, 'one-trip')).toBe(true);
    expect(query).toHaveBeenCalledTimes(1);
    query.mockClear();
    // Replica b has kept nothing of this subject: it reads first.
    expect(await allowed(b, 'one-trip')).toBe(true);
    expect(query).toHaveBeenCalledTimes(2);
    expect(await usages('one-trip')).toBe(3);
  });

  it("sees another replica's usage: a kept state it made stale is refused by the append", async () => {
    await defineQuota(a, { subject: 'shared', period: 'DAY', limit: 3n });
    expect(await allowed(a, 'shared')).toBe(true);
    expect(await allowed(b, 'shared', { amount: 2n })).toBe(true);
    // a still keeps used = 1; the limit is reached.
    expect(await allowed(a, 'shared')).toBe(false);
    expect(await usages('shared')).toBe(2);
  });

  it("sees another replica's refund: a refusal from a kept state is decided again from a read", async () => {
    await defineQuota(a, { subject: 'refunded', period: 'DAY', limit: 2n });
    expect(await allowed(a, 'refunded', { amount: 2n })).toBe(true);
    await refund(
      b,
      {
        subject: 'refunded',
        metric: 'api_calls',
        amount: 2n,
        idempotencyKey: null,
        usageIdempotencyKey: null,
        reason: null,
      },
      'test',
    );
    // a keeps used = 2 and would refuse; the database has room again.
    expect(await allowed(a, 'refunded')).toBe(true);
  });

  it('sees a change of the defaults made elsewhere, which does not touch the subject', async () => {
    await defineQuota(a, { subject: '*', metric: 'exports', period: 'DAY', limit: 10n });
    const exp = { metric: 'exports' };
    expect(await allowed(a, 'by-default', exp)).toBe(true);
    await defineQuota(b, { subject: '*', metric: 'exports', period: 'DAY', limit: 1n });
    expect(await allowed(a, 'by-default', exp)).toBe(false);
    await defineQuota(b, { subject: '*', metric: 'exports', period: 'DAY', limit: 5n });
    expect(await allowed(a, 'by-default', exp)).toBe(true);
  });

  it('sees a repaired projection: repair moves the version a kept state names', async () => {
    await defineQuota(a, { subject: 'repaired', period: 'DAY', limit: 3n });
    expect(await allowed(a, 'repaired')).toBe(true);
    // An operator breaks the counter, and repair puts the ledger's value back: the kept state
    // (used = 1) equals the repaired one, but its version is gone, so it is read again.
    await t.owner.query("UPDATE counters SET used = 3 WHERE subject = 'repaired'");
    await verifyProjection(t.db, { subject: 'repaired', repair: true });
    const query = vi.spyOn(t.db, 'query');
    expect(await allowed(a, 'repaired', { amount: 2n })).toBe(true);
    expect(query).toHaveBeenCalledTimes(3);
    expect(await allowed(a, 'repaired')).toBe(false);
  });

  // "null" too: keyless events must not pass for a usage recorded under the key "null".
  it.each(['k1', 'null'])(
    'replays a retried key (%s) found at the limit, and records it only once',
    async (key) => {
      const subject = `keyed-${key}`;
      await defineQuota(a, { subject, period: 'DAY', limit: 3n });
      const first = await consume(a, cmd(subject, { idempotencyKey: key }), 'test');
      expect(first).toMatchObject({ allowed: true, replayed: false });
      // A retry decided from the kept state looks new and fits: the unique index refuses the
      // second usage and the locked rerun replays the first answer.
      const retry = await consume(a, cmd(subject, { idempotencyKey: key }), 'test');
      expect(retry).toMatchObject({ allowed: true, replayed: true, sequence: first.sequence });
      expect(await allowed(a, subject)).toBe(true);
      // One flush: a plain call that takes the last unit, then the key again. From the kept
      // state the key looks new and is refused while the flush still appends (the plain call),
      // so only the outcome's needsRead sends it back to a read, which finds the usage to replay.
      const [plain, late] = await consumeMany(a, [
        { cmd: cmd(subject), actor: 'test' },
        { cmd: cmd(subject, { idempotencyKey: key }), actor: 'test' },
      ]);
      expect(plain).toMatchObject({ ok: true, result: { allowed: true } });
      expect(late).toMatchObject({
        ok: true,
        result: { allowed: true, replayed: true, sequence: first.sequence },
      });
      expect(await usages(subject)).toBe(3);
    },
  );

  it('keeps no state with open holds: only a read knows which have lapsed', async () => {
    await defineQuota(a, { subject: 'held', period: 'DAY', limit: 10n });
    await reserve(
      a,
      {
        subject: 'held',
        metric: 'api_calls',
        amount: 5n,
        ttlMs: 60_000,
        idempotencyKey: null,
        attributes: {},
      },
      'test',
    );
    expect(await allowed(a, 'held')).toBe(true);
    expect(a.cache!.states(['held'], ['api_calls'])).toBeNull();
    clock.advance(120_000);
    // The hold has lapsed: 1 used + 5 fits in 10 only if it no longer counts.
    expect(await allowed(a, 'held', { amount: 5n })).toBe(true);
  });

  it('64 callers on two replicas grant exactly the limit', async () => {
    await defineQuota(a, { subject: 'raced', period: 'DAY', limit: 40n });
    expect(await allowed(a, 'raced')).toBe(true);
    expect(await allowed(b, 'raced')).toBe(true);
    const answers = await Promise.all(
      Array.from({ length: 64 }, (_, i) => allowed(i % 2 ? a : b, 'raced')),
    );
    expect(answers.filter(Boolean)).toHaveLength(38);
    expect(await usages('raced')).toBe(40);
  });

  it('reports what became of each kept state', async () => {
    const outcomes: string[] = [];
    const c: LedgerDeps = {
      db: t.db,
      clock,
      cache: new SubjectCache(10),
      observer: {
        transaction: () => {},
        read: () => {},
        eventsAppended: () => {},
        keptState: (o) => outcomes.push(o),
      },
    };
    const giveBack = () =>
      refund(
        b,
        {
          subject: 'watched',
          metric: 'api_calls',
          amount: 1n,
          idempotencyKey: null,
          usageIdempotencyKey: null,
          reason: null,
        },
        'test',
      );
    await defineQuota(c, { subject: 'watched', period: 'DAY', limit: 3n });
    expect(await allowed(c, 'watched')).toBe(true); // missing: nothing kept yet
    expect(await allowed(c, 'watched')).toBe(true); // used: 2 of 3
    expect(await allowed(b, 'watched')).toBe(true); // 3 of 3, written elsewhere
    // Kept: 2 of 3, so it fits; the append refuses (stale) and the read refuses the call.
    expect(await allowed(c, 'watched')).toBe(false);
    await giveBack();
    expect(await allowed(c, 'watched')).toBe(true); // missing: the stale state was dropped
    await giveBack();
    // Kept: 3 of 3, a refusal no append checks: decided again from a read, which allows it.
    expect(await allowed(c, 'watched')).toBe(true);
    expect(outcomes).toEqual(['missing', 'used', 'stale', 'missing', 'reread']);
  });

  it('keeps at most its capacity, dropping the least recently written', async () => {
    const small: LedgerDeps = { db: t.db, clock, cache: new SubjectCache(2) };
    for (const s of ['cap-1', 'cap-2', 'cap-3']) {
      await defineQuota(small, { subject: s, period: 'DAY', limit: 10n });
      expect(await allowed(small, s)).toBe(true);
    }
    expect(small.cache!.size).toBe(2);
    expect(small.cache!.states(['cap-1'], ['api_calls'])).toBeNull();
    expect(small.cache!.states(['cap-3'], ['api_calls'])).not.toBeNull();
  });
});
