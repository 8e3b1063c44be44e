import { request } from 'node:https';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import { fromBinary, toBinary, create } from '@bufbuild/protobuf';
import selfsigned from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// With TLS the front socket does not sniff: ALPN says h2 (gRPC) or http/1.1 (the rest).
// The certificate is made for this run only.

let s: TestServer;
let ca: string;

beforeAll(async () => {
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    days: 1,
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  } as never);
  ca = pems.cert;
  s = await startTestServer({ tls: { cert: pems.cert, key: pems.private } });
});
afterAll(() => s.close());

describe('TLS on the one port', () => {
  it('serves gRPC over h2', async () => {
    const client = new grpc.Client(
      `localhost:${s.port}`,
      grpc.credentials.createSsl(Buffer.from(ca)),
    );
    const call = <I, O>(
      path: string,
      inSchema: Parameters<typeof toBinary>[0],
      outSchema: Parameters<typeof fromBinary>[0],
      req: I,
    ) =>
      new Promise<O>((ok, fail) =>
        client.makeUnaryRequest(
          path,
          (m: I) => Buffer.from(toBinary(inSchema, m as never)),
          (b: Buffer) => fromBinary(outSchema, b) as O,
          req,
          new grpc.Metadata(),
          {},
          (err, res) => (err ? fail(err) : ok(res!)),
        ),
      );
    const m = QuotaAdminService.method.setQuota;
    await call(
      `/quota.v1.QuotaAdminService/SetQuota`,
      m.input,
      m.output,
      create(m.input, { subject: 'tls', metric: 'api_calls', period: Period.DAY, limit: 2n }),
    );
    const c = QuotaService.method.consume;
    const r = await call<unknown, { allowed: boolean }>(
      `/quota.v1.QuotaService/Consume`,
      c.input,
      c.output,
      create(c.input, { subject: 'tls', metric: 'api_calls', amount: 1n }),
    );
    expect(r.allowed).toBe(true);
    client.close();
  });

  it('serves Connect and the HTTP endpoints over http/1.1', async () => {
    const transport = createConnectTransport({
      baseUrl: `https://localhost:${s.port}`,
      httpVersion: '1.1',
      nodeOptions: { ca },
    });
    const r = await createClient(QuotaService, transport).getQuota({
      subject: 'tls',
      metric: 'api_calls',
    });
    expect(r.quotas[0]!.used).toBe(1n);
    const status = await new Promise<number>((ok, fail) =>
      request({ host: 'localhost', port: s.port, path: '/healthz', ca }, (res) => {
        res.resume();
        ok(res.statusCode ?? 0);
      })
        .on('error', fail)
        .end(),
    );
    expect(status).toBe(200);
  });

  it('refuses cleartext on the TLS port without harm', async () => {
    const res = await fetch(`http://127.0.0.1:${s.port}/healthz`).catch((e: unknown) => e);
    expect(res).toBeInstanceOf(Error);
    const transport = createConnectTransport({
      baseUrl: `https://localhost:${s.port}`,
      httpVersion: '1.1',
      nodeOptions: { ca },
    });
    expect(
      (await createClient(QuotaService, transport).getQuota({ subject: 'tls' })).quotas,
    ).toHaveLength(1);
  });
});
