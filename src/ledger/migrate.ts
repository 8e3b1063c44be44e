import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runner } from 'node-pg-migrate';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

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
