import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startEmbedded, type EmbeddedDatabase } from '../../src/database/embedded.js';

// `npm start` without DATABASE_URL picks a free port for its PostgreSQL. Between the pick and
// PostgreSQL's listen (a first initdb takes seconds) the port may be taken by anyone; the start
// must then pick again rather than fail.

let dir = '';
let database: EmbeddedDatabase | null = null;
let squatter: Server | null = null;

afterAll(async () => {
  await database?.stop();
  squatter?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('embedded PostgreSQL port', () => {
  it('picks another port when the one it picked was taken before PostgreSQL listened', async () => {
    dir = await mkdtemp(join(tmpdir(), 'quota-embedded-port-'));
    await chmod(dir, 0o755); // PostgreSQL runs as another user under root
    const taken = await new Promise<number>((ok) => {
      squatter = createServer().listen(0, '127.0.0.1', () =>
        ok((squatter!.address() as { port: number }).port),
      );
    });
    const picked: number[] = [];
    const lines: string[] = [];
    database = await startEmbedded(dir, {
      pickPort: async () => {
        const port = picked.length === 0 ? taken : await freePort();
        picked.push(port);
        return port;
      },
      log: (l) => lines.push(l),
    });
    expect(picked).toHaveLength(2);
    expect(new URL(database.url).port).toBe(String(picked[1]));
    expect(lines.join('\n')).toContain(`port ${taken} was taken`);
    const c = new pg.Client(database.url);
    await c.connect();
    expect((await c.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one).toBe(1);
    await c.end();
  });

  it('does not pick another port when the caller named one', async () => {
    const named = (squatter!.address() as { port: number }).port;
    const other = await mkdtemp(join(tmpdir(), 'quota-embedded-port-'));
    await chmod(other, 0o755);
    try {
      await expect(startEmbedded(other, { port: named })).rejects.toThrow(/in use|bind|socket/i);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});
