import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashKey } from '../../src/auth/api-keys.js';
import { loadConfig } from '../../src/config.js';

describe('configuration', () => {
  it('has working defaults on loopback with no keys', () => {
    const { config, errors } = loadConfig({});
    expect(errors).toEqual([]);
    expect(config).toMatchObject({
      databaseUrl: null,
      addr: { host: '127.0.0.1', port: 50051 },
      apiKeys: null,
      tls: null,
      reset: { enabled: true, cron: '*/5 * * * *', maxAttempts: 3, retryBaseMs: 5000 },
      // Pooled connections outlive the pauses of an uneven load (pg-pool's own default is 10 s).
      dbIdleTimeoutMs: 300_000,
    });
    expect(loadConfig({ QUOTA_DB_IDLE_TIMEOUT_MS: '0' }).config.dbIdleTimeoutMs).toBe(0);
    expect(loadConfig({ QUOTA_DB_IDLE_TIMEOUT_MS: '-1' }).errors[0]).toMatch(
      /^QUOTA_DB_IDLE_TIMEOUT_MS/,
    );
  });

  it('lists every mistake, each naming its variable', () => {
    const { errors } = loadConfig({
      QUOTA_ADDR: 'nonsense',
      QUOTA_RESET_SCHEDULE: 'every day',
      QUOTA_RESET_ENABLED: 'maybe',
      QUOTA_DB_POOL_SIZE: '0',
      QUOTA_TLS_CERT_FILE: 'cert.pem',
      QUOTA_API_KEYS_FILE: '/nonexistent/keys.json',
    });
    expect(errors.map((e) => e.split(':')[0])).toEqual([
      'QUOTA_TLS_CERT_FILE and QUOTA_TLS_KEY_FILE',
      'QUOTA_API_KEYS_FILE',
      'QUOTA_ADDR',
      'QUOTA_RESET_ENABLED',
      'QUOTA_RESET_SCHEDULE',
      'QUOTA_DB_POOL_SIZE',
    ]);
  });

  it('serves the console unless QUOTA_CONSOLE is false', () => {
    expect(loadConfig({}).config.console).toBe(true);
    expect(loadConfig({ QUOTA_CONSOLE: 'false' }).config.console).toBe(false);
    expect(loadConfig({ QUOTA_CONSOLE: 'off' }).errors).toEqual([
      'QUOTA_CONSOLE: "off" must be true or false',
    ]);
  });

  it('reads the group-commit settings and keeps them below the pool size', () => {
    expect(loadConfig({}).config.groupCommit).toEqual({
      maxFlushes: 4,
      maxBatch: 500,
      minParallel: 64,
      maxWaitMs: 25,
    });
    const ok = loadConfig({
      QUOTA_GROUP_COMMIT_TRANSACTIONS: '2',
      QUOTA_GROUP_COMMIT_MAX_CALLS: '50',
      QUOTA_GROUP_COMMIT_PARALLEL_CALLS: '8',
      QUOTA_GROUP_COMMIT_WAIT_MS: '0',
    });
    expect(ok.errors).toEqual([]);
    expect(ok.config.groupCommit).toEqual({
      maxFlushes: 2,
      maxBatch: 50,
      minParallel: 8,
      maxWaitMs: 0,
    });
    const bad = loadConfig({
      QUOTA_DB_POOL_SIZE: '4',
      QUOTA_GROUP_COMMIT_TRANSACTIONS: '4',
      QUOTA_GROUP_COMMIT_MAX_CALLS: '0',
      QUOTA_GROUP_COMMIT_PARALLEL_CALLS: 'some',
    });
    expect(bad.errors).toEqual([
      'QUOTA_GROUP_COMMIT_MAX_CALLS: "0" must be a whole number from 1 to 10000',
      'QUOTA_GROUP_COMMIT_PARALLEL_CALLS: "some" must be a whole number from 1 to 10000',
      'QUOTA_GROUP_COMMIT_TRANSACTIONS: 4 must be below QUOTA_DB_POOL_SIZE (4), so reads, refunds and resets still get connections',
    ]);
  });

  it('reads how many subject states to keep; 0 keeps none', () => {
    expect(loadConfig({}).config.stateCacheSubjects).toBe(50_000);
    expect(loadConfig({ QUOTA_STATE_CACHE_SUBJECTS: '0' }).config.stateCacheSubjects).toBe(0);
    expect(loadConfig({ QUOTA_STATE_CACHE_SUBJECTS: 'lots' }).errors).toEqual([
      'QUOTA_STATE_CACHE_SUBJECTS: "lots" must be a whole number from 0 to 10000000',
    ]);
  });

  it('listens beyond loopback only when API keys are configured', async () => {
    expect(loadConfig({ QUOTA_ADDR: '0.0.0.0:50051' }).errors).toEqual([
      expect.stringMatching(
        /^QUOTA_ADDR: 0\.0\.0\.0 is not a loopback address; without QUOTA_API_KEYS_FILE/,
      ),
    ]);
    expect(loadConfig({ QUOTA_ADDR: '[::1]:50051' }).errors).toEqual([]);
    const dir = await mkdtemp(join(tmpdir(), 'quota-config-'));
    const keys = join(dir, 'keys.json');
    await writeFile(
      keys,
      JSON.stringify({ keys: [{ name: 'ops', role: 'admin', sha256: hashKey('k') }] }),
    );
    const ok = loadConfig({ QUOTA_ADDR: '0.0.0.0:50051', QUOTA_API_KEYS_FILE: keys });
    expect(ok.errors).toEqual([]);
    expect(ok.config.apiKeys?.file.keys).toHaveLength(1);
    await writeFile(keys, JSON.stringify({ keys: [] }));
    expect(loadConfig({ QUOTA_API_KEYS_FILE: keys }).errors).toEqual([
      expect.stringMatching(/has no keys/),
    ]);
  });

  it('refuses a certificate file that is not one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'quota-tls-'));
    await writeFile(join(dir, 'c.pem'), 'not a certificate');
    await writeFile(join(dir, 'k.pem'), 'not a key');
    const { errors } = loadConfig({
      QUOTA_TLS_CERT_FILE: join(dir, 'c.pem'),
      QUOTA_TLS_KEY_FILE: join(dir, 'k.pem'),
    });
    expect(errors).toEqual([expect.stringMatching(/^QUOTA_TLS_CERT_FILE \/ QUOTA_TLS_KEY_FILE: /)]);
  });
});
