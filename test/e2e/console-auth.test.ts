import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore, readKeyFile } from '../../src/auth/api-keys.js';
import { createKey } from '../../src/auth/key-file.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import {
  adminWithKey,
  CHROMIUM,
  chromiumAvailable,
  launchChromium,
  openPage,
  shoot,
} from '../support/console-browser.js';
import { startTestServer, type TestServer } from '../support/server.js';

// The console in a real headless Chromium against a real server with a keys file: it asks for
// a key, a reader sees no edit controls, an admin edits, a refused call shows the service's
// message, and no key reaches a URL or a log line.

if (!chromiumAvailable)
  console.warn(`console auth test skipped: ${CHROMIUM} not found (apt-get install -y chromium)`);

let browser: Browser;
beforeAll(async () => {
  if (chromiumAvailable) browser = await launchChromium();
}, 40_000);
afterAll(async () => {
  await browser?.close();
});

describe.skipIf(!chromiumAvailable)('the console in a browser, with API keys', () => {
  let s: TestServer;
  let dir: string;
  const keys: Record<string, string> = {};
  const logLines: string[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quota-console-'));
    const file = join(dir, 'keys.json');
    keys.reader = await createKey(file, 'ops-reader', 'reader');
    keys.admin = await createKey(file, 'ops-admin', 'admin');
    keys.scoped = await createKey(file, 'acme-reader', 'reader', { subjectPrefix: 'acme/' });
    const store = new KeyStore(readKeyFile(file));
    s = await startTestServer({
      authenticate: store.authenticate.bind(store),
      // Every log line the service writes, at its most talkative, to look for keys in.
      logger: pino({ level: 'trace' }, { write: (line: string) => void logLines.push(line) }),
      now: new Date().toISOString(),
    });
    const asAdmin = adminWithKey(s.baseUrl, keys.admin!);
    await asAdmin.setQuota({
      subject: 'hooli',
      metric: 'api_calls',
      period: Period.DAY,
      limit: 9n,
    });
  });
  afterAll(async () => {
    await s?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('asks for a key, shows a reader no edit controls, lets an admin edit, shows refusals', async () => {
    const { page, problems, urls } = await openPage(browser);
    try {
      await page.goto(s.baseUrl + '/');
      const key = page.getByLabel('API key');
      // Keyboard only: the key field has the focus; Enter submits.
      await key.waitFor();
      expect(await page.evaluate('document.activeElement.id')).toBe('api-key');
      await page.keyboard.type('qlk_not-a-key');
      await page.keyboard.press('Enter');
      // A refused key: the service's own message, and the field is asked for again.
      await page.getByText(/Unauthenticated: a valid API key is required/).waitFor();
      await shoot(page, 'key');

      expect(await page.evaluate('document.activeElement.id')).toBe('api-key');
      await page.keyboard.type(keys.reader!);
      await page.keyboard.press('Enter');
      await page.getByText('ops-reader · role reader').waitFor();
      const nav = page.getByRole('navigation', { name: 'Pages' });
      expect(await nav.innerText()).not.toContain('Quota editor');
      await page.getByLabel('Subject prefix').fill('hoo');
      await page.getByRole('button', { name: 'Search' }).click();
      await page.locator('table meter').first().waitFor();
      await page.getByRole('link', { name: 'hooli' }).click();
      await page.locator('article.quota svg.chart').waitFor();
      await page.getByRole('heading', { name: 'Recent events' }).waitFor();
      expect(await page.getByRole('link', { name: 'Edit or reset' }).count()).toBe(0);
      // Nothing on the page changes anything: its only buttons look up and sign out.
      expect((await page.getByRole('button').allInnerTexts()).sort()).toEqual([
        'Forget key',
        'Show',
      ]);
      await page.goto(`${s.baseUrl}/#/resets`);
      await page.getByRole('heading', { name: 'Run history (newest first)' }).waitFor();
      expect(await page.getByRole('button', { name: 'Run sweep now' }).count()).toBe(0);
      await page.goto(`${s.baseUrl}/#/editor`);
      await page.getByText('A key with role reader cannot use this page.').waitFor();

      await page.getByRole('button', { name: 'Forget key' }).click();
      await key.fill(keys.admin!);
      await page.getByRole('button', { name: 'Use key' }).click();
      await page.getByText('ops-admin · role admin').waitFor();
      await nav.getByRole('link', { name: 'Quota editor' }).click();
      await page.locator('#set-subject').fill('initech');
      await page.locator('#set-metric').fill('api_calls');
      await page.getByLabel('Limit').fill('3');
      await page.locator('#set-reason').fill('new customer');
      await page.getByRole('button', { name: 'Set quota' }).click();
      await page
        .locator('#set-form .status')
        .getByText(/QUOTA_SET recorded/)
        .waitFor();
      expect(await page.locator('#set-form tbody').innerText()).toMatch(
        /QUOTA_SET[\s\S]*ops-admin/,
      );

      // A refused call shows the service's own message: a scoped key may not list every
      // subject's quotas.
      await page.getByRole('button', { name: 'Forget key' }).click();
      await key.fill(keys.scoped!);
      await key.press('Enter');
      await page.getByText('acme-reader · role reader · subjects acme/*').waitFor();
      await page
        .getByText(
          /^PermissionDenied: .*key "acme-reader" may only act on those starting with "acme\/"/,
        )
        .waitFor();

      // The key went only in a header: never in a URL or a log line, and only in this tab's
      // session.
      expect(logLines.length).toBeGreaterThan(10);
      for (const k of [...Object.values(keys), 'qlk_not-a-key']) {
        expect(urls.filter((u) => u.includes(k))).toEqual([]);
        expect(page.url()).not.toContain(k);
        expect(logLines.filter((l) => l.includes(k))).toEqual([]);
      }
      expect(await page.evaluate('localStorage.length')).toBe(0);
      expect(problems).toEqual([]);
    } finally {
      await page.context().close();
    }
  }, 40_000);
});
