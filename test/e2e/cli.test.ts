import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

let s: TestServer;
let env: NodeJS.ProcessEnv;
const cli = (...args: string[]) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env });

beforeAll(async () => {
  s = await startTestServer();
  env = { ...process.env, QUOTA_URL: s.baseUrl };
  await s.connect.admin.setQuota({
    subject: '*',
    metric: 'messages',
    period: Period.DAY,
    limit: 200n,
  });
  await s.connect.admin.setQuota({
    subject: 'acme',
    metric: 'messages',
    period: Period.WEEK,
    limit: 1000n,
    timeZone: 'Europe/Paris',
  });
  await s.connect.quota.consume({ subject: 'acme', metric: 'messages', amount: 12n });
});
afterAll(() => s.close());

describe('npm run quota', () => {
  it('status prints every quota of a subject as a table', async () => {
    const { stdout } = await cli('status', 'acme');
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(
      /^METRIC\s+PERIOD\s+USED\s+LIMIT\s+REMAINING\s+RESETS AT\s+ZONE\s+DEFAULT$/,
    );
    expect(lines[1]).toMatch(
      /^messages\s+DAY\s+12\s+200\s+188\s+2026-03-11T00:00:00Z\s+UTC\s+yes$/,
    );
    expect(lines[2]).toMatch(
      /^messages\s+WEEK\s+12\s+1000\s+988\s+2026-03-15T23:00:00Z\s+Europe\/Paris$/,
    );
  });

  it('reset needs a reason and records it', async () => {
    await expect(cli('reset', 'acme')).rejects.toMatchObject({
      stderr: expect.stringMatching(/--reason/),
    });
    const { stdout } = await cli(
      'reset',
      'acme',
      '--metric',
      'messages',
      '--period',
      'day',
      '--reason',
      'ticket 7',
    );
    expect(stdout).toMatch(/^1 event\(s\) appended/);
    const ev = await s.connect.admin.listEvents({ subject: 'acme', actor: 'anonymous' });
    expect(ev.events.at(-1)!.reason).toBe('ticket 7');
  });

  it('events lists the newest events, and --follow prints new ones as they are written', async () => {
    const { stdout } = await cli('events', '--subject', 'acme', '--limit', '2');
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/RESET_MANUAL/);

    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'events',
        '--subject',
        'acme',
        '--follow',
        '--limit',
        '1',
      ],
      { env },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const deadline = Date.now() + 15_000;
      while (!out.includes('RESET_MANUAL') && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      await s.connect.quota.consume({
        subject: 'acme',
        metric: 'messages',
        amount: 5n,
        attributes: { source: 'follow-test' },
      });
      while (!/USAGE\s+messages\s+5/.test(out) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(out).toMatch(/USAGE\s+messages\s+5/);
    } finally {
      child.kill('SIGINT');
    }
  }, 30_000);

  it('runs shows the scheduler history', async () => {
    await s.connect.admin.triggerResetSweep({});
    const { stdout } = await cli('runs');
    expect(stdout).toMatch(
      /^ID\s+STARTED\s+FINISHED\s+TRIGGER\s+REPLICA\s+ATTEMPT\s+OUTCOME\s+ROLLED\s+ERROR/,
    );
    expect(stdout).toMatch(/manual\s+\S+\s+1\s+success\s+\d+/);
  });

  it('verify reports a tampered counter with exit status 1, and rebuild repairs it', async () => {
    expect((await cli('verify')).stdout).toMatch(/subject\(s\) checked, 0 difference\(s\)/);
    await s.database.db.query(
      "UPDATE counters SET used = used + 40 WHERE subject = 'acme' AND period = 'WEEK'",
    );
    const bad = await cli('verify', '--subject', 'acme').catch(
      (e: { code: number; stdout: string }) => e,
    );
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stdout: string }).stdout).toMatch(
      /acme\s+messages\s+WEEK\s+17 from \S+\s+57 from/,
    );
    const fixed = await cli('rebuild', '--subject', 'acme');
    expect(fixed.stdout).toMatch(/1 counter\(s\) rebuilt from the ledger/);
    expect((await cli('verify')).stdout).toMatch(/0 difference\(s\)/);
  });

  it('says what went wrong when the service refuses', async () => {
    await expect(cli('status', 'acme', '--metric', 'Bad Metric')).rejects.toMatchObject({
      stderr: expect.stringMatching(/error: .*metric: "Bad Metric" does not match/),
    });
  });
});
