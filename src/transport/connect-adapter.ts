import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import {
  createConnectRouter,
  type ConnectRouter,
  type ConnectRouterOptions,
} from '@connectrpc/connect';
import type {
  UniversalHandler,
  UniversalServerRequest,
  UniversalServerResponse,
} from '@connectrpc/connect/protocol';
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from '@connectrpc/connect-node';
import { headerValue } from '../auth/header-reader.js';
import type { PreCheck } from '../rpc/pre-check.js';
import { binaryBodyProblem, jsonBodyProblem, MAX_REQUEST_BYTES } from './request-check.js';
import { base64Decoded, base64Encoded } from './base64-stream.js';

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;
export type NodeHandler = (req: NodeRequest, res: NodeResponse) => void;

export interface ConnectHandlerOptions extends ConnectRouterOptions {
  routes(router: ConnectRouter): void;
  /** Requests for paths that are not RPCs (health, metrics). */
  fallback: NodeHandler;
  /** Decides from the request line and headers whether to refuse before reading the body. */
  preCheck?: PreCheck;
  /** Told of every call refused before it reached a handler (for the RPC metrics). */
  onRefused?: (path: string, code: number) => void;
}

const CONNECT_CODES: Record<number, [number, string]> = {
  3: [400, 'invalid_argument'],
  7: [403, 'permission_denied'],
  8: [429, 'resource_exhausted'],
  16: [401, 'unauthenticated'],
};

const GRPC_WEB_TEXT = /^application\/grpc-web-text(\+proto)?$/i;
const JSON_TYPE = /^application\/json(\s*;.*)?$/i;

/**
 * connect-node's connectNodeAdapter, plus two things it lacks, done on its universal request
 * so every protocol handler stays connect-node's own:
 * - gRPC-Web text (base64 bodies, what grpc-web's default mode sends), turned into gRPC-Web
 *   binary on the way in and back into base64 on the way out;
 * - a Connect JSON request that names an unknown enum value is refused with the field's path
 *   (the decoder refuses it too, but without saying which field).
 */
export function createConnectHandler(options: ConnectHandlerOptions): NodeHandler {
  const router = createConnectRouter({
    acceptCompression: [compressionGzip, compressionBrotli],
    ...options,
  });
  options.routes(router);
  const paths = new Map<string, UniversalHandler>();
  const onRefused = options.onRefused ?? (() => {});
  for (const h of router.handlers) paths.set(h.requestPath, wrap(h, onRefused));
  return (req, res) => {
    const path = (req.url ?? '').split('?', 2)[0] ?? '';
    const h = paths.get(path);
    const refusal = options.preCheck?.(path, authorityOf(req), (name) => headerOf(req, name));
    if (refusal) {
      options.onRefused?.(path, refusal.code);
      return refuse(req, res, refusal);
    }
    if (!h) return options.fallback(req, res);
    const uReq = universalRequestFromNodeRequest(req as never, res as never, undefined, undefined);
    h(uReq)
      .then((uRes) => universalResponseToNodeResponse(uRes, res as never))
      .catch(() => {
        // The caller went away mid-answer; nothing is left to tell it.
        res.destroy();
      });
  };
}

const headerOf = (req: NodeRequest, name: string): string | undefined =>
  headerValue(req.headers, name);

/** HTTP/2's :authority, or HTTP/1.1's Host. */
const authorityOf = (req: NodeRequest): string | undefined =>
  headerOf(req, ':authority') ?? headerOf(req, 'host');

/**
 * Answers a refused request in its own protocol without reading its body: gRPC-Web gets a
 * trailers-only response (status in the headers), everything else a Connect error. The
 * connection is not kept: an unread body would otherwise have to be read to reuse it.
 */
function refuse(req: NodeRequest, res: NodeResponse, r: { code: number; message: string }): void {
  const type = headerOf(req, 'content-type') ?? '';
  if ('httpVersionMajor' in req && req.httpVersionMajor === 1) res.setHeader('connection', 'close');
  if (type.startsWith('application/grpc-web')) {
    res.writeHead(200, {
      'content-type': type,
      'grpc-status': String(r.code),
      'grpc-message': encodeURIComponent(r.message),
    });
    res.end();
    return;
  }
  const [status, code] = CONNECT_CODES[r.code] ?? [400, 'invalid_argument'];
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ code, message: r.message }));
}

/** A Connect unary error (https://connectrpc.com/docs/protocol#error-end-stream). */
function connectError(status: number, code: string, message: string): UniversalServerResponse {
  const body = JSON.stringify({ code, message });
  return {
    status,
    header: new Headers({ 'content-type': 'application/json' }),
    body: (async function* () {
      yield new TextEncoder().encode(body);
    })(),
  };
}

async function readAll(body: AsyncIterable<Uint8Array>, max: number): Promise<Uint8Array | null> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of body) {
    n += c.length;
    if (n > max) return null;
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

const PROTO_TYPE = /^application\/proto$/i;
const GRPC_WEB_BINARY = /^application\/grpc-web(\+proto)?$/i;

/** An INVALID_ARGUMENT (3) or RESOURCE_EXHAUSTED (8) in the request's own protocol. */
function invalid(type: string, message: string, code: 3 | 8 = 3): UniversalServerResponse {
  if (!GRPC_WEB_BINARY.test(type))
    return code === 8
      ? connectError(429, 'resource_exhausted', message)
      : connectError(400, 'invalid_argument', message);
  return {
    status: 200,
    header: new Headers({
      'content-type': type,
      'grpc-status': String(code),
      'grpc-message': encodeURIComponent(message),
    }),
  };
}

function wrap(
  h: UniversalHandler,
  onRefused: (path: string, code: number) => void,
): UniversalHandler {
  const unary = h.method.methodKind === 'unary';
  const refuse = (type: string, message: string, code: 3 | 8 = 3) => {
    onRefused(h.requestPath, code);
    return invalid(type, message, code);
  };
  // Unary requests are read whole (1 MiB at most) and checked before connect-node decodes
  // them, so every mistake of the caller's is INVALID_ARGUMENT naming what is wrong.
  const checked = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const type = req.header.get('content-type') ?? '';
    if (unary && req.method === 'GET') {
      const q = new URL(req.url, 'http://x').searchParams;
      if (q.get('encoding') === 'json') {
        const raw = q.get('message') ?? '';
        const bytes = q.get('base64') === '1' ? Buffer.from(raw, 'base64url') : Buffer.from(raw);
        const problem = jsonBodyProblem(h.method.input, bytes);
        if (problem) return refuse(type, problem);
      }
      return h(req);
    }
    const json = JSON_TYPE.test(type);
    const binary = PROTO_TYPE.test(type) || GRPC_WEB_BINARY.test(type);
    if (!unary || req.method !== 'POST' || !(json || binary)) return h(req);
    const bytes = await readAll(req.body as AsyncIterable<Uint8Array>, MAX_REQUEST_BYTES);
    if (bytes === null) {
      onRefused(h.requestPath, 8);
      return connectError(429, 'resource_exhausted', 'request: larger than 1 MiB');
    }
    const grpcWeb = GRPC_WEB_BINARY.test(type);
    const encoding = (req.header.get(grpcWeb ? 'grpc-encoding' : 'content-encoding') ?? '')
      .trim()
      .toLowerCase();
    if (json && (encoding === '' || encoding === 'identity')) {
      const problem = jsonBodyProblem(h.method.input, bytes);
      if (problem) return refuse(type, problem);
    } else if (binary) {
      const problem = binaryBodyProblem(h.method.input, bytes, encoding, grpcWeb);
      if (problem) return refuse(type, problem.message, problem.code);
    }
    return h({
      ...req,
      body: (async function* () {
        yield bytes;
      })(),
    });
  };
  const wrapped = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const type = req.header.get('content-type') ?? '';
    if (GRPC_WEB_TEXT.test(type)) {
      const header = new Headers(req.header);
      header.set('content-type', 'application/grpc-web+proto');
      const res = await checked({ ...req, header, body: base64Decoded(req.body as never) });
      const out = new Headers(res.header);
      out.set('content-type', 'application/grpc-web-text+proto');
      out.delete('content-length');
      return { ...res, header: out, body: res.body && base64Encoded(res.body) };
    }
    return checked(req);
  };
  return Object.assign(wrapped, {
    requestPath: h.requestPath,
    method: h.method,
    service: h.service,
    protocolNames: h.protocolNames,
    allowedMethods: h.allowedMethods,
    supportedContentType: h.supportedContentType,
  });
}
