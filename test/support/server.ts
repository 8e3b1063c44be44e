import {
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type DescService,
  type MessageInitShape,
  type MessageShape,
  create,
} from '@bufbuild/protobuf';
import { createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { createQuotaServer, type QuotaServer, type ServerOptions } from '../../src/server.js';
import { createTestDatabase, TestClock, type TestDatabase } from './db.js';

export interface TestServer {
  server: QuotaServer;
  database: TestDatabase;
  clock: TestClock;
  port: number;
  baseUrl: string;
  connect: { quota: Client<typeof QuotaService>; admin: Client<typeof QuotaAdminService> };
  grpcWeb: { quota: Client<typeof QuotaService> };
  grpc: GrpcCaller;
  close(): Promise<void>;
}

/** A real server on a free loopback port over a database of its own, with a movable clock. */
export async function startTestServer(
  opts: Partial<ServerOptions> & { now?: string } = {},
): Promise<TestServer> {
  const database = await createTestDatabase();
  const clock = new TestClock(new Date(opts.now ?? '2026-03-10T12:00:00Z'));
  const server = createQuotaServer({
    db: database.db,
    clock,
    addr: { host: '127.0.0.1', port: 0 },
    ...opts,
  });
  const { addr } = await server.listen();
  const baseUrl = `http://127.0.0.1:${addr.port}`;
  const connectTransport = createConnectTransport({ baseUrl, httpVersion: '1.1' });
  const webTransport = createGrpcWebTransport({ baseUrl, httpVersion: '1.1' });
  const grpcCaller = new GrpcCaller(`127.0.0.1:${addr.port}`);
  return {
    server,
    database,
    clock,
    port: addr.port,
    baseUrl,
    connect: {
      quota: createClient(QuotaService, connectTransport),
      admin: createClient(QuotaAdminService, connectTransport),
    },
    grpcWeb: { quota: createClient(QuotaService, webTransport) },
    grpc: grpcCaller,
    async close() {
      grpcCaller.close();
      await server.close();
      await database.drop();
    },
  };
}

/** A plain grpc-js client over HTTP/2: unary calls by service and method descriptor. */
export class GrpcCaller {
  private readonly client: grpc.Client;
  constructor(target: string, options: grpc.ChannelOptions = {}) {
    this.client = new grpc.Client(target, grpc.credentials.createInsecure(), options);
  }

  call<I extends DescMessage, O extends DescMessage>(
    service: DescService,
    method: DescMethodUnary<I, O>,
    req: MessageInitShape<I>,
    metadata: Record<string, string> = {},
  ): Promise<MessageShape<O>> {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    return new Promise((ok, fail) =>
      this.client.makeUnaryRequest(
        `/${service.typeName}/${method.name}`,
        (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
        (b: Buffer) => fromBinary(method.output, b),
        create(method.input, req),
        md,
        { deadline: Date.now() + 10_000 },
        (err, res) => (err ? fail(err) : ok(res!)),
      ),
    );
  }

  /**
   * A server-streaming call: the messages as they come, until the server ends the stream, it
   * fails (the iterator throws the grpc-js error), or the consumer stops iterating (cancels).
   */
  async *stream<I extends DescMessage, O extends DescMessage>(
    service: DescService,
    method: DescMethodServerStreaming<I, O>,
    req: MessageInitShape<I>,
    metadata: Record<string, string> = {},
  ): AsyncGenerator<MessageShape<O>> {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    const call = this.client.makeServerStreamRequest(
      `/${service.typeName}/${method.name}`,
      (m: MessageShape<I>) => Buffer.from(toBinary(method.input, m)),
      (b: Buffer) => fromBinary(method.output, b),
      create(method.input, req),
      md,
    );
    try {
      for await (const msg of call as AsyncIterable<MessageShape<O>>) yield msg;
    } finally {
      call.cancel();
    }
  }

  /** Sends raw bytes as the request body, for malformed-input tests. */
  raw(path: string, body: Buffer): Promise<Buffer> {
    return new Promise((ok, fail) =>
      this.client.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        body,
        new grpc.Metadata(),
        { deadline: Date.now() + 10_000 },
        (err, res) => (err ? fail(err) : ok(res!)),
      ),
    );
  }

  close(): void {
    this.client.close();
  }
}
