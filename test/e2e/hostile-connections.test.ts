import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect as tcpConnect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import type { ConnectionLimits } from '../../src/transport/limits.js';
import { startTestServer, type TestServer } from '../support/server.js';

// Limits that hold before any key is checked: every connection that says nothing, stalls or
// hoards is closed on time, and a legitimate caller keeps getting answers meanwhile. The
// limits are small here so the test is quick; their defaults are in src/transport/limits.ts.

const limits: ConnectionLimits = {
  handshakeTimeoutMs: 400,
  idleTimeoutMs: 800,
  maxConnections: 60,
  http2MaxStreams: 8,
  http2MaxSessionMemoryMb: 10,
  http1HeadersTimeoutMs: 400,
  http1RequestTimeoutMs: 600,
};

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ limits });
  await s.connect.admin.setQuota({
    subject: 'legit',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 1_000_000n,
  });
});
afterAll(() => s.close());

const open = (): Promise<Socket> =>
  new Promise((ok, fail) => {
    const c = tcpConnect(s.port, '127.0.0.1', () => ok(c));
    c.on('error', fail);
  });

/** Milliseconds until the server closes the socket (or the bound passes: Infinity). */
const closedWithin = (c: Socket, boundMs: number): Promise<number> => {
  const t0 = Date.now();
  return new Promise((ok) => {
    const timer = setTimeout(() => ok(Infinity), boundMs);
    c.once('close', () => {
      clearTimeout(timer);
      ok(Date.now() - t0);
    });
    c.on('error', () => {});
    c.resume();
  });
};

const legitCall = async (): Promise<boolean> =>
  (await s.connect.quota.consume({ subject: 'legit', metric: 'api_calls', amount: 1n })).allowed;

describe('before authentication', () => {
  it('closes a connection that sends a partial HTTP/2 preface, or nothing at all', async () => {
    const partial = await open();
    partial.write('PRI * HTTP/2.0\r\n');
    const silent = await open();
    const [a, b] = await Promise.all([closedWithin(partial, 3_000), closedWithin(silent, 3_000)]);
    expect(a).toBeLessThan(limits.handshakeTimeoutMs + 1_000);
    expect(b).toBeLessThan(limits.handshakeTimeoutMs + 1_000);
    expect(await legitCall()).toBe(true);
  });

  it('closes HTTP/2 connections that open no stream, a full preface then silence', async () => {
    const sessions: ClientHttp2Session[] = [];
    for (let i = 0; i < 20; i++) {
      const c = h2connect(`http://127.0.0.1:${s.port}`);
      c.on('error', () => {});
      sessions.push(c);
    }
    const closed = await Promise.all(
      sessions.map(
        (c) =>
          new Promise<number>((ok) => {
            const t0 = Date.now();
            const timer = setTimeout(() => ok(Infinity), 5_000);
            c.once('close', () => (clearTimeout(timer), ok(Date.now() - t0)));
          }),
      ),
    );
    for (const ms of closed) expect(ms).toBeLessThan(limits.idleTimeoutMs + 2_000);
    expect(await legitCall()).toBe(true);
  });

  it('refuses streams past the limit on one HTTP/2 connection, even from a client that ignores it', async () => {
    // Raw frames, because Node's own client would politely queue past the limit: the preface,
    // empty SETTINGS, then HEADERS that open streams and never end them, without a key.
    const c = await open();
    const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      h[4] = flags;
      h.writeUInt32BE(stream, 5);
      return Buffer.concat([h, payload]);
    };
    const literal = (index: number, value: string) =>
      Buffer.concat([Buffer.from([0x00 | index, value.length]), Buffer.from(value)]);
    // HPACK without Huffman: two static-table entries, then literals with indexed names;
    // content-type's index (31) overflows the 4-bit prefix, hence 0x0f 0x10.
    const block = Buffer.concat([
      Buffer.from([0x83, 0x86]), // :method POST, :scheme http
      literal(4, `/${QuotaService.typeName}/Consume`), // :path
      literal(1, `127.0.0.1:${s.port}`), // :authority
      Buffer.from([0x0f, 0x10, 16]),
      Buffer.from('application/json'),
    ]);
    const total = limits.http2MaxStreams * 3;
    let refusedStreams = 0;
    let received = Buffer.alloc(0);
    c.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      while (received.length >= 9) {
        const len = received.readUIntBE(0, 3);
        if (received.length < 9 + len) break;
        const type = received[3]!;
        const code = type === 3 ? received.readUInt32BE(9) : -1;
        if (type === 3 && code === 7) refusedStreams++; // RST_STREAM, REFUSED_STREAM
        received = received.subarray(9 + len);
      }
    });
    c.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    c.write(frame(4, 0, 0, Buffer.alloc(0)));
    for (let i = 0; i < total; i++) c.write(frame(1, 0x4 /* END_HEADERS */, 1 + 2 * i, block));
    for (let i = 0; i < 100 && refusedStreams < total - limits.http2MaxStreams; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(refusedStreams).toBeGreaterThanOrEqual(total - limits.http2MaxStreams);
    c.destroy();
    expect(await legitCall()).toBe(true);
  });

  it('times out HTTP/1.1 requests whose headers or body stall', async () => {
    const slowHeaders = await open();
    slowHeaders.write('POST /quota.v1.QuotaService/Consume HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const slowBody = await open();
    slowBody.write(
      'POST /quota.v1.QuotaService/Consume HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        'content-type: application/json\r\ncontent-length: 1048576\r\n\r\n{"subject":',
    );
    const [a, b] = await Promise.all([
      closedWithin(slowHeaders, 5_000),
      closedWithin(slowBody, 5_000),
    ]);
    expect(a).toBeLessThan(limits.http1HeadersTimeoutMs + 1_000);
    expect(b).toBeLessThan(limits.http1RequestTimeoutMs + 1_000);
    expect(await legitCall()).toBe(true);
  });

  it('closes connections past the per-process limit at once, and serves again when they go', async () => {
    const hoard = await Promise.all(Array.from({ length: limits.maxConnections + 10 }, open));
    const closedAtOnce = await Promise.all(hoard.map((c) => closedWithin(c, 200)));
    expect(closedAtOnce.filter((ms) => ms < 200).length).toBeGreaterThanOrEqual(10);
    for (const c of hoard) c.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect(await legitCall()).toBe(true);
  });
});
