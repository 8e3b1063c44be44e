import { connect as h2connect } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { parseCorsOrigins } from '../../src/transport/cors.js';
import { startTestServer, type TestServer } from '../support/server.js';

// Browsers on another origin need preflight answers and Access-Control-* headers; an origin
// that is not listed gets no allow header, so its browser keeps the answer from the page.

const ALLOWED = 'https://app.example.com';
const REFUSED = 'https://evil.example.net';
const PATH = '/quota.v1.QuotaService/GetQuota';

const preflight = (
  s: TestServer,
  origin: string,
  headers = 'content-type,connect-protocol-version',
) =>
  fetch(`${s.baseUrl}${PATH}`, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': headers,
    },
  });

const call = (s: TestServer, origin: string) =>
  fetch(`${s.baseUrl}${PATH}`, {
    method: 'POST',
    headers: { origin, 'content-type': 'application/json', 'connect-protocol-version': '1' },
    body: JSON.stringify({ subject: 'acme' }),
  });

describe('CORS with QUOTA_CORS_ORIGINS set', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ corsOrigins: [ALLOWED, 'http://localhost:8080'] });
  });
  afterAll(() => s.close());

  it('answers the preflight of a listed origin with every header Connect and gRPC-Web need', async () => {
    const res = await preflight(s, ALLOWED);
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(res.headers.get('access-control-allow-methods')).toMatch(/POST.*GET|GET.*POST/);
    const allowed = res.headers.get('access-control-allow-headers')!.split(/,\s*/);
    for (const h of [
      'content-type',
      'connect-protocol-version',
      'connect-timeout-ms',
      'x-api-key',
      'authorization',
      'x-grpc-web',
      'x-user-agent',
      'grpc-timeout',
      'traceparent',
    ])
      expect(allowed).toContain(h);
    expect(res.headers.get('vary')).toMatch(/origin/i);
  });

  it('gives a refused origin no allow header, on the preflight and on the call', async () => {
    const pre = await preflight(s, REFUSED);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    expect(pre.headers.get('access-control-allow-headers')).toBeNull();
    const res = await call(s, REFUSED);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-expose-headers')).toBeNull();
  });

  it('marks the actual answer to a listed origin and exposes the gRPC status headers', async () => {
    const res = await call(s, ALLOWED);
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    const exposed = res.headers.get('access-control-expose-headers')!.split(/,\s*/);
    expect(exposed).toEqual(
      expect.arrayContaining(['grpc-status', 'grpc-message', 'grpc-status-details-bin']),
    );
  });

  it('does the same over HTTP/2', async () => {
    const session = h2connect(s.baseUrl);
    try {
      const head = (origin: string) =>
        new Promise<Record<string, unknown>>((ok, fail) => {
          const req = session.request({
            ':method': 'OPTIONS',
            ':path': PATH,
            origin,
            'access-control-request-method': 'POST',
          });
          req.on('response', (h) => ok(h));
          req.on('error', fail);
          req.resume();
          req.end();
        });
      expect(await head(ALLOWED)).toMatchObject({
        ':status': 204,
        'access-control-allow-origin': ALLOWED,
      });
      expect((await head(REFUSED))['access-control-allow-origin']).toBeUndefined();
    } finally {
      session.close();
    }
  });
});

describe('CORS off (the default)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s.close());

  // Without keys and without CORS, a page of another origin is refused outright: it could
  // only be a browser carrying some site's request to a local service (issue: DNS rebinding).
  it('sends no Access-Control header to anyone, and refuses cross-origin calls', async () => {
    const pre = await preflight(s, ALLOWED);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    const res = await call(s, ALLOWED);
    expect(res.status).toBe(403);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(((await res.json()) as { message: string }).message).toMatch(/QUOTA_CORS_ORIGINS/);
  });
});

describe('QUOTA_CORS_ORIGINS', () => {
  it('takes exact origins or *, and names what is wrong', () => {
    expect(parseCorsOrigins(undefined)).toEqual({ origins: [] });
    expect(parseCorsOrigins(' https://a.example , http://localhost:3000 ')).toEqual({
      origins: ['https://a.example', 'http://localhost:3000'],
    });
    expect(parseCorsOrigins('*')).toEqual({ origins: ['*'] });
    for (const bad of ['https://a.example/', 'a.example', 'https://a.example/app', 'ftp://x'])
      expect(parseCorsOrigins(bad).error).toMatch(/^QUOTA_CORS_ORIGINS: ".*" is not an origin/);
    const { config, errors } = loadConfig({ QUOTA_CORS_ORIGINS: 'https://a.example' });
    expect(errors).toEqual([]);
    expect(config.corsOrigins).toEqual(['https://a.example']);
    expect(loadConfig({ QUOTA_CORS_ORIGINS: 'nope' }).errors).toEqual([
      expect.stringMatching(/^QUOTA_CORS_ORIGINS: "nope"/),
    ]);
  });
});

describe('CORS with *', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ corsOrigins: ['*'] });
  });
  afterAll(() => s.close());

  it('allows any origin', async () => {
    const res = await call(s, REFUSED);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect((await preflight(s, REFUSED)).headers.get('access-control-allow-origin')).toBe('*');
  });
});
