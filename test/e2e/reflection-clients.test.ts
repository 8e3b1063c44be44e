import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { create, createFileRegistry, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type FileDescriptorProto,
} from '@bufbuild/protobuf/wkt';
import { createClient, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServerReflection } from '../../src/gen/grpc/reflection/v1/reflection_pb.js';
import { ServerReflection as ServerReflectionAlpha } from '../../src/gen/grpc/reflection/v1alpha/reflection_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// What strict reflection clients check: every file with its imports, fully qualified type
// names, map entries as protoc makes them. Asked over gRPC (grpc-js) and over Connect
// (connect-node, HTTP/2), v1 and v1alpha.

const SERVICES = [
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
  'quota.v1.QuotaAdminService',
  'quota.v1.QuotaService',
];

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.close());

type Ask = (req: object) => Promise<Record<string, unknown>>;

function asker(transport: Transport, version: 'v1' | 'v1alpha'): Ask {
  const svc = version === 'v1' ? ServerReflection : ServerReflectionAlpha;
  const client = createClient(svc as typeof ServerReflection, transport);
  return async (messageRequest) => {
    async function* one() {
      yield { host: '', messageRequest } as never;
    }
    for await (const res of client.serverReflectionInfo(one(), { timeoutMs: 10_000 }))
      return res.messageResponse as unknown as Record<string, unknown>;
    throw new Error('no answer');
  };
}

/** Every file the services need, in import order (what a descriptor pool wants). */
async function allFiles(ask: Ask): Promise<FileDescriptorProto[]> {
  const files = new Map<string, FileDescriptorProto>();
  for (const symbol of SERVICES) {
    const r = (await ask({ case: 'fileContainingSymbol', value: symbol })) as {
      case: string;
      value: { fileDescriptorProto: Uint8Array[] };
    };
    expect(r.case).toBe('fileDescriptorResponse');
    for (const b of r.value.fileDescriptorProto) {
      const fd = fromBinary(FileDescriptorProtoSchema, b);
      files.set(fd.name, fd);
    }
  }
  const pending = [...files.values()];
  const ordered: FileDescriptorProto[] = [];
  while (pending.length) {
    const i = pending.findIndex((f) =>
      f.dependency.every((d) => ordered.some((o) => o.name === d)),
    );
    expect(i, 'every import is served').toBeGreaterThanOrEqual(0);
    ordered.push(...pending.splice(i, 1));
  }
  return ordered;
}

const transports = () => ({
  grpc: createGrpcTransport({ baseUrl: s.baseUrl }),
  'connect (h2c)': createConnectTransport({ baseUrl: s.baseUrl, httpVersion: '2' }),
});

describe('reflection descriptors', () => {
  for (const version of ['v1', 'v1alpha'] as const) {
    for (const name of ['grpc', 'connect (h2c)'] as const) {
      it(`${version} over ${name}: every service, complete and fully qualified`, async () => {
        const ask = asker(transports()[name], version);
        const list = (await ask({ case: 'listServices', value: '' })) as {
          value: { service: { name: string }[] };
        };
        expect(list.value.service.map((x) => x.name).sort()).toEqual(SERVICES);
        const files = await allFiles(ask);
        // protobuf-es builds a registry from them: every reference resolves.
        const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: files }));
        for (const svc of SERVICES) expect(registry.getService(svc), svc).toBeDefined();
        const health = files.find((f) => f.name === 'grpc/health/v1/health.proto')!;
        const list2 = health.messageType.find((m) => m.name === 'HealthListResponse')!;
        expect(list2.nestedType.map((n) => [n.name, n.options?.mapEntry])).toEqual([
          ['StatusesEntry', true],
        ]);
        for (const f of files)
          for (const m of f.messageType)
            for (const field of m.field)
              if (field.typeName) expect(field.typeName, `${m.name}.${field.name}`).toMatch(/^\./);
        const method = await ask({
          case: 'fileContainingSymbol',
          value: 'quota.v1.QuotaService.Consume',
        });
        expect(method.case).toBe('fileDescriptorResponse');
        const missing = (await ask({ case: 'fileContainingSymbol', value: 'no.such.Thing' })) as {
          case: string;
          value: { errorCode: number };
        };
        expect([missing.case, missing.value.errorCode]).toEqual(['errorResponse', 5]);
        const byName = await ask({ case: 'fileByFilename', value: 'grpc/health/v1/health.proto' });
        expect(byName.case).toBe('fileDescriptorResponse');
      });
    }
  }

  const python = (() => {
    try {
      execFileSync('python3', ['-c', 'import google.protobuf.descriptor_pool'], {
        stdio: 'ignore',
      });
      return true;
    } catch {
      return false;
    }
  })();
  it.skipIf(!python)(
    "are accepted by Python's descriptor pool (skipped without python3 and its protobuf package)",
    async () => {
      const files = await allFiles(asker(transports()['connect (h2c)'], 'v1'));
      const dir = await mkdtemp(join(tmpdir(), 'quota-pyreflect-'));
      try {
        const set = join(dir, 'set.bin');
        await writeFile(
          set,
          toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: files })),
        );
        const script = [
          'import sys',
          'from google.protobuf import descriptor_pb2, descriptor_pool',
          'fds = descriptor_pb2.FileDescriptorSet.FromString(open(sys.argv[1], "rb").read())',
          'pool = descriptor_pool.DescriptorPool()',
          'for f in fds.file: pool.Add(f)',
          'for s in sys.argv[2:]: print(pool.FindServiceByName(s).full_name)',
        ].join('\n');
        const { stdout } = await promisify(execFile)('python3', ['-c', script, set, ...SERVICES], {
          timeout: 30_000,
        });
        expect(stdout.trim().split('\n')).toEqual(SERVICES);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
