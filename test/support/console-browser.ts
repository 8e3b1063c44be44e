import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import type { Browser, Page } from 'playwright-core';
import { expect } from 'vitest';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';

// What the console's browser tests share: Debian's chromium (apt-get install -y chromium) with
// the flags of test/e2e/browser.test.ts, nothing downloaded; pages that fail on any script error
// or CSP violation; screenshots at desktop and phone width in test-output/console/.

export const CHROMIUM = '/usr/bin/chromium';
export const chromiumAvailable = existsSync(CHROMIUM);

const SHOTS = resolve(import.meta.dirname, '..', '..', 'test-output', 'console');
const PHONE = { width: 360, height: 780 };
const DESKTOP = { width: 1280, height: 900 };

export async function launchChromium(): Promise<Browser> {
  await mkdir(SHOTS, { recursive: true });
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

/** A page that records script errors and CSP violations (problems) and every URL it asks for. */
export async function openPage(
  browser: Browser,
): Promise<{ page: Page; problems: string[]; urls: string[] }> {
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
export async function shoot(page: Page, name: string): Promise<void> {
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

/** An admin client that sends a key, for setting up a server with keys. */
export function adminWithKey(baseUrl: string, key: string): Client<typeof QuotaAdminService> {
  return createClient(
    QuotaAdminService,
    createConnectTransport({
      baseUrl,
      httpVersion: '1.1',
      interceptors: [
        (next) => (req) => {
          req.header.set('authorization', `Bearer ${key}`);
          return next(req);
        },
      ],
    }),
  );
}
