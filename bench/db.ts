import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbedded } from '../src/database/embedded.js';
import { migrate } from '../src/database/migrate.js';

/**
 * A fresh, migrated database for one benchmark run: in the server named by DATABASE_URL, or
 * in a throwaway embedded PostgreSQL. Dropped (or deleted) afterwards.
 */
export async function benchDatabase(): Promise<{
  url: string;
  server: string;
  cleanup(): Promise<void>;
}> {
  let admin = process.env.DATABASE_URL;
  let stopEmbedded = async () => {};
  let server = 'DATABASE_URL';
  if (!admin) {
    const dir = await mkdtemp(join(tmpdir(), 'quota-bench-'));
    await chmod(dir, 0o755);
    const pgEmbedded = await startEmbedded(dir);
    admin = pgEmbedded.url;
    server = 'embedded';
    stopEmbedded = async () => {
      await pgEmbedded.stop();
      await rm(dir, { recursive: true, force: true });
    };
  }
  const name = `quota_bench_${randomBytes(4).toString('hex')}`;
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  const u = new URL(admin);
  u.pathname = `/${name}`;
  await migrate(u.toString());
  // BENCH_NO_CHAIN=1: without the hash-chain trigger, to measure what it costs the write path.
  if (process.env.BENCH_NO_CHAIN === '1') {
    const o = new pg.Client({ connectionString: u.toString() });
    await o.connect();
    await o.query('ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_chain');
    await o.query('ALTER TABLE ledger_events ALTER COLUMN hash DROP NOT NULL');
    await o.end();
  }
  return {
    url: u.toString(),
    server,
    async cleanup() {
      const d = new pg.Client({ connectionString: admin });
      await d.connect();
      await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await d.end();
      await stopEmbedded();
    },
  };
}
