import { describe, expect, it } from 'vitest';
import { hashKey, KeyStore, parseKeyFile, rolesFor, generateKey } from '../../src/auth/api-keys.js';
import { allMethodNames, EXPECTED_ROLES } from '../support/roles.js';

const adminKey = generateKey();
const consumerKey = generateKey();
const readerKey = generateKey();
const store = new KeyStore({
  keys: [
    { name: 'ops', role: 'admin', sha256: hashKey(adminKey) },
    { name: 'billing', role: 'consumer', sha256: hashKey(consumerKey) },
    { name: 'dash', role: 'reader', sha256: hashKey(readerKey) },
  ],
});
const headers = (h: Record<string, string | undefined>) => (name: string) => h[name];
const CONSUME = 'quota.v1.QuotaService/Consume';

describe('API keys', () => {
  it('makes distinct random keys and stores only their hash', () => {
    expect(adminKey).toMatch(/^qlk_[A-Za-z0-9_-]{43}$/);
    expect(generateKey()).not.toBe(adminKey);
    expect(hashKey(adminKey)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashKey(adminKey)).not.toContain(adminKey.slice(4, 20));
  });

  it('accepts a key as a Bearer token or as x-api-key, and names the caller', () => {
    const who = (h: Record<string, string>) => store.authenticate(headers(h), CONSUME).actor;
    expect(who({ authorization: `Bearer ${consumerKey}` })).toBe('billing');
    expect(who({ authorization: `bearer  ${consumerKey}` })).toBe('billing');
    expect(who({ authorization: `  Bearer ${consumerKey} ` })).toBe('billing');
    expect(who({ 'x-api-key': adminKey })).toBe('ops');
    expect(who({ 'x-api-key': ` ${adminKey}\t` })).toBe('ops');
    expect(store.authenticate(headers({ 'x-api-key': adminKey }), CONSUME)).toEqual({
      actor: 'ops',
      role: 'admin',
      scope: null,
    });
  });

  it('refuses a missing, malformed or unknown key alike, saying nothing of which keys exist', () => {
    const errors = [
      {},
      { authorization: 'Basic b3BzOnB3' },
      { authorization: `Bearer ${generateKey()}` },
      { 'x-api-key': 'ops' },
      { 'x-api-key': 'x'.repeat(10_000) },
    ].map((h) => {
      try {
        store.authenticate(headers(h), CONSUME);
        return null;
      } catch (err) {
        return err as { code: string; message: string };
      }
    });
    for (const e of errors) expect(e).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(new Set(errors.map((e) => e!.message)).size).toBe(1);
  });

  it('lets each role call only its methods', () => {
    const call = (key: string, method: string) => {
      try {
        return store.authenticate(headers({ 'x-api-key': key }), method).actor;
      } catch (err) {
        return (err as { code: string }).code;
      }
    };
    const methods = {
      consume: CONSUME,
      refund: 'quota.v1.QuotaService/Refund',
      get: 'quota.v1.QuotaService/GetQuota',
      set: 'quota.v1.QuotaAdminService/SetQuota',
      reset: 'quota.v1.QuotaAdminService/ResetQuota',
      events: 'quota.v1.QuotaAdminService/ListEvents',
      runs: 'quota.v1.QuotaAdminService/ListResetRuns',
      sweep: 'quota.v1.QuotaAdminService/TriggerResetSweep',
    };
    const table = Object.fromEntries(
      Object.entries(methods).map(([k, m]) => [
        k,
        [call(consumerKey, m), call(readerKey, m), call(adminKey, m)],
      ]),
    );
    expect(table).toEqual({
      consume: ['billing', 'PERMISSION_DENIED', 'ops'],
      refund: ['billing', 'PERMISSION_DENIED', 'ops'],
      get: ['billing', 'dash', 'ops'],
      set: ['PERMISSION_DENIED', 'PERMISSION_DENIED', 'ops'],
      reset: ['PERMISSION_DENIED', 'PERMISSION_DENIED', 'ops'],
      events: ['PERMISSION_DENIED', 'dash', 'ops'],
      runs: ['PERMISSION_DENIED', 'dash', 'ops'],
      sweep: ['PERMISSION_DENIED', 'PERMISSION_DENIED', 'ops'],
    });
    expect(rolesFor('quota.v1.QuotaAdminService/SomethingNew')).toEqual(['admin']);
  });

  it('gives every method of every service exactly the roles decided in test/support/roles.ts', () => {
    const actual = Object.fromEntries(allMethodNames().map((m) => [m, [...rolesFor(m)].sort()]));
    const expected = Object.fromEntries(
      allMethodNames().map((m) => [m, [...(EXPECTED_ROLES[m] ?? ['(no decision)'])].sort()]),
    );
    expect(actual).toEqual(expected);
  });

  it('rejects a keys file with every problem listed', () => {
    expect(() => parseKeyFile('{', 'k.json')).toThrow(/k.json: not valid JSON/);
    expect(() => parseKeyFile('[]', 'k.json')).toThrow(/expected \{"keys"/);
    let msg = '';
    try {
      parseKeyFile(
        JSON.stringify({
          keys: [
            { name: 'a', role: 'root', sha256: 'x' },
            { name: 'a', role: 'admin', sha256: hashKey('k') },
            { name: '', role: 'admin', key: 'plain-text' },
          ],
        }),
        'k.json',
      );
    } catch (err) {
      msg = (err as Error).message;
    }
    expect(msg.split('\n')).toEqual([
      expect.stringMatching(/keys\[0\]\.role must be one of/),
      expect.stringMatching(/keys\[0\]\.sha256 must be 64 lowercase hex/),
      expect.stringMatching(/keys\[1\]\.name "a" appears twice/),
      expect.stringMatching(/keys\[2\]\.name must match/),
      expect.stringMatching(/keys\[2\]\.sha256/),
    ]);
  });
});
