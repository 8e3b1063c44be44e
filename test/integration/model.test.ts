import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConsumeCommand, LedgerDeps } from '../../src/ledger/commands.js';
import { createPool } from '../../src/ledger/db.js';
import { getQuota } from '../../src/ledger/read.js';
import { refund } from '../../src/ledger/refund.js';
import { resetSubject } from '../../src/ledger/reset.js';
import { deleteQuota, setQuota } from '../../src/ledger/quota-admin.js';
import { SubjectCache } from '../../src/ledger/subject-cache.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import { createTestDatabase, TestClock, type TestDatabase } from '../support/db.js';
import { DEFAULTS, QuotaModel, type Mode, type Period } from '../support/model.js';
import {
  CONSUME_PATHS,
  consumeDriver,
  settle,
  viewOfDomain,
  type ConsumeDriver,
  type ConsumePath,
} from '../support/model-driver.js';
import { TcpProxy, targetOf } from '../support/tcp-proxy.js';

// Model-based: random command sequences, biased to the edges (exactly at the limit, one over,
// exact retries, instants at a period boundary), run through each of the service's consume
// paths and through test/support/model.ts, compared call by call: every answer, and after
// every call the stored counters and the number of events of each type. At the end of a run
// each subject's projection must equal the fold of its ledger, and its RESET_SCHEDULED events
// must be exactly the rolls the model made.

let t: TestDatabase;
const clock = new TestClock(new Date('2026-01-01T00:00:00Z'));
let deps: LedgerDeps;
// A metric of its own for every run, so the defaults ("*") of one run do not reach the next.
let METRIC = 'm';

beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());

type Who = 0 | 1;
/** 2 is "*": the defaults. */
type Owner = Who | 2;
interface Item {
  who: Who;
  /** A plain amount, or one that lands at room + edge on the tightest quota. */
  amount: number | { edge: -1 | 0 | 1 };
  mode: Mode;
  key: string | null;
}
type Cmd =
  | { k: 'set'; who: Owner; period: Period; limit: number }
  | { k: 'delete'; who: Owner; period: Period }
  | { k: 'consume'; items: Item[] }
  | { k: 'retry'; pick: number }
  | { k: 'refund'; who: Who; amount: number; key: string | null; usageKey: string | null }
  | { k: 'reset'; who: Who }
  | { k: 'get'; who: Who }
  | { k: 'advance'; hours: number }
  | { k: 'boundary'; deltaMs: -1 | 0 | 1 };

const who = fc.constantFrom<Who>(0, 1);
const owner = fc.constantFrom<Owner>(0, 1, 2);
const usageKey = fc.option(fc.constantFrom('k0', 'k1', 'k2'), { freq: 2 });
const item: fc.Arbitrary<Item> = fc.record({
  who,
  amount: fc.oneof(
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 4 }) },
    { weight: 3, arbitrary: fc.record({ edge: fc.constantFrom<-1 | 0 | 1>(-1, 0, 1) }) },
  ),
  mode: fc.constantFrom<Mode>('ENFORCE', 'ENFORCE', 'ENFORCE', 'RECORD', 'DRY_RUN'),
  key: usageKey,
});
const setQuotaCmd: fc.Arbitrary<Cmd> = fc.record({
  k: fc.constant('set' as const),
  who: owner,
  period: fc.constantFrom<Period>('DAY', 'WEEK', 'MONTH', 'NEVER'),
  limit: fc.integer({ min: 0, max: 8 }),
});
const command: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('set' as const),
      who: owner,
      period: fc.constantFrom<Period>('DAY', 'WEEK', 'MONTH', 'NEVER'),
      limit: fc.integer({ min: 0, max: 8 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('delete' as const),
      who: owner,
      period: fc.constantFrom<Period>('DAY', 'WEEK', 'MONTH', 'NEVER'),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      k: fc.constant('consume' as const),
      items: fc.oneof(
        { weight: 3, arbitrary: fc.array(item, { minLength: 1, maxLength: 1 }) },
        { weight: 1, arbitrary: fc.array(item, { minLength: 2, maxLength: 6 }) },
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('retry' as const), pick: fc.nat(20) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('refund' as const),
      who,
      amount: fc.integer({ min: 1, max: 6 }),
      key: fc.option(fc.constantFrom('f0', 'f1', 'k0', 'k1'), { freq: 2 }),
      usageKey,
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('reset' as const), who }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('get' as const), who }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('advance' as const),
      hours: fc.constantFrom(1, 11, 24, 24 * 6, 24 * 7, 24 * 29, 24 * 31, 24 * 45),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('boundary' as const),
      deltaMs: fc.constantFrom<-1 | 0 | 1>(-1, 0, 1),
    }),
  },
);

// Starts near the awkward places: the end of January (anchor 31 then February), a leap
// February, a Sunday night (ISO weeks start on Monday), a year end.
const START = fc.constantFrom(
  '2027-01-30T22:00:00Z',
  '2028-02-27T12:00:00Z',
  '2026-03-08T23:00:00Z',
  '2026-12-30T18:00:00Z',
  '2026-05-31T06:00:00Z',
);
const ANCHOR = fc.constantFrom(31, 0, 31, 30, 15);

/** Sequences every run starts with, before the random ones: walks over the awkward boundaries. */
const one = (who: Who, key: string | null = null): Cmd => ({
  k: 'consume',
  items: [{ who, amount: 1, mode: 'ENFORCE', key }],
});
const EXAMPLES: [string, number, Cmd[], Cmd[]][] = [
  // A billing month on the 31st through January, February (28 days) and March, period by period.
  [
    '2027-01-30T22:00:00Z',
    31,
    [],
    [
      { k: 'set', who: 0, period: 'MONTH', limit: 5 },
      { k: 'set', who: 0, period: 'WEEK', limit: 5 },
      one(0),
      ...Array.from({ length: 4 }, (): Cmd[] => [{ k: 'boundary', deltaMs: 0 }, one(0)]).flat(),
      { k: 'advance', hours: 24 * 31 },
      one(0),
      { k: 'boundary', deltaMs: 1 },
      one(0),
    ],
  ],
  // At the limit, one over, an exact retry, a refund naming the usage, a reset.
  [
    '2026-03-08T23:00:00Z',
    0,
    [],
    [
      { k: 'set', who: 1, period: 'DAY', limit: 3 },
      { k: 'set', who: 1, period: 'WEEK', limit: 4 },
      {
        k: 'consume',
        items: [{ who: 1, amount: { edge: 0 }, mode: 'ENFORCE', key: 'k0' }],
      },
      { k: 'retry', pick: 0 },
      { k: 'consume', items: [{ who: 1, amount: { edge: 1 }, mode: 'ENFORCE', key: 'k1' }] },
      { k: 'boundary', deltaMs: 0 },
      { k: 'consume', items: [{ who: 1, amount: { edge: 1 }, mode: 'ENFORCE', key: null }] },
      { k: 'consume', items: [{ who: 1, amount: { edge: 0 }, mode: 'ENFORCE', key: null }] },
      { k: 'refund', who: 1, amount: 3, key: 'f0', usageKey: 'k0' },
      { k: 'refund', who: 1, amount: 9, key: null, usageKey: null },
      { k: 'reset', who: 1 },
      { k: 'get', who: 1 },
    ],
  ],
];

let run = 0;

interface Step {
  label: string;
  actual: unknown;
  expected: unknown;
}

/** Runs one sequence through `drive` and the model; returns the first divergence, if any. */
async function runSequence(
  drive: ConsumeDriver,
  start: string,
  anchor: number,
  cmds: Cmd[],
  readDb = t.db,
): Promise<Step | null> {
  run++;
  clock.set(start);
  METRIC = `m${run}`;
  const subjects: [string, string] = [`r${run}-a`, `r${run}-b`];
  const owners: [string, string, string] = [...subjects, DEFAULTS];
  const model = new QuotaModel();
  const keyed: ConsumeCommand[] = [];
  const now = () => clock.now().getTime();

  const amountOf = (i: Item): bigint => {
    if (typeof i.amount === 'number') return BigInt(i.amount);
    const s = subjects[i.who];
    const q = model.getQuotaPeek(s, now());
    if (q.length === 0) return 1n;
    const room = q.reduce((m, v) => (v.limit - v.used < m ? v.limit - v.used : m), q[0]!.limit);
    const a = room + BigInt(i.amount.edge);
    return a >= 1n ? a : 1n;
  };

  const check = async (label: string): Promise<Step | null> => {
    const { rows } = await readDb.query<{
      subject: string;
      period: Period;
      used: string;
      s: Date;
      e: Date | null;
    }>(
      `SELECT subject, period, used::text, period_start AS s, period_end AS e FROM counters
        WHERE subject = ANY($1) AND metric = $2`,
      [subjects, METRIC],
    );
    const ev = await readDb.query<{ subject: string; type: string; n: number }>(
      `SELECT subject, type, count(*)::int AS n FROM ledger_events
        WHERE subject = ANY($1) AND metric = $2 GROUP BY 1, 2`,
      [owners, METRIC],
    );
    for (const s of owners) {
      const order = ['DAY', 'WEEK', 'MONTH', 'NEVER'];
      const stored = rows
        .filter((r) => r.subject === s)
        .sort((a, b) => order.indexOf(a.period) - order.indexOf(b.period))
        .map((r) => [r.period, BigInt(r.used), r.s.getTime(), r.e?.getTime() ?? null]);
      if (JSON.stringify(stored, big) !== JSON.stringify(model.counters(s), big)) {
        return {
          label: `${label}: stored counters of ${s}`,
          actual: stored,
          expected: model.counters(s),
        };
      }
      const events = Object.fromEntries(
        ev.rows.filter((r) => r.subject === s).map((r) => [r.type, r.n]),
      );
      const want = model.events(s);
      if (JSON.stringify(sorted(events)) !== JSON.stringify(sorted(want))) {
        return { label: `${label}: events of ${s}`, actual: events, expected: want };
      }
    }
    return null;
  };

  for (const [index, c] of cmds.entries()) {
    const label = `step ${index} ${JSON.stringify(c)}`;
    let actual: unknown;
    let expected: unknown;
    switch (c.k) {
      case 'delete': {
        const s = owners[c.who];
        actual = await settle(
          deleteQuota(
            deps,
            { subject: s, metric: METRIC, period: c.period, reason: null },
            'model',
          ).then(() => null),
        );
        expected = model.deleteQuota(s, c.period);
        break;
      }
      case 'set': {
        const s = owners[c.who];
        actual = await settle(
          setQuota(
            deps,
            {
              subject: s,
              metric: METRIC,
              period: c.period,
              limit: BigInt(c.limit),
              timeZone: 'UTC',
              anchorDay: c.period === 'MONTH' ? anchor : 0,
              reason: null,
            },
            'model',
          ).then(() => null),
        );
        expected = model.setQuota(s, c.period, BigInt(c.limit), anchor);
        break;
      }
      case 'consume':
      case 'retry': {
        let batch: ConsumeCommand[];
        if (c.k === 'retry') {
          if (keyed.length === 0) continue;
          batch = [keyed[c.pick % keyed.length]!];
        } else {
          batch = c.items.map((i) => ({
            subject: subjects[i.who],
            metric: METRIC,
            amount: amountOf(i),
            idempotencyKey: i.key,
            mode: i.mode,
            attributes: {},
          }));
        }
        keyed.push(...batch.filter((b) => b.idempotencyKey !== null));
        actual = await drive(batch);
        expected = batch.map((b) =>
          model.consume(b.subject, b.amount, b.mode, b.idempotencyKey, now()),
        );
        break;
      }
      case 'refund': {
        const s = subjects[c.who];
        actual = await settle(
          refund(
            deps,
            {
              subject: s,
              metric: METRIC,
              amount: BigInt(c.amount),
              idempotencyKey: c.key,
              usageIdempotencyKey: c.usageKey,
              reason: null,
            },
            'model',
          ).then((r) => ({
            replayed: r.replayed,
            credited: r.credited.map((x) => [x.period, x.delta]),
            quotas: r.quotas.map(viewOfDomain),
          })),
        );
        expected = model.refund(s, BigInt(c.amount), c.key, c.usageKey, now());
        break;
      }
      case 'reset': {
        const s = subjects[c.who];
        actual = await settle(
          resetSubject(
            deps,
            s,
            { subject: s, metric: METRIC, period: null, reason: null },
            'model',
          ).then((r) => r.quotas.map(viewOfDomain)),
        );
        expected = model.reset(s, now());
        break;
      }
      case 'get': {
        const s = subjects[c.who];
        actual = await settle(getQuota(deps, s, METRIC).then((r) => r.map(viewOfDomain)));
        expected = model.getQuota(s, now());
        break;
      }
      case 'advance':
        clock.advance(c.hours * 3_600_000);
        continue;
      case 'boundary': {
        const ends = subjects
          .flatMap((s) => model.counters(s).map(([, , , end]) => end))
          .filter((e): e is number => e !== null && e > now());
        if (ends.length === 0) clock.advance(3_600_000);
        else clock.set(new Date(Math.min(...ends) + c.deltaMs));
        continue;
      }
    }
    if (JSON.stringify(actual, big) !== JSON.stringify(expected, big)) {
      return { label, actual, expected };
    }
    const diverged = await check(label);
    if (diverged) return diverged;
  }
  for (const s of subjects) {
    const diffs = (await verifyProjection(readDb, { subject: s })).differences;
    if (diffs.length > 0) return { label: `end: projection of ${s}`, actual: diffs, expected: [] };
    const rolls = await readDb.query<{ period: Period; s: Date }>(
      `SELECT period, period_start AS s FROM ledger_events
        WHERE subject = $1 AND type = 'RESET_SCHEDULED' ORDER BY period, period_start`,
      [s],
    );
    const actualRolls = rolls.rows.map((r) => `${r.period} ${r.s.toISOString()}`).sort();
    const expectedRolls = model
      .rollStarts(s)
      .map(([p, start]) => `${p} ${new Date(start).toISOString()}`)
      .sort();
    if (JSON.stringify(actualRolls) !== JSON.stringify(expectedRolls)) {
      return {
        label: `end: RESET_SCHEDULED of ${s}`,
        actual: actualRolls,
        expected: expectedRolls,
      };
    }
  }
  return null;
}

const big = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);
const sorted = (o: Record<string, number>) =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));

const show = (v: unknown) => JSON.stringify(v, big, 1);

/** Random sequences through `drive`, each compared with the model call by call. */
async function againstModel(drive: ConsumeDriver, numRuns: number, seed: number): Promise<void> {
  await fc.assert(
    fc.asyncProperty(
      START,
      ANCHOR,
      // Quotas first (own or default), so most calls meet some; then anything.
      fc.array(setQuotaCmd, { minLength: 1, maxLength: 4 }),
      fc.array(command, { minLength: 4, maxLength: 28 }),
      async (start, anchor, setup, cmds) => {
        const d = await runSequence(drive, start, anchor, [...setup, ...cmds]);
        // One assertion with everything needed to replay it by hand.
        expect(
          d && `${d.label}\n  service: ${show(d.actual)}\n  model:   ${show(d.expected)}`,
        ).toBeNull();
      },
    ),
    {
      numRuns,
      seed,
      examples: EXAMPLES,
      endOnFailure: false,
      interruptAfterTimeLimit: 40_000,
    },
  );
}

describe('the service against the model, call by call', () => {
  for (const path of CONSUME_PATHS) {
    it(`through ${path}`, async () => {
      await againstModel(consumeDriver(path as ConsumePath, deps), 50, 2126);
    }, 60_000);
  }

  // Two replicas, each deciding Consume from the states its own appends left (SubjectCache).
  // The first takes two Consumes of every three; the second takes the third and every other
  // command (quotas, refunds, resets), all of which the first must notice: its kept states
  // are now fresh, now stale in one of the ways the append must catch.
  for (const path of CONSUME_PATHS) {
    it(`through ${path}, on two replicas that keep states`, async () => {
      const replicas = [0, 1].map((): LedgerDeps => ({
        db: t.db,
        clock,
        cache: new SubjectCache(64),
      }));
      const drives = replicas.map((r) => consumeDriver(path, r));
      let turn = 0;
      const prev = deps;
      deps = replicas[1]!;
      try {
        await againstModel((batch) => drives[turn++ % 3 === 2 ? 1 : 0]!(batch), 100, 2127);
      } finally {
        deps = prev;
      }
    }, 60_000);
  }

  it('an acknowledged consume is committed: a fresh connection sees it at once, on every path', async () => {
    // Everything the service sends to PostgreSQL arrives 40 ms late; the test reads on its own
    // direct connection right after each answer. An answer given before the commit shows up as
    // counters that lag the model.
    const proxy = new TcpProxy(targetOf(t.url).host, targetOf(t.url).port, 40);
    const slow = createPool({ connectionString: await proxy.start(t.url), max: 4 });
    try {
      const slowDeps = { db: slow, clock };
      for (const path of CONSUME_PATHS) {
        const drive = consumeDriver(path, slowDeps);
        const cmds: Cmd[] = [
          { k: 'set', who: 0, period: 'DAY', limit: 6 },
          { k: 'set', who: 1, period: 'WEEK', limit: 4 },
          ...Array.from({ length: 4 }, (_, i): Cmd => ({
            k: 'consume',
            items: [
              { who: 0, amount: 1, mode: 'ENFORCE', key: `a${i}` },
              { who: 1, amount: 1, mode: 'RECORD', key: null },
            ],
          })),
          { k: 'consume', items: [{ who: 0, amount: { edge: 0 }, mode: 'ENFORCE', key: null }] },
        ];
        const prev = deps;
        deps = slowDeps;
        try {
          const d = await runSequence(drive, '2026-03-10T12:00:00Z', 0, cmds, t.db);
          expect(
            d &&
              `${path}: ${d.label}\n  service: ${show(d.actual)}\n  model:   ${show(d.expected)}`,
          ).toBeNull();
        } finally {
          deps = prev;
        }
      }
    } finally {
      await slow.end();
      await proxy.close();
    }
  }, 60_000);
});
