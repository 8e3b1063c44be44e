import { fromBinary, type DescMessage, type JsonValue } from '@bufbuild/protobuf';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { strictJsonProblem } from '../rpc/strict-json.js';

/** The most a request may hold, before and after decompression. */
export const MAX_REQUEST_BYTES = 1 << 20;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * What is wrong with a unary Connect JSON body, as "field: reason", or null. Invalid UTF-8 is
 * refused and named (a lenient decoder would turn two different subjects into one, both
 * U+FFFD), then proto3 JSON is checked strictly (strict-json.ts). Malformed JSON is left to
 * the decoder, which says so itself.
 */
export function jsonBodyProblem(desc: DescMessage, bytes: Uint8Array): string | null {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    const lenient = parse(new TextDecoder().decode(bytes));
    const at = lenient === undefined ? null : replacedAt(lenient, '');
    return `${at ?? 'request'}: is not valid UTF-8`;
  }
  const json = parse(text);
  return json === undefined ? null : strictJsonProblem(desc, json);
}

function parse(text: string): JsonValue | undefined {
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return undefined;
  }
}

/** The path of the first string holding U+FFFD, where a lenient decoder hid bad bytes. */
function replacedAt(v: JsonValue, path: string): string | null {
  if (typeof v === 'string') return v.includes('\uFFFD') ? path || 'request' : null;
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) {
      const p = replacedAt(x, `${path}[${i}]`);
      if (p) return p;
    }
    return null;
  }
  if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k.includes('\uFFFD')) return path ? `${path}.${k}` : k;
      const p = replacedAt(x, path ? `${path}.${k}` : k);
      if (p) return p;
    }
  }
  return null;
}

function decompress(bytes: Uint8Array, encoding: string): Uint8Array {
  const opts = { maxOutputLength: MAX_REQUEST_BYTES };
  if (encoding === 'gzip') return gunzipSync(bytes, opts);
  if (encoding === 'br') return brotliDecompressSync(bytes, opts);
  if (encoding === '' || encoding === 'identity') return bytes;
  throw new Error(`unsupported encoding "${encoding}"`);
}

/**
 * What is wrong with a unary binary body (Connect proto, or one gRPC-Web envelope), or null:
 * a truncated or corrupt compression, a frame that does not add up, or bytes that are not the
 * method's message. These are the caller's mistakes, so INVALID_ARGUMENT, not INTERNAL.
 */
export function binaryBodyProblem(
  desc: DescMessage,
  bytes: Uint8Array,
  encoding: string,
  grpcWeb: boolean,
): { code: 3 | 8; message: string } | null {
  const invalid = (message: string) => ({ code: 3 as const, message });
  try {
    let message = bytes;
    let enc = encoding;
    if (grpcWeb) {
      if (bytes.length < 5) return invalid('request: a gRPC-Web frame needs a 5-byte header');
      const length = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).readUInt32BE(1);
      if (bytes.length < 5 + length)
        return invalid(
          `request: the gRPC-Web frame says ${length} bytes, ${bytes.length - 5} came`,
        );
      if ((bytes[0]! & 1) === 0) enc = '';
      message = bytes.subarray(5, 5 + length);
    }
    fromBinary(desc, decompress(message, enc));
    return null;
  } catch (err) {
    // A compression bomb stops at the bound instead of filling memory.
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
      return { code: 8, message: 'request: larger than 1 MiB after decompression' };
    const reason = err instanceof Error ? err.message : String(err);
    return invalid(`request: could not be decoded as ${desc.typeName} (${reason})`);
  }
}
