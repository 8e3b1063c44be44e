import {
  createFileRegistry,
  fromBinary,
  fromJson,
  toBinary,
  type DescService,
} from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';

// What grpcurl does with no .proto files: ask the server's reflection service for the
// services and the descriptors (with every dependency), then build requests from JSON.
const protoDir = join(
  dirname(createRequire(import.meta.url).resolve('@grpc/reflection')),
  '..',
  'proto',
);

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

function reflectionClient(version: 'v1' | 'v1alpha', target: string) {
  const def = loadSync(join(protoDir, `grpc/reflection/${version}/reflection.proto`), {
    keepCase: false,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: grpc.ServiceClientConstructor }> };
  };
  const Ctor = pkg.grpc.reflection[version]!.ServerReflection;
  return new Ctor(target, grpc.credentials.createInsecure());
}

function ask(client: grpc.Client, req: object): Promise<ReflectionResponse> {
  return new Promise((ok, fail) => {
    const stream = (
      client as unknown as {
        serverReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse>;
      }
    ).serverReflectionInfo();
    stream.once('data', (d: ReflectionResponse) => {
      ok(d);
      stream.end();
    });
    stream.once('error', fail);
    stream.write(req);
  });
}

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.close());

describe('server reflection (grpcurl list / describe / call)', () => {
  for (const version of ['v1', 'v1alpha'] as const) {
    it(`lists every service over ${version}`, async () => {
      const c = reflectionClient(version, `127.0.0.1:${s.port}`);
      const r = await ask(c, { listServices: '' });
      c.close();
      expect(r.listServicesResponse?.service.map((x) => x.name).sort()).toEqual(
        expect.arrayContaining([
          'grpc.health.v1.Health',
          'quota.v1.QuotaAdminService',
          'quota.v1.QuotaService',
        ]),
      );
    });
  }

  it('describes the services well enough to call them from JSON alone', async () => {
    const c = reflectionClient('v1', `127.0.0.1:${s.port}`);
    const files = new Map<string, Uint8Array>();
    const want = ['quota.v1.QuotaService', 'quota.v1.QuotaAdminService'];
    for (const symbol of want) {
      const r = await ask(c, { fileContainingSymbol: symbol });
      for (const b of r.fileDescriptorResponse?.fileDescriptorProto ?? []) {
        const fd = fromBinary(FileDescriptorProtoSchema, b);
        files.set(fd.name, b);
      }
    }
    c.close();
    expect([...files.keys()]).toEqual(
      expect.arrayContaining(['quota/v1/types.proto', 'google/protobuf/timestamp.proto']),
    );
    // Reflection answers a file before its imports; a registry wants imports first.
    const pending = [...files.values()].map((b) => fromBinary(FileDescriptorProtoSchema, b));
    const ordered: typeof pending = [];
    while (pending.length) {
      const i = pending.findIndex((f) =>
        f.dependency.every((d) => ordered.some((o) => o.name === d)),
      );
      expect(i).toBeGreaterThanOrEqual(0); // every import was served
      ordered.push(...pending.splice(i, 1));
    }
    const set = create(FileDescriptorSetSchema, { file: ordered });
    const registry = createFileRegistry(set);
    const admin = registry.getService('quota.v1.QuotaAdminService') as DescService;
    const quota = registry.getService('quota.v1.QuotaService') as DescService;
    const setQuota = admin.methods.find((m) => m.name === 'SetQuota')!;
    const consume = quota.methods.find((m) => m.name === 'Consume')!;
    const client = new grpc.Client(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
    const call = (
      path: string,
      input: typeof setQuota.input,
      output: typeof setQuota.output,
      json: object,
    ) =>
      new Promise<Record<string, unknown>>((ok, fail) =>
        client.makeUnaryRequest(
          path,
          (m: unknown) => Buffer.from(toBinary(input, m as never)),
          (b: Buffer) => fromBinary(output, b) as unknown as Record<string, unknown>,
          fromJson(input, json as never),
          new grpc.Metadata(),
          {},
          (err, res) => (err ? fail(err) : ok(res!)),
        ),
      );
    await call('/quota.v1.QuotaAdminService/SetQuota', setQuota.input, setQuota.output, {
      subject: 'acme',
      metric: 'api_calls',
      period: 'PERIOD_DAY',
      limit: '3',
    });
    const r = await call('/quota.v1.QuotaService/Consume', consume.input, consume.output, {
      subject: 'acme',
      metric: 'api_calls',
      amount: '1',
    });
    client.close();
    expect(r.allowed).toBe(true);
  });
});
