import { fromBinary, toBinary, type DescMethod, type Message } from '@bufbuild/protobuf';
import type { ConnectRouter, HandlerContext } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  trace,
  type TextMapGetter,
} from '@opentelemetry/api';
import { Cancellation, type CallSignal } from '../cancellation.js';
import type { Caller } from '../auth/api-keys.js';
import type { HeaderReader } from '../auth/header-reader.js';
import type { CallContext, Handler } from './context.js';
import { decodeRequest } from './decode.js';
import { toConnectError, toFailure, type RpcFailure } from './errors.js';
import type { MountedService } from './mount.js';

/**
 * Decides who is calling from the request headers, or throws UNAUTHENTICATED /
 * PERMISSION_DENIED. `method` is the full name, e.g. "quota.v1.QuotaService/Consume".
 */
export type Authenticator = (header: HeaderReader, method: string) => Caller;

export interface TransportHooks {
  authenticate: Authenticator;
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

const tracer = trace.getTracer('quota-ledger');
const headerGetter: TextMapGetter<HeaderReader> = {
  keys: () => [],
  get: (carrier, key) => carrier(key),
};

/**
 * The span and hooks of one call, whichever transport carried it: a server span named after
 * the method (RPC semantic conventions, continuing the caller's trace if it sent one), the
 * start hook now, and the end hook with the call's status when it ends either way.
 */
function beginCall(
  m: DescMethod,
  hooks: TransportHooks,
  transport: 'grpc' | 'connect',
  header: HeaderReader,
) {
  const started = process.hrtime.bigint();
  const name = methodName(m);
  hooks.onCallStart?.(name, transport);
  const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
  const parent = propagation.extract(context.active(), header, headerGetter);
  const attributes = {
    'rpc.system': transport === 'grpc' ? 'grpc' : 'connect_rpc',
    'rpc.service': m.parent.typeName,
    'rpc.method': m.name,
  };
  const span = tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, parent);
  return {
    name,
    /** The caller's context with this call's span active: spans made meanwhile are children. */
    context: trace.setSpan(parent, span),
    succeeded(): void {
      span.setAttribute('rpc.grpc.status_code', 0);
      hooks.onCallEnd?.(name, transport, 0, seconds());
      span.end();
    },
    failed(err: unknown): RpcFailure {
      const f = toFailure(err);
      span.setAttribute('rpc.grpc.status_code', f.code);
      if (f.internal) span.setStatus({ code: SpanStatusCode.ERROR, message: f.message });
      hooks.onCallEnd?.(name, transport, f.code, seconds(), f);
      span.end();
      return f;
    },
    /** A stream its consumer stopped reading: the span ends, the call has no status. */
    abandoned(): void {
      span.end();
    },
  };
}

/** One unary call: authentication, decoding and the handler, inside the call's span. */
async function run(
  m: DescMethod,
  handler: Handler<Message, Message>,
  hooks: TransportHooks,
  transport: 'grpc' | 'connect',
  header: HeaderReader,
  signal: CallSignal,
  decode: () => Message,
): Promise<Message> {
  const call = beginCall(m, hooks, transport, header);
  // The whole call in the span's context: spans made by the handler are its children, and
  // the end hook's log line carries its trace id.
  return context.with(call.context, async () => {
    try {
      const ctx: CallContext = { ...hooks.authenticate(header, call.name), signal };
      const res = await handler(decode(), ctx);
      call.succeeded();
      return res;
    } catch (err) {
      throw call.failed(err);
    }
  });
}

/**
 * One server-streaming call: as `run`, except that the handler resolves to the stream and the
 * call ends (hook, span) when the stream does. The consumer pulls, so the transport's pace is
 * the stream's pace (backpressure).
 */
async function* runStream(
  m: DescMethod,
  handler: Handler<Message, AsyncIterable<Message>>,
  hooks: TransportHooks,
  transport: 'grpc' | 'connect',
  header: HeaderReader,
  signal: CallSignal,
  decode: () => Message,
): AsyncGenerator<Message> {
  const call = beginCall(m, hooks, transport, header);
  let ended = false;
  try {
    const ctx: CallContext = { ...hooks.authenticate(header, call.name), signal };
    const stream = await handler(decode(), ctx);
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
  m: DescMethod,
  handler: Handler<Message, AsyncIterable<Message>>,
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
        for await (const msg of runStream(m, handler, hooks, 'grpc', header, ac.signal, () =>
          decodeRequest<Message>(m.input, call.request),
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
    definition[m.localName] = {
      path: `/${methodName(m)}`,
      requestStream: false,
      responseStream: mounted.streaming,
      // Requests stay raw bytes here and are decoded inside the call, so a malformed message
      // is answered INVALID_ARGUMENT with a reason rather than grpc-js's generic INTERNAL.
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (msg: Message) => Buffer.from(toBinary(m.output, msg)),
      responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
    };
    if (mounted.streaming) {
      implementation[m.localName] = grpcStream(m, mounted.handler, hooks);
      continue;
    }
    const handler = mounted.handler;
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
      run(m, handler, hooks, 'grpc', header, cancellation, () =>
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

/** The Connect / gRPC-Web face, over the same handlers. */
export function addConnectService(
  router: ConnectRouter,
  svc: MountedService,
  hooks: TransportHooks,
): void {
  for (const mounted of svc.methods) {
    const m = mounted.method;
    if (mounted.streaming) {
      const handler = mounted.handler;
      router.rpc(m, async function* (req: Message, hctx: HandlerContext) {
        const header: HeaderReader = (name) => hctx.requestHeader.get(name) ?? undefined;
        try {
          yield* runStream(m, handler, hooks, 'connect', header, hctx.signal, () => req);
        } catch (f) {
          throw toConnectError(f as RpcFailure);
        }
      });
      continue;
    }
    const handler = mounted.handler;
    router.rpc(m, async (req: Message, hctx: HandlerContext) => {
      const header: HeaderReader = (name) => hctx.requestHeader.get(name) ?? undefined;
      try {
        return await run(m, handler, hooks, 'connect', header, hctx.signal, () => req);
      } catch (f) {
        throw toConnectError(f as RpcFailure);
      }
    });
  }
}
