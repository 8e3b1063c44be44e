import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usageText } from '../../console/src/logic.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import {
  CHROMIUM,
  chromiumAvailable,
  launchChromium,
  openPage,
  shoot,
} from '../support/console-browser.js';
import { startTestServer, type TestServer } from '../support/server.js';

// The console in a real headless Chromium against a real server without keys: find a subject,
// check its bar against GetQuota, see its chart and events, set and reset a quota, see the
// RESET_MANUAL event, follow new events, run a sweep. With keys: console-auth.test.ts.
// Screenshots of every page at desktop and phone width go to test-output/console/.

if (!chromiumAvailable)
  console.warn(`console browser test skipped: ${CHROMIUM} not found (apt-get install -y chromium)`);

let browser: Browser;
beforeAll(async () => {
  if (chromiumAvailable) browser = await launchChromium();
}, 40_000);
afterAll(async () => {
  await browser?.close();
});

describe.skipIf(!chromiumAvailable)('the console in a browser, without API keys', () => {
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
    const { page, problems } = await openPage(browser);
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
      // An event is listed once every transaction that began before it has ended, on the whole
      // PostgreSQL server (the feed's no-gap rule): another test file's open transaction can
      // hold it back for a while, so the page is reloaded until it shows (bounded).
      await expect
        .poll(
          async () => {
            await page.locator('tbody tr').first().waitFor();
            const first = await page.locator('tbody tr').first().innerText();
            if (!first.includes('RESET_MANUAL')) await page.reload();
            return first;
          },
          { timeout: 20_000, interval: 500 },
        )
        .toMatch(/RESET_MANUAL[\s\S]*anonymous[\s\S]*support ticket 42/);
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
