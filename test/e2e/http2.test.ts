import type { EventEmitter } from 'node:events';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import selfsigned from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  GetQuotaRequestSchema,
  GetQuotaResponseSchema,
  QuotaService,
} from '../../src/gen/quota/v1/quota_service_pb.js';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { isPlainGrpc, dispatchHttp2Streams } from '../../src/transport/h2-dispatch.js';
import { startTestServer, type TestServer } from '../support/server.js';

// HTTP/2 carries every protocol, on one connection: plain gRPC still goes to grpc-js, the
// rest to connect-node, stream by stream.

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function request(
  session: ClientHttp2Session,
  headers: Record<string, string>,
  body?: Uint8Array | string,
): Promise<Answer> {
  return new Promise((ok, fail) => {
    const req = session.request(headers);
    const chunks: Buffer[] = [];
    let head: Answer['headers'] = {};
    req.on('response', (h) => (head = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () =>
      ok({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) }),
    );
    req.on('error', fail);
    req.setTimeout(10_000, () => req.close());
    req.end(body);
  });
}

const frame = (msg: Uint8Array): Buffer => {
  const b = Buffer.alloc(5 + msg.length);
  b.writeUInt32BE(msg.length, 1);
  Buffer.from(msg).copy(b, 5);
  return b;
};

/** Every protocol on one HTTP/2 session; returns what each answered. */
async function everyProtocol(session: ClientHttp2Session, subject: string) {
  const getQuota = toBinary(GetQuotaRequestSchema, create(GetQuotaRequestSchema, { subject }));
  const post = (path: string, contentType: string, extra: Record<string, string> = {}) => ({
    ':method': 'POST',
    ':path': path,
    'content-type': contentType,
    ...extra,
  });
  const path = '/quota.v1.QuotaService/GetQuota';
  const [grpcRes, connectJson, connectProto, web, webText, healthz, readyz, metrics, get] =
    await Promise.all([
      request(session, post(path, 'application/grpc', { te: 'trailers' }), frame(getQuota)),
      request(session, post(path, 'application/json'), JSON.stringify({ subject })),
      request(session, post(path, 'application/proto'), getQuota),
      request(session, post(path, 'application/grpc-web+proto'), frame(getQuota)),
      request(session, post(path, 'application/grpc-web-text'), frame(getQuota).toString('base64')),
      request(session, { ':path': '/healthz' }),
      request(session, { ':path': '/readyz' }),
      request(session, { ':path': '/metrics' }),
      request(session, {
        ':path': `${path}?connect=v1&encoding=json&message=${encodeURIComponent(JSON.stringify({ subject }))}`,
      }),
    ]);
  return { grpcRes, connectJson, connectProto, web, webText, healthz, readyz, metrics, get };
}

function expectAllServed(r: Awaited<ReturnType<typeof everyProtocol>>, subject: string) {
  const used = (bytes: Uint8Array) => fromBinary(GetQuotaResponseSchema, bytes).quotas[0]?.used;
  // gRPC: answered by grpc-js (its content-type), message in a frame, status in trailers.
  expect(r.grpcRes.headers['content-type']).toBe('application/grpc+proto');
  expect(used(r.grpcRes.body.subarray(5))).toBe(1n);
  expect(r.connectJson.status).toBe(200);
  expect(JSON.parse(r.connectJson.body.toString())).toMatchObject({
    quotas: [{ subject, used: '1' }],
  });
  expect(r.connectProto.headers['content-type']).toBe('application/proto');
  expect(used(r.connectProto.body)).toBe(1n);
  // gRPC-Web: its own content-type, which is what gRPC-Web clients check.
  expect(r.web.headers['content-type']).toBe('application/grpc-web+proto');
  expect(used(r.web.body.subarray(5, 5 + r.web.body.readUInt32BE(1)))).toBe(1n);
  expect(r.webText.headers['content-type']).toBe('application/grpc-web-text+proto');
  const text = Buffer.from(r.webText.body.toString(), 'base64');
  expect(used(text.subarray(5, 5 + text.readUInt32BE(1)))).toBe(1n);
  expect(text.toString('latin1')).toContain('grpc-status: 0');
  expect([r.healthz.status, r.healthz.body.toString()]).toEqual([200, 'ok\n']);
  expect([r.readyz.status, r.readyz.body.toString()]).toEqual([200, 'ready\n']);
  expect(r.metrics.body.toString()).toContain('quota_rpc_requests_total');
  expect(JSON.parse(r.get.body.toString())).toMatchObject({ quotas: [{ subject, used: '1' }] });
}

async function seed(baseUrl: string, subject: string, ca?: string) {
  const transport = createConnectTransport({ baseUrl, httpVersion: '2', nodeOptions: { ca } });
  await createClient(QuotaAdminService, transport).setQuota({
    subject,
    metric: 'api_calls',
    period: Period.DAY,
    limit: 9n,
  });
  await createClient(QuotaService, transport).consume({ subject, metric: 'api_calls', amount: 1n });
}

describe('every protocol over h2c, on one connection', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
    await seed(s.baseUrl, 'h2c');
  });
  afterAll(() => s.close());

  it('serves gRPC, Connect, gRPC-Web (binary and text), GET and the endpoints together', async () => {
    const session = h2connect(s.baseUrl);
    try {
      expectAllServed(await everyProtocol(session, 'h2c'), 'h2c');
      // The gRPC call went to grpc-js, everything else to connect-node.
      const metrics = (await request(session, { ':path': '/metrics' })).body.toString();
      const calls = (transport: string) =>
        Number(
          new RegExp(
            `quota_rpc_requests_total\\{method="quota.v1.QuotaService/GetQuota",transport="${transport}",code="OK"\\} (\\d+)`,
          ).exec(metrics)?.[1],
        );
      expect(calls('grpc')).toBe(1);
      expect(calls('connect')).toBe(5);
    } finally {
      session.close();
    }
  });

  it('serves connect-node clients with httpVersion "2"', async () => {
    for (const transport of [
      createConnectTransport({ baseUrl: s.baseUrl, httpVersion: '2' }),
      createGrpcWebTransport({ baseUrl: s.baseUrl, httpVersion: '2' }),
    ]) {
      const r = await createClient(QuotaService, transport).getQuota({ subject: 'h2c' });
      expect(r.quotas[0]!.used).toBe(1n);
    }
  });

  it('tells plain gRPC from gRPC-Web by content-type', () => {
    for (const t of ['application/grpc', 'application/grpc+proto', 'application/grpc;x=1'])
      expect(isPlainGrpc(t), t).toBe(true);
    for (const t of [
      'application/grpc-web',
      'application/grpc-web+proto',
      'application/grpcx',
      'application/json',
      undefined,
    ])
      expect(isPlainGrpc(t), String(t)).toBe(false);
  });

  it('fails loudly when grpc-js no longer has the stream listener it expects', () => {
    const bare = new grpc.Server();
    expect(() => dispatchHttp2Streams(bare, () => {})).toThrow(/grpc-js internals changed/);
    const injector = bare.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const h2 = [
      ...(bare as unknown as { http2Servers: Map<EventEmitter, unknown> }).http2Servers.keys(),
    ][0]!;
    const before = h2.listeners('stream');
    h2.on('stream', () => {}); // a second listener: which one is grpc-js's is no longer known
    expect(() => dispatchHttp2Streams(bare, () => {})).toThrow(/found 2/);
    h2.removeAllListeners('stream');
    h2.on('stream', before[0] as () => void);
    dispatchHttp2Streams(bare, () => {});
    expect(h2.listeners('stream')).toHaveLength(1);
    expect(h2.listeners('stream')[0]).not.toBe(before[0]);
    injector.destroy();
  });
});

describe('every protocol over TLS with ALPN h2, on one connection', () => {
  let s: TestServer;
  let ca: string;
  beforeAll(async () => {
    const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
      keySize: 2048,
      days: 1,
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }] }],
    } as never);
    ca = pems.cert;
    s = await startTestServer({ tls: { cert: pems.cert, key: pems.private } });
    await seed(`https://localhost:${s.port}`, 'tls', ca);
  });
  afterAll(() => s.close());

  it('serves gRPC, Connect, gRPC-Web, GET and the endpoints together', async () => {
    const session = h2connect(`https://localhost:${s.port}`, { ca });
    try {
      expectAllServed(await everyProtocol(session, 'tls'), 'tls');
      expect(session.alpnProtocol).toBe('h2');
    } finally {
      session.close();
    }
  });

  it('serves connect-node clients with httpVersion "2"', async () => {
    const baseUrl = `https://localhost:${s.port}`;
    for (const transport of [
      createConnectTransport({ baseUrl, httpVersion: '2', nodeOptions: { ca } }),
      createGrpcWebTransport({ baseUrl, httpVersion: '2', nodeOptions: { ca } }),
    ]) {
      const r = await createClient(QuotaService, transport).getQuota({ subject: 'tls' });
      expect(r.quotas[0]!.used).toBe(1n);
    }
  });
});
