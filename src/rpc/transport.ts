import {
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type Message,
} from '@bufbuild/protobuf';
import type { ConnectRouter, HandlerContext } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
} from '@opentelemetry/api';
import { Cancellation, type CallSignal } from '../cancellation.js';
import type { Caller } from '../auth/api-keys.js';
import type { HeaderReader } from '../auth/header-reader.js';
import type { CallContext, Handler } from './context.js';
import { binaryEncoder } from './binary-encode.js';
import { decodeRequest } from './decode.js';
import { toConnectError, toFailure, type RpcFailure } from './errors.js';
import type { MountedService } from './mount.js';
import type { UnaryMethod } from '../transport/grpc-unary.js';

/**
 * Decides who is calling from the request headers, or throws UNAUTHENTICATED /
 * PERMISSION_DENIED. `method` is the full name, e.g. "quota.v1.QuotaService/Consume".
 */
export type Authenticator = (header: HeaderReader, method: string) => Caller;

export interface TransportHooks {
  authenticate: Authenticator;
  /**
   * A server span per call (OpenTelemetry is configured). Off, a call makes no span, reads
   * no trace headers and switches no context: all of that is a few per cent of a Consume's
   * CPU, spent on spans nobody exports.
   */
  tracing?: boolean;
  /** Called once per call as it starts (the in-flight gauge). */
  onCallStart?: (method: string, transport: 'grpc' | 'connect') => void;
  /** Called once per finished call, for logs and metrics. */
  onCallEnd?: (
    method: string,
    transport: 'grpc' | 'connect',
    code: number,
    seconds: number,
    failure?: RpcFailure,
  ) => void;
}

const methodName = (m: DescMethod): string => `${m.parent.typeName}/${m.name}`;

/** protobuf-es's encoding as a Buffer viewing the same bytes (no copy). */
function toBuffer(desc: DescMessage, msg: Message): Buffer {
  const bytes = toBinary(desc, msg);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// A method's answer encoder, compiled once for both gRPC faces (grpc-js and grpc-unary.ts).
const encoders = new WeakMap<DescMethod, (msg: Message) => Buffer>();
function responseEncoder(m: DescMethod): (msg: Message) => Buffer {
  let encode = encoders.get(m);
  if (!encode) {
    encode = binaryEncoder(m.output) ?? ((msg: Message) => toBuffer(m.output, msg));
    encoders.set(m, encode);
  }
  return encode;
}

const tracer = trace.getTracer('quota-ledger');
const headerGetter: TextMapGetter<HeaderReader> = {
  keys: () => [],
  get: (carrier, key) => carrier(key),
};

/** A method as both transports serve it: its descriptor, full name and handler. */
interface Endpoint<O> {
  desc: DescMethod;
  /** "quota.v1.QuotaService/Consume", built once. */
  name: string;
  handler: Handler<Message, O>;
}

/**
 * One call, whichever transport carried it: the start hook now, the end hook with the call's
 * status when it ends either way, and with tracing on a server span named after the method
 * (RPC semantic conventions, continuing the caller's trace if it sent one).
 */
class Call {
  private readonly started = process.hrtime.bigint();
  private readonly span: Span | null = null;
  /** The caller's context with this call's span active (null without tracing). */
  readonly context: Context | null = null;

  constructor(
    readonly name: string,
    m: DescMethod,
    private readonly hooks: TransportHooks,
    private readonly transport: 'grpc' | 'connect',
    header: HeaderReader,
  ) {
    hooks.onCallStart?.(name, transport);
    if (!hooks.tracing) return;
    const parent = propagation.extract(context.active(), header, headerGetter);
    const attributes = {
      'rpc.system': transport === 'grpc' ? 'grpc' : 'connect_rpc',
      'rpc.service': m.parent.typeName,
      'rpc.method': m.name,
    };
    this.span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
    this.context = trace.setSpan(parent, this.span);
  }

  /** Who is calling, as the handler sees it. */
  callContext(header: HeaderReader, signal: CallSignal): CallContext {
    const c = this.hooks.authenticate(header, this.name);
    return { actor: c.actor, role: c.role, scope: c.scope, signal };
  }

  succeeded(): void {
    this.span?.setAttribute('rpc.grpc.status_code', 0);
    this.hooks.onCallEnd?.(this.name, this.transport, 0, this.seconds());
    this.span?.end();
  }

  failed(err: unknown): RpcFailure {
    const f = toFailure(err);
    if (this.span) {
      this.span.setAttribute('rpc.grpc.status_code', f.code);
      if (f.internal) this.span.setStatus({ code: SpanStatusCode.ERROR, message: f.message });
    }
    this.hooks.onCallEnd?.(this.name, this.transport, f.code, this.seconds(), f);
    this.span?.end();
    return f;
  }

  /** A stream its consumer stopped reading: the span ends, the call has no status. */
  abandoned(): void {
    this.span?.end();
  }

  private seconds(): number {
    return Number(process.hrtime.bigint() - this.started) / 1e9;
  }
}

/**
 * One unary call: authentication, decoding and the handler, inside the call's span. Async so
 * that anything thrown, even before the handler runs, is a rejection the transport answers.
 */
async function run(
  e: Endpoint<Message>,
  hooks: TransportHooks,
  transport: 'grpc' | 'connect',
  header: HeaderReader,
  signal: CallSignal,
  decode: () => Message,
): Promise<Message> {
  const call = new Call(e.name, e.desc, hooks, transport, header);
  // With tracing, the whole call in the span's context: spans made by the handler are its
  // children, and the end hook's log line carries its trace id.
  return call.context
    ? context.with(call.context, () => answer(call, e.handler, header, signal, decode))
    : answer(call, e.handler, header, signal, decode);
}

async function answer(
  call: Call,
  handler: Handler<Message, Message>,
  header: HeaderReader,
  signal: CallSignal,
  decode: () => Message,
): Promise<Message> {
  try {
    const res = await handler(decode(), call.callContext(header, signal));
    call.succeeded();
    return res;
  } catch (err) {
    throw call.failed(err);
  }
}

/**
 * One server-streaming call: as `run`, except that the handler resolves to the stream and the
 * call ends (hook, span) when the stream does. The consumer pulls, so the transport's pace is
 * the stream's pace (backpressure).
 */
async function* runStream(
  e: Endpoint<AsyncIterable<Message>>,
  hooks: TransportHooks,
  transport: 'grpc' | 'connect',
  header: HeaderReader,
  signal: CallSignal,
  decode: () => Message,
): AsyncGenerator<Message> {
  const call = new Call(e.name, e.desc, hooks, transport, header);
  let ended = false;
  try {
    const stream = await e.handler(decode(), call.callContext(header, signal));
    for await (const msg of stream) yield msg;
    ended = true;
    call.succeeded();
  } catch (err) {
    ended = true;
    throw call.failed(err);
  } finally {
    if (!ended) call.abandoned();
  }
}

/** A server-streaming method on grpc-js: writes as fast as the client reads, no faster. */
function grpcStream(
  e: Endpoint<AsyncIterable<Message>>,
  hooks: TransportHooks,
): grpc.handleServerStreamingCall<Buffer, Message> {
  return (call) => {
    const ac = new AbortController();
    call.once('cancelled', () => ac.abort());
    call.once('error', () => ac.abort());
    const header: HeaderReader = (name) => {
      const v = call.metadata.get(name.toLowerCase())[0];
      return typeof v === 'string' ? v : undefined;
    };
    const drained = () =>
      new Promise<void>((ok) => {
        const done = () => {
          call.off('drain', done);
          ac.signal.removeEventListener('abort', done);
          ok();
        };
        call.on('drain', done);
        ac.signal.addEventListener('abort', done);
      });
    void (async () => {
      try {
        for await (const msg of runStream(e, hooks, 'grpc', header, ac.signal, () =>
          decodeRequest<Message>(e.desc.input, call.request),
        )) {
          if (ac.signal.aborted) break;
          if (!call.write(msg)) await drained();
        }
        if (!ac.signal.aborted) call.end();
      } catch (f) {
        const { code, message } = f as RpcFailure;
        if (!ac.signal.aborted) call.emit('error', { code, details: message });
      }
    })();
  };
}

/** The gRPC face: grpc-js service definitions built from the protobuf-es descriptors. */
export function addGrpcService(
  server: grpc.Server,
  svc: MountedService,
  hooks: TransportHooks,
): void {
  const definition: Record<string, grpc.MethodDefinition<Buffer, Message>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const mounted of svc.methods) {
    const m = mounted.method;
    const name = methodName(m);
    definition[m.localName] = {
      path: `/${name}`,
      requestStream: false,
      responseStream: mounted.streaming,
      // Requests stay raw bytes here and are decoded inside the call, so a malformed message
      // is answered INVALID_ARGUMENT with a reason rather than grpc-js's generic INTERNAL.
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: responseEncoder(m),
      responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
    };
    if (mounted.streaming) {
      implementation[m.localName] = grpcStream({ desc: m, name, handler: mounted.handler }, hooks);
      continue;
    }
    const endpoint: Endpoint<Message> = { desc: m, name, handler: mounted.handler };
    implementation[m.localName] = (
      call: grpc.ServerUnaryCall<Buffer, Message>,
      callback: grpc.sendUnaryData<Message>,
    ) => {
      const cancellation = new Cancellation();
      const onCancelled = () => cancellation.abort();
      call.once('cancelled', onCancelled);
      const header: HeaderReader = (name) => {
        const v = call.metadata.get(name.toLowerCase())[0];
        return typeof v === 'string' ? v : undefined;
      };
      run(endpoint, hooks, 'grpc', header, cancellation, () =>
        decodeRequest<Message>(m.input, call.request),
      ).then(
        (res) => {
          // grpc-js reports the stream's close as 'cancelled' even after an answer; aborting
          // then would only cost an exception object per call.
          call.off('cancelled', onCancelled);
          callback(null, res);
        },
        (f: RpcFailure) => {
          call.off('cancelled', onCancelled);
          callback({ code: f.code, details: f.message, metadata: new grpc.Metadata() });
        },
      );
    };
  }
  server.addService(definition, implementation);
}

/**
 * The unary methods of a service for plain gRPC served without grpc-js
 * (src/transport/grpc-unary.ts), by path: the same handlers, hooks and encoder as through
 * grpc-js (addGrpcService), which still serves the streaming methods and compressed requests.
 */
export function grpcUnaryMethods(
  svc: MountedService,
  hooks: TransportHooks,
): Map<string, UnaryMethod> {
  const methods = new Map<string, UnaryMethod>();
  for (const mounted of svc.methods) {
    if (mounted.streaming) continue;
    const m = mounted.method;
    const endpoint: Endpoint<Message> = { desc: m, name: methodName(m), handler: mounted.handler };
    const encode = responseEncoder(m);
    methods.set(`/${endpoint.name}`, (request, header, signal) =>
      run(endpoint, hooks, 'grpc', header, signal, () =>
        decodeRequest<Message>(m.input, request),
      ).then(encode),
    );
  }
  return methods;
}

/** The Connect / gRPC-Web face, over the same handlers. */
export function addConnectService(
  router: ConnectRouter,
  svc: MountedService,
  hooks: TransportHooks,
): void {
  for (const mounted of svc.methods) {
    const m = mounted.method;
    const name = methodName(m);
    if (mounted.streaming) {
      const endpoint = { desc: m, name, handler: mounted.handler };
      router.rpc(m, async function* (req: Message, hctx: HandlerContext) {
        const header: HeaderReader = (name) => hctx.requestHeader.get(name) ?? undefined;
        try {
          yield* runStream(endpoint, hooks, 'connect', header, hctx.signal, () => req);
        } catch (f) {
          throw toConnectError(f as RpcFailure);
        }
      });
      continue;
    }
    const endpoint: Endpoint<Message> = { desc: m, name, handler: mounted.handler };
    router.rpc(m, async (req: Message, hctx: HandlerContext) => {
      const header: HeaderReader = (name) => hctx.requestHeader.get(name) ?? undefined;
      try {
        return await run(endpoint, hooks, 'connect', header, hctx.signal, () => req);
      } catch (f) {
        throw toConnectError(f as RpcFailure);
      }
    });
  }
}
