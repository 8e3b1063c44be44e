import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerDeps } from '../../src/ledger/commands.js';
import { ConsumeGroupCommitter } from '../../src/batching/group-commit.js';
import {
  FEED_START,
  feedCursorAt,
  feedHeldBack,
  followEvents,
  type EventFilter,
  type FeedCursor,
} from '../../src/ledger/list-events.js';
import { resetSubject } from '../../src/ledger/reset.js';
import { streamEvents } from '../../src/ledger/event-stream.js';
import { ANONYMOUS } from '../../src/rpc/context.js';
import { streamEventsHandler } from '../../src/rpc/event-feed.js';
import { create } from '@bufbuild/protobuf';
import { StreamEventsRequestSchema } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import {
  consumeCommand as cmd,
  createTestDatabase,
  defineQuota,
  expectProjectionClean,
  TestClock,
  waitForLockWaiter,
  type TestDatabase,
} from '../support/db.js';

// A follower paging the feed while writers of every kind commit out of position order must see
// every event exactly once, in one order: the order of the table by (xid, position).

let t: TestDatabase;
let deps: LedgerDeps;
const clock = new TestClock(new Date('2026-05-04T09:00:00Z'));

beforeAll(async () => {
  t = await createTestDatabase();
  deps = { db: t.db, clock };
});
afterAll(() => t.drop());
afterEach(() => expectProjectionClean(t.db));

const ALL: EventFilter = {
  newestFirst: false,
  subject: null,
  metric: null,
  types: [],
  actor: null,
  start: null,
  end: null,
};

/** Pages the feed until stopped, alternating between the page cursor and a resume by position. */
function follow(pageSize: number) {
  const seen: bigint[] = [];
  let stop = false;
  let resumes = 0;
  const done = (async () => {
    let cursor: FeedCursor = FEED_START;
    while (!stop) {
      const page = await followEvents(t.db, ALL, pageSize, cursor);
      seen.push(...page.events.map((e) => e.position));
      if (page.last) {
        // Every other page, start again from the last position alone, as a consumer that
        // stored only that would: the cursor must come out the same.
        if (seen.length % 2 === 0) {
          cursor = (await feedCursorAt(t.db, page.last.position))!;
          expect(cursor).toEqual(page.last);
          resumes++;
        } else cursor = page.last;
      }
      if (!page.more) await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return {
    seen,
    resumes: () => resumes,
    async stop() {
      stop = true;
      await done;
    },
  };
}

/** Holds a stream of the feed from the start, as a StreamEvents caller would. */
function hold() {
  const seen: bigint[] = [];
  const ac = new AbortController();
  const done = (async () => {
    const options = { pollMs: 5, heartbeatMs: 60_000, pageSize: 5 };
    for await (const item of streamEvents(t.db, ALL, FEED_START, ac.signal, options)) {
      if ('event' in item) seen.push(item.event.position);
    }
  })();
  return {
    seen,
    async stop() {
      ac.abort();
      await done;
    },
  };
}

const tableOrder = async (): Promise<bigint[]> =>
  (
    await t.db.query<{ position: bigint }>(
      'SELECT position FROM ledger_events ORDER BY xid, position',
    )
  ).rows.map((r) => r.position);

describe('the ledger feed', () => {
  it('hands every event to a follower exactly once, whatever the writers do', async () => {
    const subjects = Array.from({ length: 8 }, (_, i) => `feed-${i}`);
    for (const subject of [...subjects, 'held']) {
      await defineQuota(deps, { subject, period: 'DAY', limit: 1_000_000n });
    }
    await new ConsumeGroupCommitter(deps).submit(cmd('held'), 'test');
    const follower = follow(7);
    const holder = hold();

    // A transaction of the service held open on purpose: the owner locks the counter a manual
    // reset must write, so the reset appends its event (a low position) and then waits.
    const locker = await t.owner.connect();
    await locker.query('BEGIN');
    await locker.query("SELECT * FROM counters WHERE subject = 'held' FOR UPDATE");
    const heldReset = resetSubject(
      deps,
      'held',
      { subject: 'held', metric: null, period: null, reason: 'feed' },
      'test',
    );
    await waitForLockWaiter(t.owner);

    // Two group committers (as two replicas would have) and the locked paths, all at once.
    const replicas = [new ConsumeGroupCommitter(deps), new ConsumeGroupCommitter(deps)];
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      writes.push(replicas[i % 2]!.submit(cmd(subjects[i % subjects.length]!), 'test'));
      if (i % 25 === 0) {
        writes.push(
          defineQuota(deps, {
            subject: subjects[i % 8]!,
            period: 'DAY',
            limit: 1_000_000n + BigInt(i),
          }),
        );
      }
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(writes);

    // Events committed after the held one took its position: a follower by position alone
    // would already have passed it. The feed holds them back instead.
    const { rows: ahead } = await t.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM ledger_events WHERE xid >= pg_snapshot_xmin(pg_current_snapshot())',
    );
    expect(ahead[0]!.n).toBeGreaterThan(0);
    expect((await feedHeldBack(t.db)).events).toBe(ahead[0]!.n);

    await locker.query('COMMIT');
    locker.release();
    expect((await heldReset).eventsAppended).toBe(1);
    const expected = await tableOrder();
    const deadline = Date.now() + 20_000;
    while (
      (follower.seen.length < expected.length || holder.seen.length < expected.length) &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await follower.stop();
    await holder.stop();
    // The stream holder saw the same events, in the same order, as the pager.
    expect(holder.seen).toEqual(expected);
    expect(follower.resumes()).toBeGreaterThan(0);
    expect(new Set(follower.seen).size).toBe(follower.seen.length);
    expect(follower.seen).toEqual(expected);
    expect(expected.length).toBeGreaterThan(300);
    // The held reset took its position before most of what committed ahead of it.
    const { rows } = await t.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ledger_events
        WHERE position > (SELECT position FROM ledger_events WHERE type = 'RESET_MANUAL')`,
    );
    expect(rows[0]!.n).toBeGreaterThan(100);
    expect(await feedHeldBack(t.db)).toEqual({ events: 0, seconds: 0 });
  });

  it('caps the streams open at once, and frees a place when one ends', async () => {
    const handler = streamEventsHandler(t.db, 1);
    const ac = new AbortController();
    const ctx = { ...ANONYMOUS, signal: ac.signal };
    const req = create(StreamEventsRequestSchema, { heartbeatSeconds: 1 });
    const first = (await handler(req, ctx))[Symbol.asyncIterator]();
    await first.next();
    await expect(handler(req, ctx)).rejects.toThrow(/already serves 1 event stream/);
    await first.return!(undefined);
    const again = (await handler(req, { ...ANONYMOUS, signal: ac.signal }))[Symbol.asyncIterator]();
    await again.next();
    ac.abort();
    await again.return!(undefined);
  });
});
