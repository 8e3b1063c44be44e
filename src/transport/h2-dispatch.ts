import {
  constants,
  Http2ServerRequest,
  Http2ServerResponse,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import { grpcMessage, servableHere, serveUnary, type UnaryMethod } from './grpc-unary.js';

/**
 * True for plain gRPC ("application/grpc", "application/grpc+proto", "application/grpc;..."),
 * false for gRPC-Web ("application/grpc-web...") and everything else. grpc-js's own check is
 * a prefix match on "application/grpc", which would take gRPC-Web too and answer it with a
 * content-type gRPC-Web clients reject.
 */
export function isPlainGrpc(contentType: string | string[] | undefined): boolean {
  if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) return false;
  const next = contentType.charCodeAt(16); // the character after "application/grpc"
  return Number.isNaN(next) || next === 0x2b /* + */ || next === 0x3b; /* ; */
}

type StreamListener = (
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  flags: number,
  rawHeaders: string[],
) => void;

/** What serves the requests grpc-js must not see: Connect, gRPC-Web, the HTTP endpoints. */
export type CompatHandler = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

/**
 * The HTTP/2 server grpc-js made for `createConnectionInjector`. grpc-js keeps it in a private
 * map; the last one added is the injector's. Throws if grpc-js's internals have moved, so an
 * upgrade that breaks this fails at start-up (and in the tests), not at the first call.
 */
function injectorServer(server: grpc.Server): Http2Server {
  const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0)
    throw new Error('grpc-js internals changed: Server.http2Servers not found');
  return [...servers.keys()].at(-1)!;
}

/**
 * Makes one HTTP/2 server serve every protocol, stream by stream: plain gRPC goes to grpc-js's
 * own stream handler (its speed, keepalive and GOAWAY-on-shutdown stay as they are), every
 * other stream to `handler` through Node's HTTP/2 compatibility objects, exactly as
 * `http2.createServer(handler)` would. grpc-js still owns the sessions, so one connection may
 * carry both kinds and a shutdown drains both.
 */
/**
 * Checked from the headers alone, before grpc-js reads a message: an answer (gRPC status code
 * and message) refuses the call, null lets it through.
 */
export type GrpcPreCheck = (
  headers: IncomingHttpHeaders,
) => { code: number; message: string } | null;

/** Plain gRPC unary methods served without grpc-js (see grpc-unary.ts), by path. */
export interface UnaryRoutes {
  methods: ReadonlyMap<string, UnaryMethod>;
  /** The largest request message taken, as grpc-js's grpc.max_receive_message_length. */
  maxBytes: number;
}

export function dispatchHttp2Streams(
  server: grpc.Server,
  handler: CompatHandler,
  preCheck: GrpcPreCheck = () => null,
  unary: UnaryRoutes | null = null,
): void {
  const h2 = injectorServer(server);
  // grpc-js counts a session's open streams to time it out when idle; streams it never sees
  // (Connect, gRPC-Web on the same connection) must count too, or a busy connection would be
  // closed as idle.
  const streamOpened = (server as unknown as { onStreamOpened?: (s: ServerHttp2Stream) => void })
    .onStreamOpened;
  if (typeof streamOpened !== 'function')
    throw new Error('grpc-js internals changed: Server.onStreamOpened not found');
  const listeners = h2.listeners('stream') as StreamListener[];
  if (listeners.length !== 1)
    throw new Error(
      `grpc-js internals changed: expected 1 stream listener, found ${listeners.length}`,
    );
  const grpcListener = listeners[0]!;
  h2.removeListener('stream', grpcListener);
  const dispatch: StreamListener = (stream, headers, flags, rawHeaders) => {
    if (isPlainGrpc(headers[constants.HTTP2_HEADER_CONTENT_TYPE])) {
      const refusal = preCheck(headers);
      if (refusal) {
        // Trailers-only: the status in the headers, nothing read of the request's body.
        stream.on('error', () => {});
        stream.respond(
          {
            ':status': 200,
            'content-type': 'application/grpc+proto',
            'grpc-status': String(refusal.code),
            'grpc-message': grpcMessage(refusal.message),
          },
          { endStream: true },
        );
        return;
      }
      const method = unary?.methods.get(headers[constants.HTTP2_HEADER_PATH] as string);
      if (method && servableHere(headers)) {
        streamOpened.call(server, stream);
        serveUnary(stream, headers, method, unary!.maxBytes);
        return;
      }
      grpcListener.call(h2, stream, headers, flags, rawHeaders);
      return;
    }
    streamOpened.call(server, stream);
    // What Node's compat layer (lib/internal/http2/compat.js onServerStream) does for a
    // server made with a request listener.
    stream.on('error', () => {});
    const req = new Http2ServerRequest(stream, headers, undefined as never, rawHeaders);
    const res = new Http2ServerResponse(stream);
    if (headers[constants.HTTP2_HEADER_METHOD] === 'CONNECT') {
      res.statusCode = constants.HTTP_STATUS_METHOD_NOT_ALLOWED;
      res.end();
      return;
    }
    if (headers.expect !== undefined) {
      if (headers.expect !== '100-continue') {
        res.statusCode = constants.HTTP_STATUS_EXPECTATION_FAILED;
        res.end();
        return;
      }
      res.writeContinue();
    }
    handler(req, res);
  };
  h2.on('stream', dispatch);
}
