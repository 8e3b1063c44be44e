import { ScalarType } from '@bufbuild/protobuf';

// The protobuf wire format's building blocks for binary-encode.ts: a buffer with a cursor,
// varints, and how each scalar type is sized and written.

export const VARINT = 0;
export const I64 = 1;
export const LEN = 2;
export const I32 = 5;

/** The bytes being written, with a cursor. */
export class Out {
  pos = 0;
  private dataView: DataView | null = null;
  constructor(readonly buf: Buffer) {}
  /** For fixed-width numbers; made on first use (most answers have none). */
  get view(): DataView {
    return (this.dataView ??= new DataView(
      this.buf.buffer,
      this.buf.byteOffset,
      this.buf.byteLength,
    ));
  }
  varint32(n: number): void {
    // n is non-negative and below 2^32 here; larger and negative values go through varint64.
    while (n > 0x7f) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
  }
  varint64(n: bigint): void {
    // Most 64-bit values (counts, amounts, seconds) fit a double exactly: no BigInt arithmetic,
    // which allocates on every step.
    if (n >= 0n && n <= MAX_SAFE) {
      let x = Number(n);
      // Seven bits at a time in floating point down to 32 bits, then in integer arithmetic.
      while (x > 0xffffffff) {
        this.buf[this.pos++] = (x % 0x80) | 0x80;
        x = Math.floor(x / 0x80);
      }
      this.varint32(x);
      return;
    }
    let v = BigInt.asUintN(64, n);
    while (v > 0x7fn) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export const varint32Size = (n: number): number =>
  n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;

function varint64Size(n: bigint): number {
  if (n >= 0n && n <= MAX_SAFE) {
    let x = Number(n);
    let size = 0;
    while (x > 0xffffffff) {
      x = Math.floor(x / 0x80);
      size++;
    }
    return size + varint32Size(x);
  }
  let v = BigInt.asUintN(64, n);
  let size = 1;
  while (v > 0x7fn) {
    v >>= 7n;
    size++;
  }
  return size;
}

/** The UTF-8 length of `s`, counted by hand while it is ASCII. */
function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, 'utf8');
  }
  return s.length;
}

const int64 = (v: unknown): bigint => (typeof v === 'bigint' ? v : BigInt(v as string));

/** How one scalar type is sized and written (its wire type, and its value without a tag). */
export interface ScalarCodec {
  wire: number;
  size(v: unknown): number;
  write(o: Out, v: unknown): void;
  isZero(v: unknown): boolean;
}

const numberZero = (v: unknown) => v === 0;
// -0 is not the zero value: it is written.
const floatZero = (v: unknown) => Object.is(v, 0);
const int64Zero = (v: unknown) => v === 0n || v === '0' || v === 0;

// int32 and enums: negative values take ten bytes, as the 64-bit two's complement.
export const int32: ScalarCodec = {
  wire: VARINT,
  size: (v) => ((v as number) >= 0 ? varint32Size(v as number) : 10),
  write: (o, v) => ((v as number) >= 0 ? o.varint32(v as number) : o.varint64(BigInt(v as number))),
  isZero: numberZero,
};

/** A fixed-width type: `bytes` little-endian bytes, written by `put` at the cursor. */
const fixed = (
  bytes: 4 | 8,
  put: (view: DataView, at: number, v: unknown) => void,
  isZero: (v: unknown) => boolean,
): ScalarCodec => ({
  wire: bytes === 4 ? I32 : I64,
  size: () => bytes,
  write: (o, v) => {
    put(o.view, o.pos, v);
    o.pos += bytes;
  },
  isZero,
});

export const SCALARS: Record<ScalarType, ScalarCodec> = {
  [ScalarType.INT32]: int32,
  [ScalarType.UINT32]: {
    wire: VARINT,
    size: (v) => varint32Size(v as number),
    write: (o, v) => o.varint32(v as number),
    isZero: numberZero,
  },
  [ScalarType.SINT32]: {
    wire: VARINT,
    size: (v) => varint32Size((((v as number) << 1) ^ ((v as number) >> 31)) >>> 0),
    write: (o, v) => o.varint32((((v as number) << 1) ^ ((v as number) >> 31)) >>> 0),
    isZero: numberZero,
  },
  [ScalarType.INT64]: {
    wire: VARINT,
    size: (v) => varint64Size(int64(v)),
    write: (o, v) => o.varint64(int64(v)),
    isZero: int64Zero,
  },
  [ScalarType.UINT64]: {
    wire: VARINT,
    size: (v) => varint64Size(int64(v)),
    write: (o, v) => o.varint64(int64(v)),
    isZero: int64Zero,
  },
  [ScalarType.SINT64]: {
    wire: VARINT,
    size: (v) => varint64Size((int64(v) << 1n) ^ (int64(v) >> 63n)),
    write: (o, v) => o.varint64((int64(v) << 1n) ^ (int64(v) >> 63n)),
    isZero: int64Zero,
  },
  [ScalarType.BOOL]: {
    wire: VARINT,
    size: () => 1,
    write: (o, v) => void (o.buf[o.pos++] = v ? 1 : 0),
    isZero: (v) => v === false,
  },
  [ScalarType.FIXED32]: fixed(4, (d, at, v) => d.setUint32(at, v as number, true), numberZero),
  [ScalarType.SFIXED32]: fixed(4, (d, at, v) => d.setInt32(at, v as number, true), numberZero),
  [ScalarType.FLOAT]: fixed(4, (d, at, v) => d.setFloat32(at, v as number, true), floatZero),
  [ScalarType.FIXED64]: fixed(
    8,
    (d, at, v) => d.setBigUint64(at, BigInt.asUintN(64, int64(v)), true),
    int64Zero,
  ),
  [ScalarType.SFIXED64]: fixed(
    8,
    (d, at, v) => d.setBigInt64(at, BigInt.asIntN(64, int64(v)), true),
    int64Zero,
  ),
  [ScalarType.DOUBLE]: fixed(8, (d, at, v) => d.setFloat64(at, v as number, true), floatZero),
  [ScalarType.STRING]: {
    wire: LEN,
    size: (v) => {
      const n = utf8Length(v as string);
      return varint32Size(n) + n;
    },
    write: (o, v) => {
      const str = v as string;
      const n = utf8Length(str);
      o.varint32(n);
      if (n === str.length) {
        // ASCII (any other character takes more than one byte): copied by hand, which for
        // the short names of our answers beats a call into the UTF-8 encoder.
        for (let i = 0; i < n; i++) o.buf[o.pos + i] = str.charCodeAt(i);
        o.pos += n;
      } else {
        o.pos += o.buf.write(str, o.pos, n, 'utf8');
      }
    },
    isZero: (v) => v === '',
  },
  [ScalarType.BYTES]: {
    wire: LEN,
    size: (v) => varint32Size((v as Uint8Array).length) + (v as Uint8Array).length,
    write: (o, v) => {
      o.varint32((v as Uint8Array).length);
      o.buf.set(v as Uint8Array, o.pos);
      o.pos += (v as Uint8Array).length;
    },
    isZero: (v) => (v as Uint8Array).length === 0,
  },
};

/** A map key as the message holds it (a property name) converted to its type. */
export function mapKey(key: string, type: ScalarType): unknown {
  switch (type) {
    case ScalarType.BOOL:
      return key === 'true';
    case ScalarType.STRING:
      return key;
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return BigInt(key);
    default:
      return Number(key);
  }
}
