import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import selfsigned from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// The real server driven by a real client that knows nothing of this code base: `buf curl`,
// with the schema from server reflection or from the .proto files (--schema), over every
// protocol on each HTTP version the protocol allows, in cleartext and with TLS.

const root = resolve(import.meta.dirname, '..', '..');
const buf = join(root, 'node_modules', '.bin', 'buf');
const SCHEMA = ['--schema', join(root, 'proto'), '--schema', join(root, 'third_party', 'proto')];

interface Result {
  json: Record<string, unknown>;
  /** The HTTP version of the last response, from buf's verbose output ("1.1" or "2.0"). */
  http: string;
}

async function curl(args: string[], url: string, data?: object): Promise<Result> {
  const { stdout, stderr } = await promisify(execFile)(
    buf,
    ['curl', '-v', ...args, ...(data ? ['-d', JSON.stringify(data)] : []), url],
    { cwd: root, timeout: 30_000 },
  );
  const versions = [...stderr.matchAll(/< \(#\d+\) HTTP\/([\d.]+) /g)].map((m) => m[1]!);
  expect(versions.length, stderr).toBeGreaterThan(0);
  return { json: JSON.parse(stdout) as Record<string, unknown>, http: versions.at(-1)! };
}

async function lines(args: string[], url: string): Promise<string[]> {
  return (await listing(args, url)).lines;
}

/** Output lines, and the content-type of the reflection requests (from verbose output). */
async function listing(args: string[], url: string) {
  const { stdout, stderr } = await promisify(execFile)(buf, ['curl', '-v', ...args, url], {
    cwd: root,
    timeout: 30_000,
  });
  const types = [...stderr.matchAll(/> \(#\d+\) Content-Type: (\S+)/gi)].map((m) => m[1]!);
  return { lines: stdout.split('\n').filter(Boolean), types };
}

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
  await s.connect.admin.setQuota({
    subject: '*',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 1000n,
  });
});
afterAll(() => s.close());

const H2C = ['--http2-prior-knowledge'];
// [protocol, HTTP/1.1 allowed]: gRPC needs HTTP/2.
const PROTOCOLS = [
  ['connect', true],
  ['grpcweb', true],
  ['grpc', false],
] as const;

describe('buf curl against the one cleartext port', () => {
  it('lists every service and method through reflection, with the default protocol too', async () => {
    // Reflection is a bidi stream: buf asks it over Connect by default, over gRPC otherwise.
    for (const [proto, type] of [
      [[], 'application/connect+proto'],
      [['--protocol', 'grpc'], 'application/grpc'],
      [['--protocol', 'grpcweb'], 'application/grpc'],
    ] as const) {
      const listed = await listing([...proto, ...H2C, '--list-services'], s.baseUrl);
      expect(listed.types[0]).toMatch(new RegExp(`^${type.replace('+', '\\+')}`));
      const services = listed.lines;
      expect(services.sort()).toEqual([
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
        'grpc.reflection.v1alpha.ServerReflection',
        'quota.v1.QuotaAdminService',
        'quota.v1.QuotaService',
      ]);
      const methods = await lines([...proto, ...H2C, '--list-methods'], s.baseUrl);
      expect(methods).toEqual(
        expect.arrayContaining([
          'grpc.health.v1.Health/Check',
          'quota.v1.QuotaService/Consume',
          'quota.v1.QuotaAdminService/ListResetRuns',
        ]),
      );
    }
    // The older reflection protocol alone works as well.
    const alpha = await lines(
      ['--protocol', 'grpc', '--reflect-protocol', 'grpc-v1alpha', '--list-methods'],
      s.baseUrl,
    );
    expect(alpha).toContain('quota.v1.QuotaService/GetQuota');
  }, 120_000);

  for (const [protocol, http1] of PROTOCOLS) {
    const modes: [string, string[], string][] = [
      ['reflection, h2c', ['--protocol', protocol, ...H2C], '2.0'],
      ['--schema, h2c', ['--protocol', protocol, ...H2C, ...SCHEMA], '2.0'],
    ];
    if (http1) modes.push(['--schema, HTTP/1.1', ['--protocol', protocol, ...SCHEMA], '1.1']);
    for (const [label, args, http] of modes) {
      it(`${protocol} (${label}): health, a charge and a read`, async () => {
        const subject = `buf-${protocol}-${label.replace(/\W+/g, '-')}`;
        const health = await curl(args, `${s.baseUrl}/grpc.health.v1.Health/Check`, {});
        expect(health).toEqual({ json: { status: 'SERVING' }, http });
        const one = await curl(args, `${s.baseUrl}/quota.v1.QuotaService/Consume`, {
          subject,
          metric: 'api_calls',
          amount: '2',
        });
        expect(one.http).toBe(http);
        expect(one.json).toMatchObject({ allowed: true, recorded: true });
        const read = await curl(args, `${s.baseUrl}/quota.v1.QuotaService/GetQuota`, {
          subject,
        });
        expect(read.json).toMatchObject({ quotas: [{ subject, used: '2', limit: '1000' }] });
        // An error travels as a status with its message on every protocol.
        const bad = await curl(args, `${s.baseUrl}/quota.v1.QuotaService/Consume`, {
          subject,
          metric: 'api_calls',
          amount: '0',
        }).catch((e: { stderr?: string; stdout?: string }) => e);
        expect(JSON.stringify(bad)).toMatch(/invalid_argument[\s\S]*amount/);
      }, 60_000);
    }
  }
});

describe('buf curl with TLS on the port (ALPN)', () => {
  let tls: TestServer;
  let dir: string;
  let ca: string;
  beforeAll(async () => {
    const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
      keySize: 2048,
      days: 1,
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    } as never);
    dir = await mkdtemp(join(tmpdir(), 'quota-buf-tls-'));
    ca = join(dir, 'ca.pem');
    await writeFile(ca, pems.cert);
    tls = await startTestServer({ tls: { cert: pems.cert, key: pems.private } });
  });
  afterAll(async () => {
    await tls.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const protocol of ['connect', 'grpc', 'grpcweb'] as const) {
    it(`${protocol} over h2, schema from reflection`, async () => {
      const url = `https://127.0.0.1:${tls.port}`;
      const args = ['--protocol', protocol, '--cacert', ca];
      const health = await curl(args, `${url}/grpc.health.v1.Health/Check`, {});
      expect(health).toEqual({ json: { status: 'SERVING' }, http: '2.0' });
      const subject = `tls-${protocol}`;
      const set = await curl(args, `${url}/quota.v1.QuotaAdminService/SetQuota`, {
        subject,
        metric: 'api_calls',
        period: 'PERIOD_DAY',
        limit: '7',
      });
      expect(set.http).toBe('2.0');
      const read = await curl(args, `${url}/quota.v1.QuotaAdminService/ListQuotas`, { subject });
      expect(read.http).toBe('2.0');
      expect(read.json).toMatchObject({ quotas: [{ subject, limit: '7' }] });
    }, 60_000);
  }
});
