import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore, readKeyFile } from '../../src/auth/api-keys.js';
import { createKey } from '../../src/auth/key-file.js';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// Input is read exactly or refused: 64-bit integers only as canonical decimals or safe JSON
// numbers, no invalid UTF-8, no malformed protobuf or compression, on every transport; each
// refusal is INVALID_ARGUMENT naming what is wrong, counted in the metrics, and writes nothing.

let s: TestServer;
let dir: string;
let key: string;
let adminKey: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quota-exact-'));
  const file = join(dir, 'keys.json');
  key = await createKey(file, 'svc', 'consumer');
  adminKey = await createKey(file, 'ops', 'admin');
  const store = new KeyStore(readKeyFile(file));
  s = await startTestServer({ authenticate: store.authenticate.bind(store) });
});
afterAll(async () => {
  await s.close();
  await rm(dir, { recursive: true, force: true });
});

const post = (path: string, body: Uint8Array | string, headers: Record<string, string> = {}) =>
  fetch(`${s.baseUrl}/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key, ...headers },
    body,
  });

async function events(): Promise<number> {
  const r = await s.database.owner.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM ledger_events',
  );
  return r.rows[0]!.n;
}

const CONSUME = `${QuotaService.typeName}/Consume`;

describe('exact input', () => {
  it('takes int64 only as a canonical decimal string or a safe JSON number', async () => {
    await post(
      `${QuotaAdminService.typeName}/SetQuota`,
      JSON.stringify({ subject: 'n', metric: 'm', period: 'PERIOD_DAY', limit: '100000' }),
      { 'x-api-key': adminKey },
    );
    const before = await events();
    for (const amount of [
      '0x3e8',
      '0b1111101000',
      '+1000',
      ' 1000 ',
      '1e3',
      '01000',
      // A JSON number past 2^53: a double would round it to ...992 (raw text, not a JS number).
      { raw: '9007199254740993' },
    ]) {
      const literal = typeof amount === 'string' ? JSON.stringify(amount) : amount.raw;
      const res = await post(CONSUME, `{"subject":"n","metric":"m","amount":${literal}}`);
      expect(res.status, String(amount)).toBe(400);
      const body = (await res.json()) as { code: string; message: string };
      expect(body.code).toBe('invalid_argument');
      expect(body.message).toMatch(/^amount: /);
    }
    expect(await events()).toBe(before);
    for (const amount of ['1000', 1000]) {
      const res = await post(CONSUME, JSON.stringify({ subject: 'n', metric: 'm', amount }));
      expect(res.status).toBe(200);
    }
  });

  it('refuses invalid UTF-8 in a JSON body, naming the field, so two subjects never merge', async () => {
    const before = await events();
    const bytes = Buffer.concat([
      Buffer.from('{"subject":"ab'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('","metric":"m","amount":"1"}'),
    ]);
    const res = await post(CONSUME, bytes);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toBe('subject: is not valid UTF-8');
    expect(await events()).toBe(before);
  });

  it('answers malformed protobuf and broken compression with INVALID_ARGUMENT on Connect and gRPC-Web', async () => {
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    const proto = await post(CONSUME, garbage, { 'content-type': 'application/proto' });
    expect(proto.status).toBe(400);
    expect(((await proto.json()) as { code: string }).code).toBe('invalid_argument');

    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, garbage.length]), garbage]);
    const web = await post(CONSUME, frame, { 'content-type': 'application/grpc-web+proto' });
    expect(web.headers.get('grpc-status')).toBe('3');

    const gz = gzipSync(Buffer.from('{"subject":"n","metric":"m","amount":"1"}'));
    const truncated = await post(CONSUME, gz.subarray(0, gz.length - 8), {
      'content-encoding': 'gzip',
      'content-type': 'application/proto',
    });
    expect(truncated.status).toBe(400);

    // A compression bomb (64 MiB of spaces in 64 KiB) stops at the 1 MiB bound, whatever the type.
    const bomb = gzipSync(Buffer.alloc(64 << 20, 0x20));
    for (const type of ['application/json', 'application/proto']) {
      const res = await post(CONSUME, bomb, { 'content-type': type, 'content-encoding': 'gzip' });
      expect(res.status, type).toBe(429);
      expect(((await res.json()) as { code: string }).code).toBe('resource_exhausted');
    }

    const metrics = await (await fetch(`${s.baseUrl}/metrics`)).text();
    const m =
      /quota_rpc_requests_total\{method="quota.v1.QuotaService\/Consume",transport="connect",code="INVALID_ARGUMENT"\} (\d+)/.exec(
        metrics,
      );
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(3);
  });

  it('survives random bytes and mutated JSON on every RPC and transport, answering only refusals', async () => {
    const methods = [QuotaService, QuotaAdminService].flatMap((svc) =>
      svc.methods.map((m) => `${svc.typeName}/${m.name}`),
    );
    const allowed = new Set([3, 5, 7, 8, 16]); // INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAUTHENTICATED
    const codeOf = async (res: Response): Promise<number> => {
      const g = res.headers.get('grpc-status');
      if (g !== null) return Number(g);
      if (res.status === 200) return 0;
      const body = (await res.json().catch(() => ({}))) as { code?: string };
      const names: Record<string, number> = {
        invalid_argument: 3,
        not_found: 5,
        permission_denied: 7,
        resource_exhausted: 8,
        unauthenticated: 16,
      };
      return names[body.code ?? ''] ?? 2;
    };
    const valid = JSON.stringify({ subject: 'fz', metric: 'm', amount: '1', items: [] });
    const before = await events();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...methods),
        fc.constantFrom('json', 'proto', 'web'),
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc
            .tuple(fc.nat(valid.length), fc.uint8Array({ minLength: 1, maxLength: 3 }))
            .map(([at, b]) =>
              Buffer.concat([Buffer.from(valid.slice(0, at)), b, Buffer.from(valid.slice(at))]),
            ),
        ),
        async (method, kind, body) => {
          const type = {
            json: 'application/json',
            proto: 'application/proto',
            web: 'application/grpc-web+proto',
          }[kind];
          const res = await post(method, body, { 'content-type': type });
          const code = await codeOf(res);
          // A mutation can still be a valid read (GetQuota, List*): 0 is fine, a write is not.
          expect(code === 0 || allowed.has(code), `${method} ${kind} → ${code}`).toBe(true);
        },
      ),
      { numRuns: 300, seed: 20261130 },
    );
    expect(await events()).toBe(before);
    // And the process is still serving.
    const ok = await post(`${QuotaService.typeName}/GetQuota`, JSON.stringify({ subject: 'n' }));
    expect(ok.status).toBe(200);
  });
});
