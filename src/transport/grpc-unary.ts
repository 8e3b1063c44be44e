import {
  constants,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import { headerValue, type HeaderReader } from '../auth/header-reader.js';
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
 * grpc-message as PROTOCOL-HTTP2.md has it: the UTF-8 bytes, printable ASCII as it is and every
 * other byte (and "%", and the space, which a header value may not end with) as %XX. A lone
 * surrogate is sent as U+FFFD, where encodeURI would throw.
 */
export function grpcMessage(message: string): string {
  if (/^[\x21-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) {
    out += b > 0x20 && b < 0x7f && b !== 0x25 ? String.fromCharCode(b) : `%${HEX[b]}`;
  }
  return out;
}
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).toUpperCase().padStart(2, '0'));

/**
 * The one length-prefixed message of a unary request, as its DATA frames come. A message that
 * came in one frame is kept as that frame (no copy); one in many is copied into a buffer of its
 * own as it comes, so a peer sending one-byte frames holds one buffer, not a million frames
 * each pinning the socket read it came from.
 */
class MessageReader {
  /** Bytes received, prefix included. */
  size = 0;
  /** The message's length from its prefix; -1 until the prefix is in. */
  declared = -1;
  private first: Buffer | null = null;
  private head: Buffer[] = []; // the frames before the prefix was complete
  private body: Buffer | null = null;

  /** Takes a frame; says what is wrong with the request once something is. */
  add(chunk: Buffer, maxBytes: number): 'too large' | 'second message' | null {
    const at = this.size;
    this.size += chunk.length;
    if (this.declared < 0) {
      this.head.push(chunk);
      if (this.size < 5) return null;
      const all = this.head.length === 1 ? chunk : Buffer.concat(this.head);
      this.head = [];
      this.declared = all.readUInt32BE(1);
      if (this.declared > maxBytes) return 'too large';
      if (all === chunk && at === 0) this.first = chunk;
      else this.copy(all, 0);
    } else if (this.first && at > 0) {
      const first = this.first;
      this.first = null;
      this.copy(first, 0);
      this.copy(chunk, at);
    } else {
      this.copy(chunk, at);
    }
    // A second message has begun once a whole prefix follows the first.
    return this.size > 5 + this.declared + 4 ? 'second message' : null;
  }

  /** Once the request has ended: the message's bytes, or what is wrong (none, or more than one). */
  message(): Buffer | 'none' | 'second message' {
    const end = 5 + this.declared;
    if (this.declared < 0 || this.size < end) return 'none';
    if (this.size > end) return 'second message';
    return (this.first ?? this.body!).subarray(5, end);
  }

  /**
   * Copies what falls within the message (prefix included) from `chunk`, received at offset
   * `at`. The buffer grows as bytes come (doubling, up to the message's size): a prefix that
   * announces a megabyte does not get one allocated before it is sent.
   */
  private copy(chunk: Buffer, at: number): void {
    const end = 5 + this.declared;
    if (at >= end) return;
    const upto = Math.min(at + chunk.length, end);
    if (!this.body || this.body.length < upto) {
      const grown = Buffer.allocUnsafe(
        Math.min(end, Math.max(upto, 2 * (this.body?.length ?? 0), 256)),
      );
      this.body?.copy(grown, 0, 0, at);
      this.body = grown;
    }
    chunk.copy(this.body, at, 0, upto - at);
  }

  /** Whether the first byte (the compressed flag) says the message is compressed. */
  compressed(): boolean {
    return (this.first ?? this.body!)[0] !== 0;
  }
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
      { ...STATUS_HEADERS, 'grpc-status': String(code), 'grpc-message': grpcMessage(message) },
      { endStream: true },
    );
    // Answered before the request's end (too large, a bad header, the deadline during the
    // upload): the rest is not wanted, and the stream must not stay open for it. The reset goes
    // out after the status.
    if (!stream.readableEnded) stream.close(constants.NGHTTP2_NO_ERROR);
  };
  stream.on('error', () => {}); // a reset stream; 'close' follows and cancels the call
  stream.once('close', () => {
    if (answered) return;
    finish();
    signal.abort();
  });

  const path = String(headers[':path']);
  const second = () =>
    fail(UNIMPLEMENTED, `Received a second request message for server streaming method ${path}`);
  const reader = new MessageReader();
  stream.on('data', (chunk: Buffer) => {
    if (answered) return;
    const wrong = reader.add(chunk, maxBytes);
    if (wrong === 'too large') {
      fail(
        RESOURCE_EXHAUSTED,
        `Received message larger than max (${reader.declared} vs. ${maxBytes})`,
      );
    } else if (wrong === 'second message') {
      second();
    }
  });
  const header: HeaderReader = (name) => headerValue(headers, name);
  stream.once('end', () => {
    if (answered) return;
    const message = reader.message();
    if (message === 'none') {
      return fail(UNIMPLEMENTED, `Received no request message for server streaming method ${path}`);
    }
    if (message === 'second message') return second();
    if (reader.compressed()) {
      return fail(INTERNAL, 'Received a compressed message without a grpc-encoding');
    }
    let answer: Promise<Uint8Array>;
    try {
      answer = method(message, header, signal);
    } catch (err) {
      answer = Promise.reject(err);
    }
    answer
      .then(
        (bytes) => {
          if (!finish()) return;
          const framed = Buffer.allocUnsafe(5 + bytes.length);
          framed[0] = 0;
          framed.writeUInt32BE(bytes.length, 1);
          framed.set(bytes, 5);
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
      )
      // Nothing above should throw; if it does, the call is reset rather than the process lost.
      .catch(() => stream.close(constants.NGHTTP2_INTERNAL_ERROR));
  });

  // After the listeners: a refusal here must still find the request's body read and dropped.
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
}
