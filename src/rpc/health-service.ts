import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type MessageShape,
} from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthListRequestSchema,
  HealthListResponseSchema,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthListResponse,
} from '../gen/grpc/health/v1/health_pb.js';
import type { Readiness } from './health.js';

// grpc.health.v1.Health, once, over the Readiness state: mounted on grpc-js for plain gRPC and
// on connect-node for Connect and gRPC-Web. Unauthenticated by design (probes carry no key).

const unknown = (service: string) => `service "${service}": unknown`;

function list(r: Readiness) {
  return {
    statuses: Object.fromEntries(r.services.map((n) => [n, { status: r.statusOf(n)! }])),
  };
}

export function addHealthToConnect(router: ConnectRouter, r: Readiness): void {
  router.service(Health, {
    check: (req) => {
      const status = r.statusOf(req.service);
      if (status === undefined) throw new ConnectError(unknown(req.service), Code.NotFound);
      return { status };
    },
    list: () => list(r),
    watch: (req, ctx) => r.watch(req.service, ctx.signal),
  });
}

const codec = <T extends DescMessage>(schema: T) => ({
  serialize: (m: MessageShape<T>) => Buffer.from(toBinary(schema, m)),
  deserialize: (b: Buffer) => fromBinary(schema, b),
});

export function addHealthToGrpc(server: grpc.Server, r: Readiness): void {
  const path = (m: string) => `/${Health.typeName}/${m}`;
  const req = codec(HealthCheckRequestSchema);
  const res = codec(HealthCheckResponseSchema);
  server.register<HealthCheckRequest, HealthCheckResponse>(
    path('Check'),
    (
      call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
      cb: grpc.sendUnaryData<HealthCheckResponse>,
    ) => {
      const status = r.statusOf(call.request.service);
      if (status === undefined)
        cb({ code: grpc.status.NOT_FOUND, details: unknown(call.request.service) });
      else cb(null, create(HealthCheckResponseSchema, { status }));
    },
    res.serialize,
    req.deserialize,
    'unary',
  );
  server.register<HealthCheckRequest, HealthCheckResponse>(
    path('Watch'),
    (call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      call.on('error', () => ac.abort());
      void (async () => {
        for await (const m of r.watch(call.request.service, ac.signal))
          call.write(create(HealthCheckResponseSchema, m));
        if (!ac.signal.aborted) call.end();
      })();
    },
    res.serialize,
    req.deserialize,
    'serverStream',
  );
  const listReq = codec(HealthListRequestSchema);
  const listRes = codec(HealthListResponseSchema);
  server.register(
    path('List'),
    (_call: unknown, cb: grpc.sendUnaryData<HealthListResponse>) =>
      cb(null, create(HealthListResponseSchema, list(r))),
    listRes.serialize,
    listReq.deserialize,
    'unary',
  );
}
