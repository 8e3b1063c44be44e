import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { inject } from 'vitest';
import { createPool, type Db } from '../../src/ledger/db.js';
import { migrate } from '../../src/database/migrate.js';
import type { ConsumeCommand, LedgerDeps } from '../../src/ledger/commands.js';
import { setQuota } from '../../src/ledger/quota-admin.js';
import { verifyProjection } from '../../src/ledger/verify.js';
import type { PeriodKind } from '../../src/domain/period.js';

export interface TestDatabase {
  /** Where the service connects: the application role under TEST_AS_APP_ROLE=1, else the owner. */
  url: string;
  /** A pool as the service: what every code path under test uses. */
  db: Db;
  /** A pool as the schema owner, for what only an operator does (tampering, superuser checks). */
  owner: Db;
  ownerUrl: string;
  drop(): Promise<void>;
}

/**
 * With TEST_AS_APP_ROLE=1 (.ci/run sets it for a second pass of the integration and end-to-end
 * suites) the service side of every test connects as the role from ops/db/app-role.sql, applied
 * as written, so that file stays the single source of the grants the code needs.
 */
export const asAppRole = process.env.TEST_AS_APP_ROLE === '1';

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Applies ops/db/app-role.sql under a name and password of this database's own. */
export async function createAppRole(
  ownerUrl: string,
  owner: Db,
): Promise<{ url: string; role: string }> {
  const role = `quota_app_${randomBytes(5).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  const sql = (await readFile(new URL('../../ops/db/app-role.sql', import.meta.url), 'utf8'))
    .replaceAll(/\bquota_app\b/g, role)
    .replace("'change-me'", `'${password}'`);
  await owner.query(sql);
  const url = new URL(ownerUrl);
  url.username = role;
  url.password = password;
  return { url: url.toString(), role };
}

/** Drops a role made by createAppRole, once the database holding its grants is gone. */
export const dropRole = (role: string): Promise<void> => adminQuery(`DROP ROLE IF EXISTS ${role}`);

/** A fresh, migrated database of its own for one test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `quota_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const ownerUrlObj = new URL(inject('adminDatabaseUrl'));
  ownerUrlObj.pathname = `/${name}`;
  const ownerUrl = ownerUrlObj.toString();
  await migrate(ownerUrl);
  const owner = createPool({ connectionString: ownerUrl, max: asAppRole ? 4 : 20 });
  const app = asAppRole ? await createAppRole(ownerUrl, owner) : null;
  const url = app?.url ?? ownerUrl;
  const db = app ? createPool({ connectionString: url, max: 20 }) : owner;
  return {
    url,
    db,
    owner,
    ownerUrl,
    async drop() {
      if (db !== owner) await db.end();
      await owner.end();
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      if (app) await adminQuery(`DROP ROLE IF EXISTS ${app.role}`);
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
