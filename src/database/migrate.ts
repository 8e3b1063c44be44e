import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runner } from 'node-pg-migrate';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

/** Whether every file in migrations/ is recorded as applied (a plain read, no lock). */
async function allApplied(client: pg.Client): Promise<boolean> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql'));
  const names = files.map((f) => f.replace(/\.sql$/, ''));
  try {
    const { rows } = await client.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pgmigrations WHERE name = ANY($1::text[])',
      [names],
    );
    return rows[0]!.n === names.length;
  } catch {
    return false; // no migrations table yet (or not readable): let the runner say what is wrong
  }
}

/**
 * Applies the SQL files in migrations/ that this database has not seen. node-pg-migrate holds
 * an advisory lock for the duration (waiting for it, not failing), so replicas starting
 * together apply each migration exactly once.
 */
export async function migrate(
  connectionString: string,
  log: (msg: string) => void = () => {},
): Promise<void> {
  const client = new pg.Client({ connectionString, application_name: 'quota-ledger-migrate' });
  await client.connect();
  try {
    // A schema that is up to date needs no lock and no ownership: the service may then start
    // as the least-privilege role of ops/db/app-role.sql, which cannot touch pgmigrations.
    if (await allApplied(client)) return;
    await runner({
      dbClient: client,
      dir: MIGRATIONS_DIR,
      direction: 'up',
      migrationsTable: 'pgmigrations',
      advisoryLockMode: 'wait',
      singleTransaction: true,
      checkOrder: true,
      log,
      logger: { debug: () => {}, info: log, warn: log, error: log },
    });
  } finally {
    await client.end();
  }
}
