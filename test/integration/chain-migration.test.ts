import { readdir } from 'node:fs/promises';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyLedger } from '../../src/ledger/ledger-chain.js';
import { followEvents, FEED_START } from '../../src/ledger/list-events.js';
import { MIGRATIONS_DIR } from '../../src/database/migrate.js';
import { consume } from '../../src/ledger/consume.js';
import { createPool } from '../../src/ledger/db.js';
import {
  consumeCommand,
  createAppRole,
  createTestDatabase,
  defineQuota,
  dropRole,
  TestClock,
  type TestDatabase,
} from '../support/db.js';

// A ledger written before the feed and the chain existed: the migrations give its events xid 0
// (first in the feed) and hash them in sequence order per subject, as the trigger would have.

let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(() => t.drop());

async function migrations(url: string, direction: 'up' | 'down', count: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      direction,
      count,
      migrationsTable: 'pgmigrations',
      singleTransaction: true,
      log: () => {},
      logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
    });
  } finally {
    await client.end();
  }
}

describe('migrating an existing ledger', () => {
  it('gives old events xid 0 and their hashes, in sequence order per subject', async () => {
    const ours = (await readdir(MIGRATIONS_DIR)).filter((f) => f >= '1700000000010').length;
    await migrations(t.ownerUrl, 'down', ours);
    const { rows } = await t.owner.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM information_schema.columns
        WHERE table_name = 'ledger_events' AND column_name IN ('xid', 'hash')`,
    );
    expect(rows[0]!.n).toBe(0);
    // Inserted out of sequence order across subjects, as concurrent writers would have.
    for (const [subject, sequence] of [
      ['b', 1],
      ['a', 1],
      ['a', 2],
      ['b', 2],
      ['a', 3],
    ] as const) {
      await t.owner.query(
        `INSERT INTO ledger_events (subject, sequence, type, actor, reason, recorded_at)
         VALUES ($1, $2, 'RESET_MANUAL', 'old', $3, '2026-01-01T00:00:00Z')`,
        [subject, sequence, `${subject}${sequence}`],
      );
    }
    await migrations(t.ownerUrl, 'up', ours);
    const v = await verifyLedger(t.owner, null);
    expect(v).toMatchObject({ subjects: 2, events: 5, breaks: [] });
    const feed = await followEvents(t.owner, ALL, 10, FEED_START);
    expect(feed.events.map((e) => e.reason)).toEqual(['b1', 'a1', 'a2', 'b2', 'a3']);
    expect(feed.last?.xid).toBe(0n);
    // New events chain onto the migrated ones.
    await t.owner.query(
      `INSERT INTO ledger_events (subject, sequence, type, actor, recorded_at)
       VALUES ('a', 4, 'RESET_MANUAL', 'new', now())`,
    );
    expect((await verifyLedger(t.owner, null)).breaks).toEqual([]);
  });

  it('lets a role granted the previous quota_append keep appending, through either function', async () => {
    const { url, role } = await createAppRole(t.ownerUrl, t.owner);
    // The role as the previous app-role.sql made it: EXECUTE on quota_append only.
    await migrations(t.ownerUrl, 'down', 1);
    await t.owner.query(`GRANT EXECUTE ON FUNCTION quota_append(${APPEND_ARGS}) TO ${role}`);
    await migrations(t.ownerUrl, 'up', 1);
    const app = createPool({ connectionString: url, max: 2 });
    try {
      const deps = { db: app, clock: new TestClock(new Date('2026-06-01T00:00:00Z')) };
      await defineQuota(deps, { subject: 'upgraded', period: 'DAY', limit: 5n });
      expect((await consume(deps, consumeCommand('upgraded'), 'test')).allowed).toBe(true);
      // A replica of the previous release, mid rolling upgrade, still appends through the old name.
      await app.query(
        `SELECT quota_append(ARRAY['upgraded'], ARRAY[3::int8], ARRAY['RESET_MANUAL'],
           ARRAY[NULL], ARRAY[NULL::int8], ARRAY[NULL], ARRAY[NULL::timestamptz],
           ARRAY[NULL::timestamptz], ARRAY['old-replica'], ARRAY[NULL], ARRAY[NULL], '[null]',
           '[{}]', ARRAY[now()], '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
           ARRAY['upgraded'], ARRAY[2::int8], ARRAY[3::int8], ARRAY[NULL])`,
      );
      const { rows } = await t.owner.query<{ types: string[] }>(
        "SELECT array_agg(type ORDER BY sequence) AS types FROM ledger_events WHERE subject = 'upgraded'",
      );
      expect(rows[0]!.types).toEqual(['QUOTA_SET', 'USAGE', 'RESET_MANUAL']);
    } finally {
      await app.end();
      await t.owner.query(`DROP OWNED BY ${role}`);
      await dropRole(role);
    }
  });
});

const APPEND_ARGS = `text[], int8[], text[], text[], int8[], text[], timestamptz[], timestamptz[],
  text[], text[], text[], jsonb, jsonb, timestamptz[], text[], text[], text[], int8[], int8[],
  timestamptz[], timestamptz[], timestamptz[], int8[], text[], int8[], int8[], text[]`;

const ALL = {
  newestFirst: false,
  subject: null,
  metric: null,
  types: [],
  actor: null,
  start: null,
  end: null,
};
