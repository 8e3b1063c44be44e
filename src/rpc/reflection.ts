import {
  create,
  createRegistry,
  fromBinary,
  toBinary,
  type DescFile,
  type DescService,
  type MessageInitShape,
  type Registry,
} from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import type { ConnectRouter } from '@connectrpc/connect';
import type { Server, ServerDuplexStream } from '@grpc/grpc-js';
import { Health } from '../gen/grpc/health/v1/health_pb.js';
import {
  ServerReflection,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from '../gen/grpc/reflection/v1/reflection_pb.js';
import {
  ServerReflection as ServerReflectionAlpha,
  ServerReflectionRequestSchema as AlphaRequestSchema,
  ServerReflectionResponseSchema as AlphaResponseSchema,
  type ServerReflectionRequest as AlphaRequest,
} from '../gen/grpc/reflection/v1alpha/reflection_pb.js';

const NOT_FOUND = 5;

/**
 * Server reflection (v1 and v1alpha) over the descriptors the code was generated from, so
 * buf curl, grpcurl and Python's descriptor pool get exactly what protoc made: fully
 * qualified type names, map entries named "<Field>Entry", every import. One implementation,
 * served by grpc-js (plain gRPC) and by connect-node (Connect, gRPC-Web) alike.
 */
export class Reflection {
  private readonly registry: Registry;
  private readonly files = new Map<string, DescFile>();
  private readonly serviceNames: string[];
  /** Each file's FileDescriptorProto, encoded once. */
  private readonly encoded = new Map<string, Uint8Array>();

  constructor(services: DescService[]) {
    const all = [...services, Health, ServerReflection, ServerReflectionAlpha];
    const collect = (f: DescFile) => {
      // f.name lacks ".proto"; reflection clients ask by the real file name.
      if (this.files.has(f.proto.name)) return;
      this.files.set(f.proto.name, f);
      f.dependencies.forEach(collect);
    };
    for (const s of all) collect(s.file);
    this.registry = createRegistry(...this.files.values());
    this.serviceNames = all.map((s) => s.typeName);
    for (const [name, f] of this.files)
      this.encoded.set(name, toBinary(FileDescriptorProtoSchema, f.proto));
  }

  /** The file and every file it imports, transitively; the file itself first. */
  private fileWithImports(file: DescFile): Uint8Array[] {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (f: DescFile) => {
      if (seen.has(f.name)) return;
      seen.add(f.name);
      out.push(this.encoded.get(f.proto.name)!);
      for (const d of f.dependencies) visit(d);
    };
    visit(file);
    return out;
  }

  /** The file declaring a fully qualified name: a type, service, method, field or enum value. */
  private fileOf(symbol: string): DescFile | undefined {
    const direct = this.registry.get(symbol);
    if (direct) return direct.file;
    const dot = symbol.lastIndexOf('.');
    if (dot < 0) return undefined;
    const parent = this.registry.get(symbol.slice(0, dot));
    const member = symbol.slice(dot + 1);
    if (parent?.kind === 'service' && parent.methods.some((m) => m.name === member))
      return parent.file;
    if (parent?.kind === 'message' && parent.fields.some((f) => f.name === member))
      return parent.file;
    if (parent?.kind === 'enum' && parent.values.some((v) => v.name === member)) return parent.file;
    return undefined;
  }

  answer(req: ServerReflectionRequest): ServerReflectionResponse {
    return create(ServerReflectionResponseSchema, {
      validHost: req.host,
      originalRequest: req,
      messageResponse: this.respond(req.messageRequest),
    });
  }

  private respond(
    r: ServerReflectionRequest['messageRequest'],
  ): MessageInitShape<typeof ServerReflectionResponseSchema>['messageResponse'] {
    const notFound = (message: string) =>
      ({ case: 'errorResponse', value: { errorCode: NOT_FOUND, errorMessage: message } }) as const;
    const files = (f: DescFile | undefined, what: string) =>
      f
        ? ({
            case: 'fileDescriptorResponse',
            value: { fileDescriptorProto: this.fileWithImports(f) },
          } as const)
        : notFound(`${what} not found`);
    switch (r.case) {
      case 'listServices':
        return {
          case: 'listServicesResponse',
          value: { service: this.serviceNames.map((name) => ({ name })) },
        };
      case 'fileByFilename':
        return files(this.files.get(r.value), `file "${r.value}"`);
      case 'fileContainingSymbol':
        return files(this.fileOf(r.value), `symbol "${r.value}"`);
      case 'fileContainingExtension': {
        const msg = this.registry.getMessage(r.value.containingType);
        const ext = msg && this.registry.getExtensionFor(msg, r.value.extensionNumber);
        return files(
          ext?.file,
          `extension ${r.value.extensionNumber} of "${r.value.containingType}"`,
        );
      }
      case 'allExtensionNumbersOfType': {
        const msg = this.registry.getMessage(r.value);
        if (!msg) return notFound(`type "${r.value}" not found`);
        const numbers: number[] = [];
        for (const d of this.registry)
          if (d.kind === 'extension' && d.extendee.typeName === msg.typeName)
            numbers.push(d.number);
        return {
          case: 'allExtensionNumbersResponse',
          value: { baseTypeName: msg.typeName, extensionNumber: numbers },
        };
      }
      default:
        return notFound('empty request');
    }
  }

  private async *answerAll(reqs: AsyncIterable<ServerReflectionRequest>) {
    for await (const req of reqs) yield this.answer(req);
  }

  private async *answerAllAlpha(reqs: AsyncIterable<AlphaRequest>) {
    for await (const req of reqs) {
      const v1 = fromBinary(ServerReflectionRequestSchema, toBinary(AlphaRequestSchema, req));
      yield fromBinary(
        AlphaResponseSchema,
        toBinary(ServerReflectionResponseSchema, this.answer(v1)),
      );
    }
  }

  /** Serves both versions on connect-node (bidi streaming needs HTTP/2 there). */
  addToConnect(router: ConnectRouter): void {
    router.service(ServerReflection, { serverReflectionInfo: (reqs) => this.answerAll(reqs) });
    router.service(ServerReflectionAlpha, {
      serverReflectionInfo: (reqs) => this.answerAllAlpha(reqs),
    });
  }

  /** Serves both versions on grpc-js; v1alpha's messages are v1's under another name. */
  addToGrpc(server: Server): void {
    for (const version of ['v1', 'v1alpha']) {
      const ok = server.register<Buffer, Uint8Array>(
        `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
        (call: ServerDuplexStream<Buffer, Uint8Array>) => {
          call.on('data', (b: Buffer) => {
            const req = fromBinary(ServerReflectionRequestSchema, b);
            call.write(toBinary(ServerReflectionResponseSchema, this.answer(req)));
          });
          call.on('end', () => call.end());
          call.on('error', () => {});
        },
        (m: Uint8Array) => Buffer.from(m),
        (b: Buffer) => b,
        'bidi',
      );
      if (!ok) throw new Error(`reflection ${version} registered twice`);
    }
  }
}
