import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from '../../src/ledger/db.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t.drop();
});

describe('the connection pool', () => {
  it('closes a connection only after it has sat unused for the idle timeout', async () => {
    const short = createPool({ connectionString: t.url, max: 2, idleTimeoutMs: 150 });
    const kept = createPool({ connectionString: t.url, max: 2 });
    try {
      await Promise.all([short.query('SELECT 1'), kept.query('SELECT 1')]);
      const idle = (db: unknown) => (db as pg.Pool).idleCount;
      expect([idle(short), idle(kept)]).toEqual([1, 1]);
      await new Promise((r) => setTimeout(r, 600));
      expect(idle(short)).toBe(0);
      // The default outlasts pg-pool's own 10 s by far; here it simply has not closed it.
      expect(idle(kept)).toBe(1);
      expect((kept as pg.Pool).options.idleTimeoutMillis).toBe(300_000);
    } finally {
      await Promise.all([short.end(), kept.end()]);
    }
  });
});
