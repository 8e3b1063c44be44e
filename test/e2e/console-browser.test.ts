import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { usageText } from '../../console/src/logic.js';
import { KeyStore, readKeyFile } from '../../src/auth/api-keys.js';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { createKey } from '../../src/auth/key-file.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// The console in a real headless Chromium against a real server: find a subject, check its
// bar against GetQuota, set and reset a quota, see the RESET_MANUAL event; with keys, a
// reader sees no edit controls and an admin can edit. Needs Debian's chromium
// (apt-get install -y chromium); nothing is downloaded. Screenshots of every page at desktop
// and phone width go to test-output/console/ for review.

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available)
  console.warn(`console browser test skipped: ${CHROMIUM} not found (apt-get install -y chromium)`);

const SHOTS = resolve(import.meta.dirname, '..', '..', 'test-output', 'console');
const PHONE = { width: 360, height: 780 };
const DESKTOP = { width: 1280, height: 900 };

let browser: Browser;

async function launch(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
}

/** A page that fails the test on any script error or CSP violation, and records every URL. */
async function openPage(): Promise<{ page: Page; problems: string[]; urls: string[] }> {
  const context = await browser.newContext({ viewport: DESKTOP });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems: string[] = [];
  const urls: string[] = [];
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('console', (m) => {
    // A refused call is logged by Chromium as a failed resource; that is the test's doing.
    if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) problems.push(m.text());
  });
  page.on('request', (r) => urls.push(r.url()));
  return { page, problems, urls };
}

/** Desktop and 360 px screenshots of what is on screen now. */
async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  // At 360 px nothing may be wider than the screen (tables scroll inside their own box).
  const overflow = (await page.evaluate(
    'document.documentElement.scrollWidth - document.documentElement.clientWidth',
  )) as number;
  expect(overflow, `${name} is wider than 360 px`).toBeLessThanOrEqual(0);
  await page.screenshot({ path: join(SHOTS, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
}

describe.skipIf(!available)('the console in a browser', () => {
  beforeAll(async () => {
    await mkdir(SHOTS, { recursive: true });
    browser = await launch();
  }, 40_000);
  afterAll(async () => {
    await browser?.close();
  });

  describe('without API keys', () => {
    let s: TestServer;
    beforeAll(async () => {
      // Usage spread over yesterday and today, so the chart has two periods to show; the
      // service's clock ends at the browser's, so "resets in ..." reads as it would in use.
      const now = Date.now();
      const hoursAgo = (h: number) => s.clock.set(new Date(now - h * 3_600_000));
      s = await startTestServer({ now: new Date(now - 31 * 3_600_000).toISOString() });
      const set = (subject: string, limit: bigint, period = Period.DAY) =>
        s.connect.admin.setQuota({ subject, metric: 'api_calls', period, limit, reason: 'setup' });
      await set('acme', 10n);
      await set('acme', 50n, Period.WEEK);
      await set('acme-labs', 4n);
      await set('globex', 100n);
      // Yesterday (25 h ago or more) 6 in all, today at most 7 and 4 of it now: the day quota
      // is the fullest (40% or more), the week's at most 26%, acme-labs' 25%.
      for (const [h, amount] of [
        [30, 2],
        [27, 3],
        [25, 1],
        [6, 1],
        [3, 2],
        [0, 4],
      ] as const) {
        hoursAgo(h);
        await s.connect.quota.consume({
          subject: 'acme',
          metric: 'api_calls',
          amount: BigInt(amount),
        });
      }
      await s.connect.quota.consume({ subject: 'acme-labs', metric: 'api_calls', amount: 1n });
    });
    afterAll(() => s?.close());

    it('finds, shows, edits and resets a subject', async () => {
      const { page, problems } = await openPage();
      try {
        await page.goto(s.baseUrl + '/');
        // Subjects: search by prefix; fullest first; the bar says what GetQuota says.
        await page.getByLabel('Subject prefix').fill('acme');
        await page.getByLabel('Subject prefix').press('Enter');
        await page.locator('table meter').first().waitFor();
        const rows = page.locator('tbody tr');
        expect(await rows.count()).toBe(3);
        await expect.poll(() => rows.first().innerText()).toMatch(/acme\s+api_calls\s+day/);
        expect(await page.locator('tbody').innerText()).not.toContain('globex');
        const bar = rows.first().locator('meter');
        const { quotas } = await s.connect.quota.getQuota({ subject: 'acme', metric: 'api_calls' });
        const day = quotas.find((q) => q.period === Period.DAY)!;
        expect(await bar.getAttribute('value')).toBe(day.used.toString());
        expect(await bar.getAttribute('max')).toBe(day.limit.toString());
        expect(await rows.first().innerText()).toContain(usageText(day.used, day.limit));
        await shoot(page, 'subjects');

        // Subject: its quotas with a chart each, and its events.
        await rows.first().getByRole('link', { name: 'acme' }).click();
        await page.locator('article.quota svg.chart').first().waitFor();
        expect(await page.locator('article.quota').count()).toBe(2);
        await page.getByRole('heading', { name: 'Recent events' }).waitFor();
        expect(await page.locator('main').innerText()).toMatch(/USAGE[\s\S]*\+4/);
        await shoot(page, 'subject');

        // Quota editor, from the subject's day quota: change the limit, then reset.
        await page.getByRole('link', { name: 'Edit or reset' }).first().click();
        await page.locator('#set-form').waitFor();
        expect(await page.locator('#set-subject').inputValue()).toBe('acme');
        await page.locator('#set-period').selectOption(String(Period.DAY));
        await page.getByLabel('Limit').fill('20');
        await page.locator('#set-reason').fill('raised for the launch');
        await page.getByRole('button', { name: 'Set quota' }).click();
        await page
          .locator('#set-form .status')
          .getByText(/QUOTA_SET recorded as sequence/)
          .waitFor();
        const after = await s.connect.quota.getQuota({ subject: 'acme', metric: 'api_calls' });
        expect(after.quotas.find((q) => q.period === Period.DAY)?.limit).toBe(20n);

        await page.locator('#reset-period').selectOption(String(Period.DAY));
        await page.locator('#reset-reason').fill('support ticket 42');
        await page.getByRole('button', { name: 'Reset', exact: true }).click();
        await page
          .locator('#reset-form .status')
          .getByText(/1 RESET_MANUAL event/)
          .waitFor();
        const resetRow = page.locator('#reset-form tbody tr').first();
        expect(await resetRow.innerText()).toMatch(
          new RegExp(`RESET_MANUAL[\\s\\S]*${day.used} → 0[\\s\\S]*support ticket 42`),
        );
        await shoot(page, 'editor');

        // Events: the reset is in the history; following shows new usage as it comes.
        await page.getByRole('link', { name: 'Events' }).click();
        await page.locator('tbody tr').first().waitFor();
        expect(await page.locator('tbody tr').first().innerText()).toMatch(
          /RESET_MANUAL[\s\S]*anonymous[\s\S]*support ticket 42/,
        );
        await page.getByLabel('Follow new events live').check();
        await s.connect.quota.consume({
          subject: 'globex',
          metric: 'api_calls',
          amount: 5n,
          idempotencyKey: 'live-1',
        });
        await expect
          .poll(() => page.locator('tbody tr').first().innerText(), { timeout: 8_000 })
          .toMatch(/globex[\s\S]*USAGE[\s\S]*live-1/);
        await page.getByLabel('Follow new events live').uncheck();
        await shoot(page, 'events');

        // Resets: status, history and a sweep on demand.
        await page.getByRole('link', { name: 'Resets' }).click();
        await page.getByRole('button', { name: 'Run sweep now' }).click();
        await page.getByText(/^Run \d+: success/).waitFor();
        expect(await page.locator('main table').innerText()).toContain('manual');
        await shoot(page, 'resets');
        expect(problems).toEqual([]);
      } finally {
        await page.context().close();
      }
    }, 50_000);
  });

  describe('with API keys', () => {
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
      const asAdmin = createClient(
        QuotaAdminService,
        createConnectTransport({
          baseUrl: s.baseUrl,
          httpVersion: '1.1',
          interceptors: [
            (next) => (req) => {
              req.header.set('authorization', `Bearer ${keys.admin}`);
              return next(req);
            },
          ],
        }),
      );
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
      const { page, problems, urls } = await openPage();
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
});
