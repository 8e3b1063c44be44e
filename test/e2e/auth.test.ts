import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey, KeyStore, readKeyFile } from '../../src/auth/api-keys.js';
import { createQuotaClient } from '../../src/client/index.js';
import { createKey, revokeKey, watchKeyFile } from '../../src/auth/key-file.js';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

let dir: string;
let file: string;
let s: TestServer;
let stopWatching: () => void;
const keys: Record<string, string> = {};

const clients = (key?: string) => {
  const transport = createConnectTransport({
    baseUrl: s.baseUrl,
    httpVersion: '1.1',
    interceptors: key
      ? [(next) => (req) => (req.header.set('authorization', `Bearer ${key}`), next(req))]
      : [],
  });
  return {
    quota: createClient(QuotaService, transport),
    admin: createClient(QuotaAdminService, transport),
  };
};

const codeOf = (p: Promise<unknown>): Promise<Code | 'ok'> =>
  p.then(
    () => 'ok' as const,
    (e: unknown) => (e instanceof ConnectError ? e.code : Promise.reject(e)),
  );

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quota-keys-'));
  file = join(dir, 'keys.json');
  keys.ops = await createKey(file, 'ops', 'admin');
  keys.billing = await createKey(file, 'billing-svc', 'consumer');
  keys.dash = await createKey(file, 'dashboard', 'reader');
  const store = new KeyStore(readKeyFile(file));
  stopWatching = watchKeyFile(file, store, pino({ level: 'silent' }));
  s = await startTestServer({ authenticate: store.authenticate.bind(store) });
  await clients(keys.ops).admin.setQuota({
    subject: 'acme',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 10n,
    reason: 'contract 12',
  });
});
afterAll(async () => {
  stopWatching();
  await s.close();
  await rm(dir, { recursive: true, force: true });
});

describe('API keys on both transports', () => {
  it('stores only hashes in the keys file', async () => {
    const text = await readFile(file, 'utf8');
    for (const k of Object.values(keys)) {
      expect(text).not.toContain(k);
      expect(text).toContain(hashKey(k));
    }
  });

  it('refuses calls without a valid key, over Connect and gRPC', async () => {
    expect(await codeOf(clients().quota.getQuota({ subject: 'acme' }))).toBe(Code.Unauthenticated);
    expect(await codeOf(clients('qlk_not-a-key').quota.getQuota({ subject: 'acme' }))).toBe(
      Code.Unauthenticated,
    );
    await expect(
      s.grpc.call(QuotaService, QuotaService.method.getQuota, { subject: 'acme' }),
    ).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
    const ok = await s.grpc.call(
      QuotaService,
      QuotaService.method.getQuota,
      { subject: 'acme' },
      { 'x-api-key': keys.dash! },
    );
    expect(ok.quotas).toHaveLength(1);
  });

  it('enforces roles', async () => {
    const consumer = clients(keys.billing);
    const reader = clients(keys.dash);
    expect(
      await codeOf(consumer.quota.consume({ subject: 'acme', metric: 'api_calls', amount: 1n })),
    ).toBe('ok');
    expect(await codeOf(consumer.admin.resetQuota({ subject: 'acme', reason: 'x' }))).toBe(
      Code.PermissionDenied,
    );
    expect(
      await codeOf(reader.quota.consume({ subject: 'acme', metric: 'api_calls', amount: 1n })),
    ).toBe(Code.PermissionDenied);
    expect(await codeOf(reader.admin.listEvents({ subject: 'acme' }))).toBe('ok');
    await expect(
      s.grpc.call(
        QuotaAdminService,
        QuotaAdminService.method.triggerResetSweep,
        {},
        { authorization: `Bearer ${keys.dash}` },
      ),
    ).rejects.toMatchObject({ code: status.PERMISSION_DENIED });
  });

  it('records who did what, with the reason, and filters the history by actor', async () => {
    const ops = clients(keys.ops);
    await ops.admin.resetQuota({ subject: 'acme', reason: 'support ticket 99' });
    const all = await ops.admin.listEvents({ subject: 'acme' });
    expect(all.events.map((e) => [e.actor, e.reason])).toEqual([
      ['ops', 'contract 12'],
      ['billing-svc', ''],
      ['ops', 'support ticket 99'],
    ]);
    const byBilling = await ops.admin.listEvents({ subject: 'acme', actor: 'billing-svc' });
    expect(byBilling.events).toHaveLength(1);
  });

  it('works through the typed client with an API key, on both transports', async () => {
    for (const transport of ['grpc', 'connect'] as const) {
      const ok = createQuotaClient(s.baseUrl, { transport, apiKey: keys.dash });
      expect((await ok.quota.getQuota({ subject: 'acme' })).quotas).toHaveLength(1);
      const none = createQuotaClient(s.baseUrl, { transport });
      expect(await codeOf(none.quota.getQuota({ subject: 'acme' }))).toBe(Code.Unauthenticated);
    }
  });

  it('keeps health, reflection and the HTTP endpoints open', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics'])
      expect((await fetch(`${s.baseUrl}${path}`)).status).toBe(200);
  });

  it('picks up a revoked key without a restart', async () => {
    const billing = clients(keys.billing);
    expect(await codeOf(billing.quota.getQuota({ subject: 'acme' }))).toBe('ok');
    await revokeKey(file, 'billing-svc');
    let code: Code | 'ok' = 'ok';
    for (let i = 0; i < 40 && code === 'ok'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      code = await codeOf(billing.quota.getQuota({ subject: 'acme' }));
    }
    expect(code).toBe(Code.Unauthenticated);
    expect(await codeOf(clients(keys.ops).quota.getQuota({ subject: 'acme' }))).toBe('ok');
  });
});

describe('npm run quota -- keys', () => {
  it('creates a key, prints it once and writes only its hash', async () => {
    const f = join(dir, 'cli-keys.json');
    const run = promisify(execFile);
    const { stdout, stderr } = await run(process.execPath, [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'keys',
      'create',
      'deployer',
      '--role',
      'admin',
      '--file',
      f,
    ]);
    const key = stdout.trim();
    expect(key).toMatch(/^qlk_/);
    expect(stderr).toMatch(/shown once/);
    const text = await readFile(f, 'utf8');
    expect(text).not.toContain(key);
    expect(readKeyFile(f).keys).toEqual([
      expect.objectContaining({ name: 'deployer', role: 'admin', sha256: hashKey(key) }),
    ]);
    const list = await run(process.execPath, [
      '--import',
      'tsx',
      'src/cli/main.ts',
      'keys',
      'list',
      '--file',
      f,
    ]);
    expect(list.stdout).toMatch(/^NAME\s+ROLE\s+CREATED\ndeployer\s+admin\s+\d{4}-/);
    await expect(
      run(process.execPath, [
        '--import',
        'tsx',
        'src/cli/main.ts',
        'keys',
        'create',
        'x',
        '--role',
        'root',
        '--file',
        f,
      ]),
    ).rejects.toMatchObject({ stderr: expect.stringMatching(/--role must be one of/) });
  });
});
