import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import selfsigned from 'selfsigned';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// A real browser on another origin calls the service over Connect and gRPC-Web, as a web app
// would: CORS preflight, then the call, then reading the gRPC-Web status header. Needs
// Debian's chromium (apt-get install -y chromium); nothing is downloaded by the test.

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available)
  console.warn(`browser test skipped: ${CHROMIUM} not found (apt-get install -y chromium)`);

// The page's script: a Connect JSON call and a gRPC-Web binary call (GetQuota for "web"),
// written with fetch alone so the page needs no bundle.
const PAGE = (api: string) => `<!doctype html><meta charset="utf-8"><script type="module">
const api = ${JSON.stringify(api)};
const out = {};
try {
  const r = await fetch(api + '/quota.v1.QuotaService/GetQuota', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'connect-protocol-version': '1' },
    body: JSON.stringify({ subject: 'web' }),
  });
  out.connect = { status: r.status, body: await r.json() };
} catch (e) { out.connect = { error: String(e) }; }
try {
  // GetQuotaRequest { subject: "web" } = 0a 03 77 65 62, in a gRPC-Web frame
  const body = new Uint8Array([0, 0, 0, 0, 5, 0x0a, 3, 0x77, 0x65, 0x62]);
  const r = await fetch(api + '/quota.v1.QuotaService/GetQuota', {
    method: 'POST',
    headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', 'x-api-key': 'none' },
    body,
  });
  const bytes = new Uint8Array(await r.arrayBuffer());
  out.grpcWeb = {
    status: r.status,
    contentType: r.headers.get('content-type'),
    grpcStatus: r.headers.get('grpc-status'),
    bytes: bytes.length,
    trailer: new TextDecoder().decode(bytes.slice(bytes.length - 40)),
  };
} catch (e) { out.grpcWeb = { error: String(e) }; }
window.results = out;
</script>`;

interface PageResults {
  connect: {
    status?: number;
    body?: { quotas?: { used?: string; limit: string }[] };
    error?: string;
  };
  grpcWeb: { status?: number; contentType?: string; trailer?: string; error?: string };
  /** The HTTP version of each answer from the service, as the browser saw it ("h2"). */
  protocols?: string[];
}

describe.skipIf(!available)('a browser on another origin', () => {
  let s: TestServer;
  let pages: Server;
  let pageUrl: string;
  beforeAll(async () => {
    pages = createServer((req, res) => {
      const api = new URL(req.url ?? '/', 'http://x').searchParams.get('api') ?? '';
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE(api));
    });
    await new Promise<void>((ok) => pages.listen(0, '127.0.0.1', ok));
    // "localhost" and "127.0.0.1" are different origins to a browser.
    pageUrl = `http://localhost:${(pages.address() as AddressInfo).port}`;
    s = await startTestServer({ corsOrigins: [pageUrl] });
    await s.connect.admin.setQuota({
      subject: 'web',
      metric: 'api_calls',
      period: Period.DAY,
      limit: 5n,
    });
    await s.connect.quota.consume({ subject: 'web', metric: 'api_calls', amount: 2n });
  });
  afterAll(async () => {
    await s?.close();
    await new Promise((ok) => pages?.close(ok));
  });

  async function run(api: string, extraArgs: string[] = []): Promise<PageResults> {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        ...extraArgs,
      ],
      timeout: 30_000,
    });
    try {
      const page = await browser.newPage();
      // The protocol of each answer, from the DevTools protocol (scripts cannot see it
      // cross-origin).
      const protocols: string[] = [];
      const cdp = await page.context().newCDPSession(page);
      await cdp.send('Network.enable');
      cdp.on('Network.responseReceived', (e) => {
        if (e.response.url.startsWith(api) && e.type !== 'Preflight')
          protocols.push(e.response.protocol ?? '');
      });
      await page.goto(`${pageUrl}/?api=${encodeURIComponent(api)}`, { timeout: 15_000 });
      await page.waitForFunction('"results" in window', undefined, { timeout: 15_000 });
      const results = (await page.evaluate('window.results')) as PageResults;
      return { ...results, protocols };
    } finally {
      await browser.close();
    }
  }

  it('calls over Connect and gRPC-Web when its origin is allowed', async () => {
    const r = await run(s.baseUrl);
    expect(r.connect).toMatchObject({ status: 200, body: { quotas: [{ used: '2' }] } });
    expect(r.grpcWeb).toMatchObject({ status: 200, contentType: 'application/grpc-web+proto' });
    expect(r.grpcWeb.trailer).toContain('grpc-status: 0');
    expect(r.protocols).toEqual(['http/1.1', 'http/1.1']); // browsers never speak h2c
  }, 60_000);

  it('calls over HTTP/2 when the service has TLS (ALPN h2)', async () => {
    const pems = await selfsigned.generate([{ name: 'commonName', value: '127.0.0.1' }], {
      keySize: 2048,
      days: 1,
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    } as never);
    const tls = await startTestServer({
      tls: { cert: pems.cert, key: pems.private },
      corsOrigins: [pageUrl],
    });
    try {
      const api = `https://127.0.0.1:${tls.port}`;
      const transport = createConnectTransport({
        baseUrl: api,
        httpVersion: '2',
        nodeOptions: { ca: pems.cert },
      });
      await createClient(QuotaAdminService, transport).setQuota({
        subject: 'web',
        metric: 'api_calls',
        period: Period.DAY,
        limit: 5n,
      });
      // The certificate is made for this run; the browser is told not to check it.
      const r = await run(api, ['--ignore-certificate-errors']);
      expect(r.connect).toMatchObject({ status: 200, body: { quotas: [{ limit: '5' }] } });
      expect(r.grpcWeb).toMatchObject({ status: 200, contentType: 'application/grpc-web+proto' });
      expect(r.protocols).toEqual(['h2', 'h2']);
    } finally {
      await tls.close();
    }
  }, 60_000);

  it('is kept from the answers when its origin is not listed', async () => {
    const other = await startTestServer({ corsOrigins: ['https://elsewhere.example'] });
    try {
      const r = await run(other.baseUrl);
      expect(r.connect.error).toMatch(/TypeError|Failed to fetch/);
      expect(r.grpcWeb.error).toMatch(/TypeError|Failed to fetch/);
    } finally {
      await other.close();
    }
  }, 60_000);
});
