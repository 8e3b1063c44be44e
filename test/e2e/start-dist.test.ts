import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedPort } from '../support/ports.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { callJson, startService } from '../support/process.js';

// `npm run build` then `npm run start:dist`: the same service from compiled JavaScript, without
// the TypeScript loader (less memory). The build must run as it is (ES module paths, the
// migrations and the console found from dist/), serve, and stop on SIGTERM like `npm start`.

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
  await promisify(execFile)(process.execPath, [
    'node_modules/typescript/bin/tsc',
    '-p',
    'tsconfig.build.json',
  ]);
}, 120_000);
afterAll(() => t.drop());

describe('the built service (dist/main.js)', () => {
  it('migrates, serves the API and the console, and stops cleanly on SIGTERM', async () => {
    const port = await fixedPort();
    const s = await startService(
      { DATABASE_URL: t.url, QUOTA_ADDR: `127.0.0.1:${port}`, LOG_LEVEL: 'info' },
      [],
      'dist/main.js',
    );
    try {
      const set = await callJson(port, 'quota.v1.QuotaAdminService/SetQuota', {
        subject: 'acme',
        metric: 'api_calls',
        period: 'PERIOD_DAY',
        limit: '2',
      });
      expect(set.status).toBe(200);
      const body = { subject: 'acme', metric: 'api_calls', amount: '2' };
      expect((await callJson(port, 'quota.v1.QuotaService/Consume', body)).body.allowed).toBe(true);
      expect(
        (await callJson(port, 'quota.v1.QuotaService/Consume', body)).body.allowed ?? false,
      ).toBe(false);
      const page = await fetch(`http://127.0.0.1:${port}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<html');
    } finally {
      s.child.kill('SIGTERM');
    }
    expect(await s.exited).toBe(0);
  }, 120_000);
});
