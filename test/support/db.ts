import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { createPool, type Db } from '../../src/ledger/db.js';
import { migrate } from '../../src/ledger/migrate.js';
import type { ConsumeCommand, LedgerDeps } from '../../src/ledger/commands.js';
import { setQuota } from '../../src/ledger/quota-admin.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import type { PeriodKind } from '../../src/domain/period.js';

export interface TestDatabase {
  url: string;
  db: Db;
  drop(): Promise<void>;
}

/** A fresh, migrated database of its own for one test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = inject('adminDatabaseUrl');
  const name = `quota_test_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  const url = new URL(admin);
  url.pathname = `/${name}`;
  await migrate(url.toString());
  const db = createPool({ connectionString: url.toString(), max: 20 });
  return {
    url: url.toString(),
    db,
    async drop() {
      await db.end();
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * Resolves once another session of this database waits for a lock: the explicit sign that a
 * writer or sweep has reached a row the test holds (rather than a sleep that hopes it has).
 */
export async function waitForLockWaiter(db: Db, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
    );
    if (rows[0]!.n > 0) return;
    if (Date.now() > deadline) throw new Error('no session came to wait for the held lock');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The projection must equal the fold of the ledger for every subject written so far: for an
 * afterEach, so the test that broke it fails, run alone or not.
 */
export async function expectProjectionClean(db: Db): Promise<void> {
  const { differences } = await verifyProjection(db);
  if (differences.length > 0) {
    const big = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);
    throw new Error(
      `the projection differs from the ledger's fold:\n${JSON.stringify(differences.slice(0, 5), big, 1)}`,
    );
  }
}

/** A clock the test moves by hand. */
export class TestClock {
  constructor(private t: Date) {}
  now(): Date {
    return new Date(this.t);
  }
  set(t: Date | string): void {
    this.t = new Date(t);
  }
  advance(ms: number): void {
    this.t = new Date(this.t.getTime() + ms);
  }
}

/** Sets a quota for a test: UTC, calendar periods and no reason unless said otherwise. */
export function defineQuota(
  deps: LedgerDeps,
  q: {
    subject: string;
    metric?: string;
    period: PeriodKind;
    limit: bigint;
    timeZone?: string;
    anchorDay?: number;
  },
): Promise<unknown> {
  return setQuota(
    deps,
    { metric: 'api_calls', timeZone: 'UTC', anchorDay: 0, reason: null, ...q },
    'test',
  );
}

/** A Consume of 1 api_call, ENFORCE, no key, unless said otherwise. */
export const consumeCommand = (
  subject: string,
  extra: Partial<ConsumeCommand> = {},
): ConsumeCommand => ({
  subject,
  metric: 'api_calls',
  amount: 1n,
  idempotencyKey: null,
  mode: 'ENFORCE',
  attributes: {},
  ...extra,
});
