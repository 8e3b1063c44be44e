import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { HeaderReader } from '../auth/header-reader.js';
import { Cancellation } from '../cancellation.js';

/**
 * One unary method as served here: the request's bytes in, the answer's bytes out, or a
 * rejection with a gRPC status (`code`, `message`).
 */
export type UnaryMethod = (
  request: Buffer,
  header: HeaderReader,
  signal: Cancellation,
) => Promise<Uint8Array>;

const INTERNAL = 13;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;
const UNIMPLEMENTED = 12;

// The headers and trailers grpc-js sends, so that a client sees the same answer either way.
const STATUS_HEADERS = { ':status': 200, 'content-type': 'application/grpc+proto' };
const RESPONSE_HEADERS: OutgoingHttpHeaders = {
  ...STATUS_HEADERS,
  'grpc-accept-encoding': 'identity,deflate,gzip',
  'grpc-encoding': 'identity',
};
const OK_TRAILERS: OutgoingHttpHeaders = { 'grpc-status': '0', 'grpc-message': 'OK' };
const MAX_TIMER_MS = 2 ** 31 - 1;
// grpc-js's reading of grpc-timeout: up to 8 digits and a unit.
const TIMEOUT = /(\d{1,8})\s*([HMSmun])/;
const UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1_000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/**
 * Whether a plain gRPC request can be served here rather than by grpc-js: everything but a
 * compressed request body (grpc-js inflates those).
 */
export function servableHere(headers: IncomingHttpHeaders): boolean {
  const encoding = headers['grpc-encoding'];
  return encoding === undefined || encoding === 'identity';
}

/**
 * A unary gRPC call answered straight from its HTTP/2 stream. grpc-js builds, for every call,
 * its metadata object, a stream decoder, a chain of intercepting calls, an event-emitting call
 * object and a writable stream; for a call with one small message each way that was more CPU
 * than our whole handler (docs/benchmarks.md, eleventh round). This does what those do for a
 * unary call and nothing else: reads one length-prefixed message within `maxBytes`, keeps the
 * deadline of grpc-timeout, aborts `signal` when the caller goes away or the deadline passes,
 * and answers with the message and an OK status in trailers, or a trailers-only status.
 */
export function serveUnary(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  method: UnaryMethod,
  maxBytes: number,
): void {
  const signal = new Cancellation();
  let answered = false;
  let timer: NodeJS.Timeout | undefined;
  // False once the call has its status (or the caller is gone): nothing more is sent.
  const finish = (): boolean => {
    if (answered) return false;
    answered = true;
    if (timer) clearTimeout(timer);
    return !stream.destroyed && !stream.closed;
  };
  const fail = (code: number, message: string): void => {
    if (!finish()) return;
    stream.respond(
      { ...STATUS_HEADERS, 'grpc-status': String(code), 'grpc-message': encodeURI(message) },
      { endStream: true },
    );
  };
  stream.on('error', () => {}); // a reset stream; 'close' follows and cancels the call
  stream.once('close', () => {
    if (answered) return;
    answered = true;
    if (timer) clearTimeout(timer);
    signal.abort();
  });

  const timeout = headers['grpc-timeout'];
  if (timeout !== undefined) {
    const m = TIMEOUT.exec(String(timeout));
    if (!m) return fail(INTERNAL, `Invalid grpc-timeout value "${timeout}"`);
    const ms = Math.floor(Number(m[1]) * UNIT_MS[m[2]!]!);
    // Beyond what a timer holds (about 24.8 days; 99999999H is allowed) is as good as none.
    if (ms <= MAX_TIMER_MS) {
      timer = setTimeout(() => {
        fail(DEADLINE_EXCEEDED, 'Deadline exceeded');
        signal.abort();
      }, ms);
    }
  }

  const header: HeaderReader = (name) => {
    const v = headers[name.toLowerCase()];
    return typeof v === 'string' ? v : v?.[0];
  };
  const path = String(headers[':path']);
  // The body as it came, and the first message's length once its prefix is in: nothing is
  // copied until the end, and nothing past the limit or past a second message is kept.
  const chunks: Buffer[] = [];
  let size = 0;
  let declared = -1;
  const whole = (): Buffer => (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
  const second = () =>
    fail(UNIMPLEMENTED, `Received a second request message for server streaming method ${path}`);
  stream.on('data', (chunk: Buffer) => {
    if (answered) return;
    chunks.push(chunk);
    size += chunk.length;
    if (declared < 0 && size >= 5) {
      declared = whole().readUInt32BE(1);
      if (declared > maxBytes) {
        return fail(
          RESOURCE_EXHAUSTED,
          `Received message larger than max (${declared} vs. ${maxBytes})`,
        );
      }
    }
    if (declared >= 0 && size > 5 + declared + 5) second();
  });
  stream.once('end', () => {
    if (answered) return;
    if (declared < 0 || size < 5 + declared) {
      return fail(UNIMPLEMENTED, `Received no request message for server streaming method ${path}`);
    }
    if (size > 5 + declared) return second();
    const body = whole();
    if (body[0] !== 0) {
      return fail(INTERNAL, 'Received a compressed message without a grpc-encoding');
    }
    method(body.subarray(5), header, signal).then(
      (answer) => {
        if (!finish()) return;
        const framed = Buffer.allocUnsafe(5 + answer.length);
        framed[0] = 0;
        framed.writeUInt32BE(answer.length, 1);
        framed.set(answer, 5);
        stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
        stream.end(framed);
      },
      (err: unknown) => {
        // The handlers reject with an RpcFailure; anything else is the answer's encoding.
        const f = err as { code?: unknown; message?: unknown } | null;
        if (typeof f?.code === 'number') fail(f.code, String(f.message));
        else fail(INTERNAL, 'Error serializing response');
      },
    );
  });
}
