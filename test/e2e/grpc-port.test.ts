import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from '../../src/gen/grpc/health/v1/health_pb.js';
import { ServerReflection } from '../../src/gen/grpc/reflection/v1/reflection_pb.js';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { createQuotaServer, type QuotaServer } from '../../src/server.js';
import { createTestDatabase, TestClock, type TestDatabase } from '../support/db.js';

// QUOTA_GRPC_ADDR: the extra port grpc-js binds itself, without the front door. It serves
// what plain gRPC clients use on the main port: the services, health and reflection.

let database: TestDatabase;
let server: QuotaServer;
let baseUrl: string;
beforeAll(async () => {
  database = await createTestDatabase();
  server = createQuotaServer({
    db: database.db,
    clock: new TestClock(new Date('2026-03-10T12:00:00Z')),
    addr: { host: '127.0.0.1', port: 0 },
    grpcAddr: { host: '127.0.0.1', port: 0 },
  });
  const { grpcAddr } = await server.listen();
  baseUrl = `http://127.0.0.1:${grpcAddr!.port}`;
  await server.readiness.check();
});
afterAll(async () => {
  await server.close();
  await database.drop();
});

describe('the gRPC-only port', () => {
  it('serves the services, health and reflection over gRPC', async () => {
    const transport = createGrpcTransport({ baseUrl });
    const set = await createClient(QuotaAdminService, transport).setQuota({
      subject: 'g',
      metric: 'api_calls',
      period: Period.DAY,
      limit: 3n,
    });
    expect(set.quota?.limit).toBe(3n);
    expect((await createClient(Health, transport).check({ service: '' })).status).toBe(
      Status.SERVING,
    );
    async function* listServices() {
      yield { host: '', messageRequest: { case: 'listServices' as const, value: '' } };
    }
    let answers = 0;
    for await (const res of createClient(ServerReflection, transport).serverReflectionInfo(
      listServices(),
    )) {
      expect(res.messageResponse.case).toBe('listServicesResponse');
      const names =
        res.messageResponse.case === 'listServicesResponse'
          ? res.messageResponse.value.service.map((x) => x.name)
          : [];
      expect(names).toContain('quota.v1.QuotaService');
      answers++;
    }
    expect(answers).toBe(1);
  });
});
