import { describe, expect, it } from 'vitest';
import { base64Decoded, base64Encoded } from '../../src/transport/base64-stream.js';

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function* chunks(...parts: (string | Uint8Array)[]): AsyncIterable<Uint8Array> {
  for (const p of parts) yield typeof p === 'string' ? Buffer.from(p, 'latin1') : p;
}

describe('gRPC-Web text bodies', () => {
  const payload = Buffer.from(Array.from({ length: 200 }, (_, i) => (i * 37) % 256));

  it('decodes base64 split anywhere, and separately padded pieces one after another', async () => {
    const text = payload.toString('base64');
    for (const cut of [1, 2, 3, 5, 7, 100, text.length - 1]) {
      expect(await collect(base64Decoded(chunks(text.slice(0, cut), text.slice(cut))))).toEqual(
        payload,
      );
    }
    // Two messages each encoded on its own ("...==" then more), as grpc-web clients may send.
    const a = payload.subarray(0, 10);
    const b = payload.subarray(10, 21);
    const joined = a.toString('base64') + b.toString('base64');
    expect(joined.indexOf('=')).toBeLessThan(joined.length - 4); // padding in the middle
    expect(await collect(base64Decoded(chunks(joined.slice(0, 9), joined.slice(9))))).toEqual(
      Buffer.concat([a, b]),
    );
    expect(await collect(base64Decoded(chunks(' ' + joined + '\r\n')))).toEqual(
      Buffer.concat([a, b]),
    );
  });

  it('encodes a stream of chunks as one unbroken base64 text', async () => {
    const out = await collect(
      base64Encoded(chunks(payload.subarray(0, 1), payload.subarray(1, 50), payload.subarray(50))),
    );
    expect(out.toString()).toBe(payload.toString('base64'));
  });
});
