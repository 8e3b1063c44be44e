import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { consume } from '../../src/ledger/consume.js';
import { getQuota } from '../../src/ledger/read.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import {
  consumeCommand as cmd,
  createTestDatabase,
  defineQuota,
  TestClock,
  type TestDatabase,
  expectProjectionClean,
} from '../support/db.js';

let t: TestDatabase;
let deps: LedgerDeps;
const clock = new TestClock(new Date('2026-05-04T09:00:00Z'));

beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());
// Whatever a test wrote, its projection must equal the fold of its ledger.
afterEach(async () => {
  await expectProjectionClean(t.db);
});

const countEvents = async (subject: string, type: string): Promise<number> =>
  Number(
    (
      await t.db.query('SELECT count(*) FROM ledger_events WHERE subject = $1 AND type = $2', [
        subject,
        type,
      ])
    ).rows[0].count,
  );

describe('under concurrency', () => {
  it('64 concurrent callers never overspend a limit, across several quotas', async () => {
    const s = 'race-limit';
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 100n });
    await defineQuota(deps, {
      subject: s,
      period: 'MONTH',
      limit: 37n,
      timeZone: 'Asia/Kolkata',
      anchorDay: 15,
    });
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        Array.from({ length: 64 }, () => consume(deps, cmd(s), 'racer')),
      );
      const allowed = answers.filter((a) => a.allowed).length;
      expect(allowed).toBe(round === 0 ? 37 : 0);
    }
    const q = await getQuota(deps, s, 'api_calls');
    expect(q.map((x) => x.used)).toEqual([37n, 37n]);
    expect(await countEvents(s, 'USAGE')).toBe(37);
  });

  it('concurrent retries of one idempotency key record exactly one event and give one answer', async () => {
    const s = 'race-idem';
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 1000n });
    const answers = await Promise.all(
      Array.from({ length: 32 }, () =>
        consume(deps, cmd(s, { amount: 7n, idempotencyKey: 'req-42' }), 'retrier'),
      ),
    );
    expect(answers.filter((a) => !a.replayed)).toHaveLength(1);
    expect(new Set(answers.map((a) => a.sequence))).toEqual(new Set([answers[0]!.sequence]));
    expect(answers.every((a) => a.quotas[0]!.used === 7n)).toBe(true);
    expect(await countEvents(s, 'USAGE')).toBe(1);
  });

  it('concurrent lazy rolls of one counter append exactly one reset event', async () => {
    const s = 'race-roll';
    await defineQuota(deps, { subject: s, period: 'DAY', limit: 10n });
    await consume(deps, cmd(s, { amount: 10n }), 't');
    clock.set('2026-05-07T09:00:00Z');
    const answers = await Promise.all([
      ...Array.from({ length: 24 }, () => consume(deps, cmd(s), 'racer')),
      ...Array.from({ length: 8 }, () => getQuota(deps, s, 'api_calls')),
    ]);
    expect(answers.filter((a) => 'allowed' in a && a.allowed)).toHaveLength(10);
    expect(await countEvents(s, 'RESET_SCHEDULED')).toBe(1);
    expect((await verifyProjection(t.db)).differences).toEqual([]);
  });
});
