import { spawn } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixedPort } from '../support/ports.js';
import { callJson, startService } from '../support/process.js';

// The newcomer's path, as a real process: `npm start` with no DATABASE_URL (embedded
// PostgreSQL in QUOTA_DATA_DIR), a 3/day quota consumed four times, SIGTERM, restart, same state.

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const start = startService;
const call = async (port: number, path: string, body: object) =>
  (await callJson(port, path, body)).body;

describe('the service process', () => {
  it('starts with an embedded database, refuses the fourth call, drains on SIGTERM and keeps its state', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'quota-main-'));
    await chmod(dataDir, 0o755);
    dirs.push(dataDir);
    const port = await fixedPort();
    const env = { QUOTA_DATA_DIR: dataDir, QUOTA_ADDR: `127.0.0.1:${port}`, LOG_LEVEL: 'info' };

    const first = await start(env);
    await call(port, 'quota.v1.QuotaAdminService/SetQuota', {
      subject: 'acme',
      metric: 'api_calls',
      period: 'PERIOD_DAY',
      limit: '3',
    });
    const answers = [];
    for (let i = 0; i < 4; i++) {
      answers.push(
        await call(port, 'quota.v1.QuotaService/Consume', {
          subject: 'acme',
          metric: 'api_calls',
          amount: '1',
        }),
      );
    }
    expect(answers.map((a) => a.allowed ?? false)).toEqual([true, true, true, false]);
    expect(answers[3]!.retryAt).toMatch(/T00:00:00Z$/);
    // SIGHUP means "reload the API keys": it must not stop anything.
    first.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    const still = await call(port, 'quota.v1.QuotaService/GetQuota', { subject: 'acme' });
    expect((still.quotas as { used: string }[])[0]!.used).toBe('3');
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(first.output()).toContain('stopped');

    const second = await start(env);
    const q = await call(port, 'quota.v1.QuotaService/GetQuota', {
      subject: 'acme',
      metric: 'api_calls',
    });
    expect((q.quotas as { used: string }[])[0]!.used).toBe('3');
    const events = await call(port, 'quota.v1.QuotaAdminService/ListEvents', { subject: 'acme' });
    expect((events.events as { type: string }[]).map((e) => e.type)).toEqual([
      'EVENT_TYPE_QUOTA_SET',
      'EVENT_TYPE_USAGE',
      'EVENT_TYPE_USAGE',
      'EVENT_TYPE_USAGE',
    ]);
    second.child.kill('SIGINT');
    expect(await second.exited).toBe(0);
  }, 120_000);

  it('sends a trace of each call to the OTLP collector named by OTEL_EXPORTER_OTLP_ENDPOINT', async () => {
    const received: Buffer[] = [];
    const collector = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/v1/traces') received.push(Buffer.concat(chunks));
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((ok) => collector.listen(0, '127.0.0.1', ok));
    const collectorPort = (collector.address() as { port: number }).port;
    const dataDir = await mkdtemp(join(tmpdir(), 'quota-otel-'));
    await chmod(dataDir, 0o755);
    dirs.push(dataDir);
    const port = await fixedPort();
    const p = await start({
      QUOTA_DATA_DIR: dataDir,
      QUOTA_ADDR: `127.0.0.1:${port}`,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collectorPort}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });
    try {
      await call(port, 'quota.v1.QuotaAdminService/SetQuota', {
        subject: 'acme',
        metric: 'api_calls',
        period: 'PERIOD_DAY',
        limit: '3',
      });
      await call(port, 'quota.v1.QuotaService/Consume', {
        subject: 'acme',
        metric: 'api_calls',
        amount: '1',
      });
      const deadline = Date.now() + 10_000;
      const has = (text: string) => received.some((b) => b.includes(text));
      while (!(has('quota.v1.QuotaService/Consume') && has('pg.query')) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(has('quota.v1.QuotaService/Consume')).toBe(true);
      expect(has('pg.query')).toBe(true);
      expect(has('quota-ledger')).toBe(true); // service.name
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
      collector.close();
    }
  }, 60_000);

  it('keeps serving when the OTLP collector is away', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'quota-otel-away-'));
    await chmod(dataDir, 0o755);
    dirs.push(dataDir);
    const port = await fixedPort();
    const nowhere = await fixedPort();
    const p = await start({
      QUOTA_DATA_DIR: dataDir,
      QUOTA_ADDR: `127.0.0.1:${port}`,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${nowhere}`,
      OTEL_BSP_SCHEDULE_DELAY: '50',
    });
    await call(port, 'quota.v1.QuotaAdminService/SetQuota', {
      subject: 'a',
      metric: 'm',
      period: 'PERIOD_DAY',
      limit: '3',
    });
    for (let i = 0; i < 3; i++) {
      const r = await call(port, 'quota.v1.QuotaService/Consume', {
        subject: 'a',
        metric: 'm',
        amount: '1',
      });
      expect(r.allowed).toBe(true);
      await new Promise((r) => setTimeout(r, 150));
    }
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  }, 60_000);

  it('reports every configuration mistake, one line each, and exits non-zero', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: {
        ...process.env,
        QUOTA_ADDR: '0.0.0.0:50051',
        LOG_LEVEL: 'loud',
        DATABASE_URL: 'mysql://x',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((ok) => child.once('exit', ok));
    expect(code).toBe(2);
    const lines = err.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(err).toMatch(/^config error: DATABASE_URL:/m);
    expect(err).toMatch(/^config error: QUOTA_ADDR: 0\.0\.0\.0 is not a loopback address/m);
    expect(err).toMatch(/^config error: LOG_LEVEL:/m);
  });
});
