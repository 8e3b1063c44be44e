/**
 * gRPC-Web text bodies are base64. A client may send several separately padded pieces one
 * after another, so the decoder decodes up to and including each padded quantum on its own.
 * The encoder carries the bytes that do not fill a 3-byte group to the next chunk and pads
 * only at the end: one unbroken base64 text, which every decoder accepts.
 */
export async function* base64Decoded(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  let pending = '';
  for await (const chunk of body) {
    pending += Buffer.from(chunk).toString('latin1').replace(/\s+/g, '');
    // Every complete quantum now; the rest waits for the next chunk.
    const end = pending.length - (pending.length % 4);
    const ready = pending.slice(0, end);
    pending = pending.slice(end);
    if (ready) yield decodePieces(ready);
  }
  if (pending) yield decodePieces(pending);
}

function decodePieces(text: string): Uint8Array {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i += 4) {
    if (text.slice(i, i + 4).includes('=')) {
      parts.push(Buffer.from(text.slice(start, i + 4), 'base64'));
      start = i + 4;
    }
  }
  if (start < text.length) parts.push(Buffer.from(text.slice(start), 'base64'));
  return Buffer.concat(parts);
}

export async function* base64Encoded(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  let carry = Buffer.alloc(0);
  for await (const chunk of body) {
    const all = Buffer.concat([carry, chunk]);
    const whole = all.length - (all.length % 3);
    carry = all.subarray(whole);
    if (whole > 0) yield Buffer.from(all.subarray(0, whole).toString('base64'));
  }
  if (carry.length > 0) yield Buffer.from(carry.toString('base64'));
}
