import { mkdtemp, rm } from 'node:fs/promises';
import { connect as http2Connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import selfsigned from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyStore, readKeyFile } from '../../src/auth/api-keys.js';
import { createKey } from '../../src/auth/key-file.js';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { CONSOLE_CSP } from '../../src/transport/console.js';
import { startTestServer, type TestServer } from '../support/server.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(port: number, path: string, host = `127.0.0.1:${port}`): Promise<Answer> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

function getH2(port: number, path: string, ca?: string): Promise<Answer> {
  return new Promise((ok, fail) => {
    const session = ca
      ? http2Connect(`https://127.0.0.1:${port}`, { ca })
      : http2Connect(`http://127.0.0.1:${port}`);
    session.on('error', fail);
    const stream = session.request({ ':path': path, ':method': 'GET' });
    let body = '';
    let headers: Answer['headers'] = {};
    stream.setEncoding('utf8');
    stream.on('response', (h) => (headers = h));
    stream.on('data', (c: string) => (body += c));
    stream.on('end', () => {
      session.close();
      ok({ status: Number(headers[':status']), headers, body });
    });
    stream.on('error', fail);
  });
}

describe('the console without API keys', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s?.close());

  it('serves the page and its assets with a strict CSP, over HTTP/1.1 and h2', async () => {
    const page = await get(s.port, '/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toContain("default-src 'self'");
    expect(CONSOLE_CSP).not.toMatch(/unsafe|https?:/);
    expect(page.body).toContain('<script type="module" src="/console/app.js">');
    const js = await get(s.port, '/console/app.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect((await get(s.port, '/console/app.css')).headers['content-type']).toMatch(/^text\/css/);
    expect((await get(s.port, '/console/../package.json')).status).toBe(404);
    expect((await get(s.port, '/console/nothing.js')).status).toBe(404);
    const h2 = await getH2(s.port, '/');
    expect(h2.status).toBe(200);
    expect(h2.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect(h2.body).toBe(page.body);
    // The other HTTP endpoints are still theirs.
    expect((await get(s.port, '/healthz')).body).toBe('ok\n');
  });

  it('is served only to loopback names, like every call without keys', async () => {
    const r = await get(s.port, '/', 'quota.example.com');
    expect(r.status).toBe(403);
    expect(r.body).toContain('not a loopback name');
  });

  it('WhoAmI answers anonymous with role admin', async () => {
    expect(await s.connect.admin.whoAmI({})).toMatchObject({
      actor: 'anonymous',
      role: 'admin',
      authenticated: false,
      subjects: [],
      subjectPrefix: '',
    });
  });
});

describe('the console over TLS', () => {
  it('is served over h2 (ALPN) with its CSP', async () => {
    const pems = await selfsigned.generate([{ name: 'commonName', value: '127.0.0.1' }], {
      keySize: 2048,
      days: 1,
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    } as never);
    const s = await startTestServer({ tls: { cert: pems.cert, key: pems.private } });
    try {
      const page = await getH2(s.port, '/', pems.cert);
      expect(page.status).toBe(200);
      expect(page.headers['content-security-policy']).toBe(CONSOLE_CSP);
      expect(page.body).toContain('/console/app.js');
      expect((await getH2(s.port, '/console/app.js', pems.cert)).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});

describe('the console turned off (QUOTA_CONSOLE=false)', () => {
  it('answers 404 at / and under /console/', async () => {
    const s = await startTestServer({ console: false });
    try {
      expect((await get(s.port, '/')).status).toBe(404);
      expect((await get(s.port, '/console/app.js')).status).toBe(404);
      expect((await get(s.port, '/healthz')).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});

describe('the console with API keys', () => {
  let s: TestServer;
  let dir: string;
  const keys: Record<string, string> = {};
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'quota-console-keys-'));
    const file = join(dir, 'keys.json');
    keys.reader = await createKey(file, 'ops-reader', 'reader');
    keys.consumer = await createKey(file, 'billing', 'consumer', { subjectPrefix: 'acme/' });
    const store = new KeyStore(readKeyFile(file));
    s = await startTestServer({ authenticate: store.authenticate.bind(store) });
  });
  afterAll(async () => {
    await s?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves its files without a key (the page asks for one)', async () => {
    expect((await get(s.port, '/')).status).toBe(200);
    expect((await get(s.port, '/console/app.js')).status).toBe(200);
  });

  it('WhoAmI names the key, its role and its scope', async () => {
    const as = (key: string) =>
      createClient(
        QuotaAdminService,
        createConnectTransport({
          baseUrl: s.baseUrl,
          httpVersion: '1.1',
          interceptors: [
            (next) => (req) => {
              req.header.set('authorization', `Bearer ${key}`);
              return next(req);
            },
          ],
        }),
      );
    expect(await as(keys.reader!).whoAmI({})).toMatchObject({
      actor: 'ops-reader',
      role: 'reader',
      authenticated: true,
      subjectPrefix: '',
    });
    expect(await as(keys.consumer!).whoAmI({})).toMatchObject({
      actor: 'billing',
      role: 'consumer',
      subjectPrefix: 'acme/',
    });
    await expect(s.connect.admin.whoAmI({})).rejects.toThrow(/API key is required/);
  });
});
