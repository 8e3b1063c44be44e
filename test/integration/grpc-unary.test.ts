import { once } from 'node:events';
import { connect, createServer, type ClientHttp2Session, type Http2Server } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cancellation } from '../../src/cancellation.js';
import {
  grpcMessage,
  servableHere,
  serveUnary,
  type UnaryMethod,
} from '../../src/transport/grpc-unary.js';

// Unary gRPC answered straight from the HTTP/2 stream, without grpc-js on the server: what
// clients see (grpc-js's own client, and raw HTTP/2 for what no polite client sends), and
// what the method sees of its caller going away.

const MAX = 1024;
let server: Http2Server;
let port: number;
let client: grpc.Client;
let raw: ClientHttp2Session;
/** The signal of the latest call of /t.T/Wait, and when it was aborted. */
let waiting: { signal: Cancellation; aborted: Promise<void> } | null = null;

const methods: Record<string, UnaryMethod> = {
  // The request's bytes reversed, and the caller's x-who header after them.
  '/t.T/Echo': async (req, header) =>
    Buffer.concat([Buffer.from(req).reverse(), Buffer.from(header('X-Who') ?? '')]),
  '/t.T/Refuse': () => Promise.reject({ code: 5, message: 'subject "ü 100%" not found' }),
  '/t.T/Throw': () => Promise.reject(new Error('a bug')),
  '/t.T/SyncThrow': () => {
    throw new Error('a bug before any promise');
  },
  '/t.T/Odd': () => Promise.reject({ code: 3, message: 'bad \ud83d x \u{1F600} 100% é/;' }),
  '/t.T/Wait': (_req, _header, signal) => {
    const aborted = new Promise<void>((ok) => signal.addEventListener('abort', ok));
    waiting = { signal, aborted };
    return new Promise(() => {}); // answers never: only the caller or the deadline ends it
  },
};

beforeAll(async () => {
  server = createServer();
  server.on('stream', (stream, headers) => {
    const method = methods[String(headers[':path'])];
    if (method) serveUnary(stream, headers, method, MAX);
    else stream.respond({ ':status': 404 }, { endStream: true });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
  client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  raw = connect(`http://127.0.0.1:${port}`);
});
afterAll(() => {
  client.close();
  raw.close();
  server.close();
});

const id = (b: Buffer) => b;
function call(
  path: string,
  body: Buffer,
  options: grpc.CallOptions = {},
  metadata = new grpc.Metadata(),
): { done: Promise<Buffer>; call: grpc.ClientUnaryCall } {
  let c!: grpc.ClientUnaryCall;
  const done = new Promise<Buffer>((ok, fail) => {
    c = client.makeUnaryRequest(path, id, id, body, metadata, options, (err, res) =>
      err ? fail(err) : ok(res!),
    );
  });
  return { done, call: c };
}

/** A unary gRPC call's check of status and, if given, message. */
const fails = (path: string, code: grpc.status, details?: string) =>
  expect(call(path, Buffer.alloc(0)).done).rejects.toMatchObject(
    details === undefined ? { code } : { code, details },
  );

/** A raw HTTP/2 gRPC request, its body still to be sent. */
const open = (path: string, extra: Record<string, string> = {}) =>
  raw.request({
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...extra,
  });

/** A raw HTTP/2 gRPC request: the answer's headers, trailers and body. */
async function rawCall(path: string, body: Buffer, extra: Record<string, string> = {}) {
  const req = open(path, extra);
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  const response = once(req, 'response') as Promise<[Record<string, string>]>;
  let trailers: Record<string, string> = {};
  req.once('trailers', (t: Record<string, string>) => (trailers = t));
  req.end(body);
  const [headers] = await response;
  await once(req, 'close');
  const t = headers['grpc-status'] !== undefined ? headers : trailers;
  return { headers, status: Number(t['grpc-status']), message: t['grpc-message'], body: chunks };
}

const frame = (msg: Buffer, flag = 0) => {
  const b = Buffer.alloc(5 + msg.length);
  b[0] = flag;
  b.writeUInt32BE(msg.length, 1);
  msg.copy(b, 5);
  return b;
};

describe('unary gRPC from the HTTP/2 stream', () => {
  it('answers a grpc-js client, with the request headers readable by name', async () => {
    const md = new grpc.Metadata();
    md.set('x-who', 'acme');
    expect((await call('/t.T/Echo', Buffer.from('abc'), {}, md).done).toString()).toBe('cbaacme');
    expect((await call('/t.T/Echo', Buffer.alloc(0)).done).length).toBe(0); // an empty message
  });

  it('sends the same headers and trailers as grpc-js', async () => {
    const r = await rawCall('/t.T/Echo', frame(Buffer.from('xy')));
    expect(r.headers['content-type']).toBe('application/grpc+proto');
    expect(r.headers['grpc-encoding']).toBe('identity');
    expect(r.status).toBe(0);
    expect(Buffer.concat(r.body)).toEqual(frame(Buffer.from('yx')));
  });

  it("passes a method's status and message on, and a bug as INTERNAL", async () => {
    await fails('/t.T/Refuse', grpc.status.NOT_FOUND, 'subject "ü 100%" not found');
    await fails('/t.T/Throw', grpc.status.INTERNAL);
  });

  it('percent-encodes any status message, half a surrogate pair included, and survives a sync throw', async () => {
    await fails('/t.T/Odd', grpc.status.INVALID_ARGUMENT, 'bad \ufffd x \u{1F600} 100% é/;');
    await fails('/t.T/SyncThrow', grpc.status.INTERNAL);
    expect(grpcMessage('plain: ASCII/as-is')).toBe('plain:%20ASCII/as-is');
    expect(grpcMessage('100%')).toBe('100%25');
  });

  it('reads a message sent one byte per DATA frame', async () => {
    const req = open('/t.T/Echo');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    for (const b of frame(Buffer.from('hello'))) {
      req.write(Buffer.from([b]));
      await new Promise((ok) => setImmediate(ok)); // one frame each
    }
    req.end();
    await once(req, 'close');
    expect(Buffer.concat(chunks)).toEqual(frame(Buffer.from('olleh')));
  });

  it('refuses a message over the limit as soon as its prefix says so, and ends the stream', async () => {
    const req = open('/t.T/Echo');
    req.on('data', () => {});
    req.write(Buffer.from([0, 0, 0, 8, 0, 1, 2, 3])); // announces 2,048 bytes, sends 3, never ends
    const [headers] = (await once(req, 'response')) as [Record<string, string>];
    expect(headers['grpc-status']).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
    await once(req, 'close'); // not left open waiting for the rest
  });

  it('ends a call at its deadline with DEADLINE_EXCEEDED and aborts the method', async () => {
    const c = call('/t.T/Wait', Buffer.alloc(0), { deadline: Date.now() + 150 });
    await expect(c.done).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    await waiting!.aborted;
    expect(waiting!.signal.aborted).toBe(true);
  });

  it('takes a deadline longer than a timer holds as no deadline', async () => {
    // 99999999M is 190 years: as a 32-bit timer it would wrap to a negative delay and fire at once.
    waiting = null;
    const req = open('/t.T/Wait', { 'grpc-timeout': '99999999M' });
    let answered = false;
    req.once('response', () => (answered = true));
    req.end(frame(Buffer.alloc(0)));
    while (!waiting) await new Promise((ok) => setTimeout(ok, 5));
    const w = waiting as { aborted: Promise<void> };
    await new Promise((ok) => setTimeout(ok, 200));
    expect(answered).toBe(false);
    req.close(); // the caller gives up: the method is told
    await w.aborted;
  });

  it('aborts the method when the caller cancels', async () => {
    waiting = null;
    const c = call('/t.T/Wait', Buffer.alloc(0));
    while (!waiting) await new Promise((ok) => setTimeout(ok, 5));
    const w = waiting as { aborted: Promise<void> };
    c.call.cancel();
    await expect(c.done).rejects.toMatchObject({ code: grpc.status.CANCELLED });
    await w.aborted;
  });

  it('refuses what no polite client sends, each with a status that says why', async () => {
    const cases: [Buffer, Record<string, string>, number, RegExp][] = [
      [frame(Buffer.alloc(0)), { 'grpc-timeout': 'soon' }, 13, /Invalid grpc-timeout/],
      [Buffer.from([0, 0, 0, 8, 0]), {}, 8, /larger than max \(2048 vs\. 1024\)/],
      [Buffer.concat([frame(Buffer.from('a')), frame(Buffer.from('b'))]), {}, 12, /second/],
      [Buffer.alloc(0), {}, 12, /no request message/],
      [Buffer.from([0, 0, 0, 0, 9, 1]), {}, 12, /no request message/], // cut short
      [frame(Buffer.from('z'), 1), {}, 13, /compressed/],
    ];
    for (const [body, extra, status, message] of cases) {
      const r = await rawCall('/t.T/Echo', body, extra);
      expect({ status: r.status, message: decodeURI(r.message ?? '') }).toMatchObject({
        status,
        message: expect.stringMatching(message),
      });
    }
  });

  it('leaves compressed requests to grpc-js', () => {
    expect(servableHere({})).toBe(true);
    expect(servableHere({ 'grpc-encoding': 'identity' })).toBe(true);
    expect(servableHere({ 'grpc-encoding': 'gzip' })).toBe(false);
  });
});
