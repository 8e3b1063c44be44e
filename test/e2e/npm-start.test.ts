import { rm } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { fixedPort } from '../support/ports.js';
import {
  dataDir,
  embeddedClient,
  killGroup,
  npmStart,
  postgresRunning,
  untilCallsWait,
  type NpmService,
} from '../support/npm-start.js';
import { callJson } from '../support/process.js';
import { GrpcCaller } from '../support/server.js';

// The service as operators run it: `npm start` on the embedded database, stopped by a signal
// to npm or to the whole process group (Ctrl-C) while calls are in flight on both transports,
// and killed with -9 and started again on the same data directory.

const dirs: string[] = [];
const services: NpmService[] = [];
afterAll(async () => {
  for (const s of services) killGroup(s.npm, 'SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function setUp(): Promise<{ dir: string; port: number; env: Record<string, string> }> {
  const dir = await dataDir();
  dirs.push(dir);
  const port = await fixedPort();
  return { dir, port, env: { QUOTA_DATA_DIR: dir, QUOTA_ADDR: `127.0.0.1:${port}` } };
}

const consume = (port: number, key: string) =>
  callJson(port, 'quota.v1.QuotaService/Consume', {
    subject: 'acme',
    metric: 'api_calls',
    amount: '1',
    idempotencyKey: key,
  });

const setLimit = (port: number, limit: string) =>
  callJson(port, 'quota.v1.QuotaAdminService/SetQuota', {
    subject: 'acme',
    metric: 'api_calls',
    period: 'PERIOD_DAY',
    limit,
  });

async function used(port: number): Promise<string> {
  const q = await callJson(port, 'quota.v1.QuotaService/GetQuota', { subject: 'acme' });
  return (q.body.quotas as { used: string }[])[0]!.used;
}

/**
 * Holds the subject's row lock, starts 8 Connect and 8 gRPC calls (they wait behind it),
 * sends the signal, releases the lock, and returns the answers.
 */
async function stopUnderLoad(
  svc: NpmService,
  dir: string,
  port: number,
  signal: () => void,
): Promise<{ connect: boolean[]; grpc: boolean[] }> {
  await setLimit(port, '1000');
  expect((await consume(port, 'warm')).body.allowed).toBe(true);
  const db = await embeddedClient(dir);
  const holder = await embeddedClient(dir);
  const grpc = new GrpcCaller(`127.0.0.1:${port}`);
  try {
    // Connect the gRPC channel first: a stopping server takes no new connections.
    await grpc.call(QuotaService, QuotaService.method.getQuota, { subject: 'acme' });
    await holder.query('BEGIN');
    await holder.query("SELECT 1 FROM subjects WHERE subject = 'acme' FOR UPDATE");
    const viaConnect = Array.from({ length: 8 }, (_, i) => consume(port, `c${i}`));
    const viaGrpc = Array.from({ length: 8 }, (_, i) =>
      grpc.call(QuotaService, QuotaService.method.consume, {
        subject: 'acme',
        metric: 'api_calls',
        amount: 1n,
        idempotencyKey: `g${i}`,
      }),
    );
    await untilCallsWait(db, 1);
    await untilInFlight(port, 16); // every call reached the service; none is still on its way
    signal();
    await new Promise((r) => setTimeout(r, 300)); // the drain has begun; calls still held
    await holder.query('COMMIT');
    const connect = (await Promise.all(viaConnect)).map((r) => r.body.allowed === true);
    const grpcAnswers = (await Promise.all(viaGrpc)).map((r) => r.allowed);
    return { connect, grpc: grpcAnswers };
  } finally {
    grpc.close();
    await holder.end().catch(() => {});
    await db.end().catch(() => {});
  }
}

describe('npm start', () => {
  for (const [name, send] of [
    ['SIGTERM to the npm process', (s: NpmService) => s.npm.kill('SIGTERM')],
    ['SIGINT to the process group (Ctrl-C)', (s: NpmService) => killGroup(s.npm, 'SIGINT')],
  ] as const) {
    it(`on ${name}: answers every call in flight, stops PostgreSQL cleanly, exits 0`, async () => {
      const { dir, port, env } = await setUp();
      const svc = await npmStart(env);
      services.push(svc);
      const answers = await stopUnderLoad(svc, dir, port, () => send(svc)).catch((e: unknown) => {
        console.log(svc.output());
        throw e;
      });
      expect(answers.connect).toEqual(Array(8).fill(true));
      expect(answers.grpc).toEqual(Array(8).fill(true));
      expect(await svc.exited).toBe(0);
      expect(svc.output()).toContain('"msg":"stopped"');
      expect(postgresRunning(dir)).toBe(false);
      // And it starts again on the same directory with every answered call in the ledger.
      const again = await npmStart(env);
      services.push(again);
      expect(await used(port)).toBe('17');
      // The console is served as committed: no build step between npm ci and npm start.
      const page = await fetch(`http://127.0.0.1:${port}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('/console/app.js');
      expect((await fetch(`http://127.0.0.1:${port}/console/app.js`)).status).toBe(200);
      again.npm.kill('SIGTERM');
      expect(await again.exited).toBe(0);
    }, 120_000);
  }

  it('stops at once on a second signal during the drain, leaving a database that starts again', async () => {
    const { dir, port, env } = await setUp();
    const svc = await npmStart(env);
    services.push(svc);
    await setLimit(port, '10');
    const holder = await embeddedClient(dir);
    await holder.query('BEGIN');
    // Nothing reads or writes counters until this transaction ends: the call is stuck.
    await holder.query('LOCK TABLE counters IN ACCESS EXCLUSIVE MODE');
    const stuck = consume(port, 'stuck').catch(() => null);
    await untilInFlight(port, 1);
    svc.npm.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1_200)); // later than a forwarded copy would come
    svc.npm.kill('SIGTERM');
    expect(await svc.exited).not.toBe(0);
    expect(svc.output()).toContain('second signal');
    await stuck;
    await holder.end().catch(() => {});
    expect(postgresRunning(dir)).toBe(false);
    const again = await npmStart(env);
    services.push(again);
    expect((await consume(port, 'after')).body.allowed).toBe(true);
    again.npm.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  }, 120_000);

  it('serves again after kill -9 of the service, and of its whole process group, with every acknowledged call', async () => {
    const { dir, port, env } = await setUp();
    let svc = await npmStart(env);
    services.push(svc);
    await setLimit(port, '1000');
    let acknowledged = 0;
    for (const kill of ['service', 'group'] as const) {
      for (let i = 0; i < 5; i++) {
        if ((await consume(port, `${kill}-${i}`)).body.allowed) acknowledged++;
      }
      if (kill === 'service') {
        // The Node process itself, not npm: find it as npm's child.
        const db = await embeddedClient(dir);
        await db.end();
        process.kill(Number(await servicePid(svc)), 'SIGKILL');
      } else {
        killGroup(svc.npm, 'SIGKILL');
      }
      await svc.exited;
      const t0 = Date.now();
      svc = await npmStart(env);
      services.push(svc);
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(svc.output()).not.toMatch(/failed to start/);
      expect(await used(port)).toBe(String(acknowledged));
    }
    expect(svc.output()).toMatch(/left running by a previous run|stale postmaster.pid/);
    svc.npm.kill('SIGTERM');
    expect(await svc.exited).toBe(0);
  }, 180_000);
});

async function untilInFlight(port: number, n: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const inFlight = [
      ...text.matchAll(/^quota_rpc_in_flight\{method="[^"]*Consume",[^}]*\} (\d+)/gm),
    ]
      .map((m) => Number(m[1]))
      .reduce((a, b) => a + b, 0);
    if (inFlight >= n) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`never ${n} Consume calls in flight`);
}

/** The service's PID: with `exec`, npm's child is the Node process itself. */
async function servicePid(svc: NpmService): Promise<number> {
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(svc.npm.pid)], {
    encoding: 'utf8',
  });
  return Number(out.trim().split('\n')[0]);
}
