import { mkdtemp, rm } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore, readKeyFile } from '../../src/auth/api-keys.js';
import { createKey } from '../../src/auth/key-file.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// A key is checked from the headers before a byte of the body is read or decoded, so a caller
// without one cannot make the service spend memory or CPU on what it sends; and without keys,
// only local requests are served (a page cannot come in through a rebound name).

/**
 * Sends a request's headers and the first bytes of a 1 MiB body over a raw socket, and
 * resolves with the status line if the server answers before the rest of the body is sent.
 */
function answerBeforeBody(port: number, head: string): Promise<string> {
  return new Promise((ok, fail) => {
    const c = tcpConnect(port, '127.0.0.1', () => {
      c.write(head + `content-length: ${1 << 20}\r\n\r\n` + '{"items":[');
    });
    const timer = setTimeout(
      () => (c.destroy(), fail(new Error('no answer before the body'))),
      3_000,
    );
    c.once('data', (d: Buffer) => {
      clearTimeout(timer);
      c.destroy();
      ok(d.toString('latin1').split('\r\n')[0]!);
    });
    c.on('error', () => {});
  });
}

describe('with API keys', () => {
  let s: TestServer;
  let dir: string;
  let key: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quota-preauth-'));
    const file = join(dir, 'keys.json');
    key = await createKey(file, 'svc', 'consumer');
    const store = new KeyStore(readKeyFile(file));
    s = await startTestServer({ authenticate: store.authenticate.bind(store) });
  });
  afterAll(async () => {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a Connect call without a key before reading its body', async () => {
    const line = await answerBeforeBody(
      s.port,
      `POST /${QuotaService.typeName}/ConsumeBatch HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n`,
    );
    expect(line).toBe('HTTP/1.1 401 Unauthorized');
  });

  it('refuses a gRPC-Web call without a key the same way, in gRPC-Web terms', async () => {
    const res = await fetch(`${s.baseUrl}/${QuotaService.typeName}/Consume`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto' },
      body: new Uint8Array(1 << 16),
    });
    expect(res.headers.get('grpc-status')).toBe('16');
  });

  it('refuses a gRPC call without a key before grpc-js reads its message', async () => {
    await expect(
      s.grpc.call(QuotaService, QuotaService.method.consume, {
        subject: 'x',
        metric: 'api_calls',
        amount: 1n,
      }),
    ).rejects.toMatchObject({ code: 16 });
    // And with one, the same connection serves.
    const ok = s.grpc.call(
      QuotaService,
      QuotaService.method.getQuota,
      { subject: 'nobody' },
      { 'x-api-key': key },
    );
    await expect(ok).resolves.toBeDefined();
  });

  it('counts the refused calls in the RPC metrics', async () => {
    const text = await (await fetch(`${s.baseUrl}/metrics`)).text();
    expect(text).toMatch(
      /quota_rpc_requests_total\{method="quota.v1.QuotaService\/ConsumeBatch",transport="connect",code="UNAUTHENTICATED"\} [1-9]/,
    );
    expect(text).toMatch(
      /quota_rpc_requests_total\{method="quota.v1.QuotaService\/Consume",transport="grpc",code="UNAUTHENTICATED"\} [1-9]/,
    );
  });
});

describe('without API keys', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
    await s.connect.admin.setQuota({ subject: 'a', metric: 'm', period: Period.DAY, limit: 5n });
  });
  afterAll(() => s.close());

  async function quotas(): Promise<number> {
    const r = await s.database.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM quotas');
    return r.rows[0]!.n;
  }

  it('refuses a request whose Host is not a loopback name (DNS rebinding), and writes nothing', async () => {
    const before = await quotas();
    const line = await new Promise<string>((ok) => {
      const body = JSON.stringify({ subject: 'b', metric: 'm', period: 'PERIOD_DAY', limit: '9' });
      const c = tcpConnect(s.port, '127.0.0.1', () =>
        c.write(
          `POST /quota.v1.QuotaAdminService/SetQuota HTTP/1.1\r\nhost: rebind.attacker.example:${s.port}\r\n` +
            `content-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        ),
      );
      c.once('data', (d: Buffer) => (c.destroy(), ok(d.toString('latin1').split('\r\n')[0]!)));
    });
    expect(line).toBe('HTTP/1.1 403 Forbidden');
    expect(await quotas()).toBe(before);
    // The same call from a local name is served.
    const local = await fetch(`http://localhost:${s.port}/quota.v1.QuotaService/GetQuota`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ subject: 'a' }),
    });
    expect(local.status).toBe(200);
  });

  it('refuses a page of another origin unless CORS lists it', async () => {
    const res = await fetch(`${s.baseUrl}/quota.v1.QuotaService/GetQuota`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://evil.example' },
      body: JSON.stringify({ subject: 'a' }),
    });
    expect(res.status).toBe(403);
  });
});

describe('under every attack at once', () => {
  let s: TestServer;
  let dir: string;
  let key: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quota-siege-'));
    const file = join(dir, 'keys.json');
    key = await createKey(file, 'svc', 'admin');
    const store = new KeyStore(readKeyFile(file));
    s = await startTestServer({
      authenticate: store.authenticate.bind(store),
      limits: { handshakeTimeoutMs: 500, idleTimeoutMs: 1_000, http1RequestTimeoutMs: 1_000 },
    });
  });
  afterAll(async () => {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps answering a caller with a key, in bounded memory, while others stall and flood', async () => {
    const heapBefore = process.memoryUsage().heapUsed;
    const attackers: ReturnType<typeof tcpConnect>[] = [];
    const attack = (payload: string | Buffer) => {
      const c = tcpConnect(s.port, '127.0.0.1', () => c.write(payload));
      c.on('error', () => {});
      attackers.push(c);
    };
    const half = Buffer.alloc(512 * 1024, 0x61);
    for (let i = 0; i < 100; i++) {
      attack(
        Buffer.concat([
          Buffer.from(
            `POST /${QuotaService.typeName}/ConsumeBatch HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
              `content-type: application/json\r\ncontent-length: ${1 << 20}\r\n\r\n`,
          ),
          half,
        ]),
      );
      attack('PRI * HTTP/2.0\r\n'); // a preface that never ends
      attack(''); // a connection that says nothing
    }
    const answers: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = Date.now();
      const r = await s.grpc.call(
        QuotaService,
        QuotaService.method.getQuota,
        { subject: 'legit' },
        { 'x-api-key': key },
      );
      expect(r).toBeDefined();
      answers.push(Date.now() - t0);
    }
    expect(Math.max(...answers)).toBeLessThan(1_000);
    // The stalled bodies were refused unread: far less than 100 × 512 KiB was kept.
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(32 * 1024 * 1024);
    for (const c of attackers) c.destroy();
  });
});
