import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAppRole, createTestDatabase, dropRole, type TestDatabase } from '../support/db.js';

// A service that cannot start says why in one line at the default log level, and exits 1.

let t: TestDatabase;
let taken: Server;
let takenPort: number;
let scratch: string;
beforeAll(async () => {
  t = await createTestDatabase();
  taken = createServer();
  await new Promise<void>((ok) => taken.listen(0, '127.0.0.1', ok));
  takenPort = (taken.address() as { port: number }).port;
  scratch = await mkdtemp(join(tmpdir(), 'quota-startfail-'));
});
afterAll(async () => {
  taken.close();
  await rm(scratch, { recursive: true, force: true });
  await t.drop();
});

/** Starts the service, waits for it to exit, returns its fatal line (LOG_LEVEL left unset). */
async function failedStart(env: Record<string, string>): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, LOG_LEVEL: '', QUOTA_RESET_ENABLED: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((ok) => child.once('exit', ok));
  expect(code).toBe(1);
  const fatal = out
    .split('\n')
    .filter((l) => l.includes('"level":60'))
    .map((l) => JSON.parse(l) as { msg: string });
  expect(fatal).toHaveLength(1);
  return fatal[0]!.msg;
}

describe('a start-up failure', () => {
  it('names an address that is taken', async () => {
    const msg = await failedStart({ DATABASE_URL: t.url, QUOTA_ADDR: `127.0.0.1:${takenPort}` });
    expect(msg).toBe(
      `failed to start: cannot listen on 127.0.0.1:${takenPort}: the address is already in use (another service holds it; choose another with QUOTA_ADDR)`,
    );
  });

  it('names a data directory that cannot be written', async () => {
    const file = join(scratch, 'a-file');
    await writeFile(file, '');
    const msg = await failedStart({ DATABASE_URL: '', QUOTA_DATA_DIR: join(file, 'data') });
    expect(msg).toMatch(/^failed to start: data directory .*a-file\/data is not writable: ENOTDIR/);
  });

  it('names a login the database refuses, with host, port and database', async () => {
    const url = new URL(t.url);
    url.username = 'nobody_here';
    url.password = 'wrong';
    const msg = await failedStart({ DATABASE_URL: url.toString(), QUOTA_ADDR: '127.0.0.1:0' });
    expect(msg).toContain(`the database at ${url.hostname}:${url.port || 5432}${url.pathname}`);
    expect(msg).not.toContain('wrong');
  });

  it('says how to fix pending migrations under a role that may not apply them', async () => {
    const fresh = await createTestDatabase();
    const role = await createAppRole(fresh.ownerUrl, fresh.owner);
    try {
      // A migration the database has not seen yet, as after an upgrade.
      await fresh.owner.query(
        'DELETE FROM pgmigrations WHERE name = (SELECT max(name) FROM pgmigrations)',
      );
      const msg = await failedStart({ DATABASE_URL: role.url, QUOTA_ADDR: '127.0.0.1:0' });
      expect(msg).toMatch(/QUOTA_MIGRATION_DATABASE_URL/);
    } finally {
      await fresh.drop();
      await dropRole(role.role);
    }
  });
});
