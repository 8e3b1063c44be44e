import {
  type DescField,
  type DescMessage,
  type Message,
  type MessageShape,
} from '@bufbuild/protobuf';
import { int32, LEN, mapKey, Out, SCALARS, varint32Size } from './binary-writer.js';

/**
 * Protobuf binary encoding of our responses for grpc-js, in two passes: the size of every
 * message first, then one buffer of exactly that size written front to back. protobuf-es's
 * `toBinary` gives the same bytes (test/unit/binary-encode.test.ts checks every message of our
 * services against it), but its writer buffers each sub-message apart and joins the pieces,
 * which made encoding a Consume's answer about 6 µs of a call's CPU (docs/benchmarks.md,
 * eighth round); this takes about a fifth of that.
 *
 * Messages are read as protobuf-es builds them: fields under their local names, 64-bit
 * integers as bigint (or string with jstype = JS_STRING), maps as plain objects, oneofs as
 * `{ case, value }`. Group-encoded (delimited) and proto2 required fields are not supported: a
 * schema that has one is encoded by `toBinary` instead (see `binaryEncoder`).
 */

// google.protobuf.FeatureSet.FieldPresence
const IMPLICIT = 2;
const LEGACY_REQUIRED = 3;

type Fields = Record<string, unknown>;

// The size of each sub-message is computed in the first pass and read back in the second, in
// the same order: `sizes` is that queue, `at` its read position.
interface Cursor {
  at: number;
}

/** How one field, or one whole message type, is sized and written. */
interface Step {
  size(m: Fields, sizes: number[]): number;
  write(o: Out, m: Fields, sizes: number[], c: Cursor): void;
}

const plans = new WeakMap<DescMessage, Step>();
// The types compiled by the binaryEncoder call under way: if one of them cannot be, all are
// forgotten, since the others may refer to its unfinished plan (recursive types).
let compiling: DescMessage[] = [];

const tag = (no: number, wire: number) => no * 8 + wire;
const tagSize = (no: number) => varint32Size(no * 8);

/**
 * The message type's fields in field-number order, as straight-line code generated for the
 * type: each field read under its own constant name, so that V8 sees one property and one
 * shape at each read. Written as closures over a field name instead, every read goes through
 * one shared and megamorphic lookup, which measured as slow as protobuf-es itself. Repeated
 * scalars and maps, rare in our answers, use the closures of compileField.
 */
function compile(desc: DescMessage): Step {
  const known = plans.get(desc);
  if (known) return known;
  // Filled in below; registered first so that recursive types find it.
  const plan: Step = { size: () => 0, write: () => {} };
  plans.set(desc, plan);
  compiling.push(desc);
  // What the generated code refers to (codecs, sub-message steps) is passed in as k0, k1, ...
  const refs: unknown[] = [];
  const ref = (x: unknown) => `k${refs.push(x) - 1}`;
  const size: string[] = [];
  const write: string[] = [];
  for (const field of [...desc.fields].sort((a, b) => a.number - b.number)) {
    const code = fieldCode(field, ref);
    size.push(code.size);
    write.push(code.write);
  }
  // The source is built from descriptors compiled into this program, never from input.
  const make = new Function(
    ...refs.map((_, i) => `k${i}`),
    `return {
      size(m, s) { let n = 0, v; ${size.join('\n')} return n; },
      write(o, m, s, c) { let v; ${write.join('\n')} },
    };`,
  ) as (...refs: unknown[]) => Step;
  Object.assign(plan, make(...refs));
  return plan;
}

/** The generated code that sizes and writes one field of `m` (see compile). */
function fieldCode(field: DescField, ref: (x: unknown) => string): { size: string; write: string } {
  if ('delimitedEncoding' in field && field.delimitedEncoding) {
    throw new Error(`${field.toString()}: group encoding is not supported`);
  }
  if (field.presence === LEGACY_REQUIRED) {
    throw new Error(`${field.toString()}: required fields are not supported`);
  }
  const prop = (name: string) => `m[${JSON.stringify(name)}]`;
  const read = field.oneof
    ? `v = ${prop(field.oneof.localName)}; v = v !== undefined && v.case === ${JSON.stringify(field.localName)} ? v.value : undefined;`
    : `v = ${prop(field.localName)};`;
  const no = field.number;
  if (field.fieldKind === 'scalar' || field.fieldKind === 'enum') {
    const codec = field.fieldKind === 'enum' ? int32 : SCALARS[field.scalar];
    const k = ref(codec);
    // Implicit presence (proto3 without "optional"): the zero value is not written. Explicit:
    // an own property (proto2 keeps its defaults on the prototype), as protobuf-es checks.
    const set = field.oneof
      ? 'v !== undefined'
      : field.presence === IMPLICIT
        ? `!${k}.isZero(v)`
        : `v !== undefined && Object.hasOwn(m, ${JSON.stringify(field.localName)})`;
    return {
      size: `${read} if (${set}) n += ${tagSize(no)} + ${k}.size(v);`,
      write: `${read} if (${set}) { o.varint32(${tag(no, codec.wire)}); ${k}.write(o, v); }`,
    };
  }
  if (field.fieldKind === 'message') {
    const k = ref(subMessage(field.message));
    return {
      size: `${read} if (v !== undefined) n += ${tagSize(no)} + ${k}.size(v, s);`,
      write: `${read} if (v !== undefined) { o.varint32(${tag(no, LEN)}); ${k}.write(o, v, s, c); }`,
    };
  }
  if (field.fieldKind === 'list' && field.listKind === 'message') {
    const k = ref(subMessage(field.message));
    return {
      size: `${read} for (let i = 0; i < v.length; i++) n += ${tagSize(no)} + ${k}.size(v[i], s);`,
      write: `${read} for (let i = 0; i < v.length; i++) { o.varint32(${tag(no, LEN)}); ${k}.write(o, v[i], s, c); }`,
    };
  }
  const k = ref(compileField(field));
  return { size: `n += ${k}.size(m, s);`, write: `${k}.write(o, m, s, c);` };
}

/** A sub-message, length-prefixed: its size is pushed in the first pass, taken in the second. */
function subMessage(desc: DescMessage): Step {
  const plan = compile(desc);
  return {
    size(v, s) {
      const i = s.length;
      s.push(0);
      const n = plan.size(v, s);
      s[i] = n;
      return varint32Size(n) + n;
    },
    write(o, v, s, c) {
      o.varint32(s[c.at++]!);
      plan.write(o, v, s, c);
    },
  };
}

/** Repeated scalars and maps, as closures over the field (see compile for the rest). */
function compileField(field: DescField): Step {
  const no = field.number;
  const name = field.localName;
  switch (field.fieldKind) {
    case 'list': {
      if (field.listKind === 'message')
        throw new Error(`${field.toString()}: generated in fieldCode`);
      const codec = field.listKind === 'enum' ? int32 : SCALARS[field.scalar];
      if (field.packed && codec.wire !== LEN) {
        const t = tag(no, LEN);
        const body = (list: unknown[]) => {
          let n = 0;
          for (const v of list) n += codec.size(v);
          return n;
        };
        return {
          size: (m: Fields) => {
            const list = m[name] as unknown[];
            if (list.length === 0) return 0;
            const n = body(list);
            return tagSize(no) + varint32Size(n) + n;
          },
          write: (o: Out, m: Fields) => {
            const list = m[name] as unknown[];
            if (list.length === 0) return;
            o.varint32(t);
            o.varint32(body(list));
            for (const v of list) codec.write(o, v);
          },
        };
      }
      const t = tag(no, codec.wire);
      return {
        size: (m: Fields) => {
          let n = 0;
          for (const v of m[name] as unknown[]) n += tagSize(no) + codec.size(v);
          return n;
        },
        write: (o: Out, m: Fields) => {
          for (const v of m[name] as unknown[]) {
            o.varint32(t);
            codec.write(o, v);
          }
        },
      };
    }
    case 'map': {
      const key = SCALARS[field.mapKey];
      const keyTag = tag(1, key.wire);
      const keyType = field.mapKey;
      const t = tag(no, LEN);
      // The entry's value (field 2) is written even when it is the zero value, as protobuf-es does.
      let valueSize: (v: unknown, s: number[]) => number;
      let writeValue: (o: Out, v: unknown, s: number[], c: Cursor) => void;
      if (field.mapKind === 'message') {
        const sub = subMessage(field.message);
        valueSize = (v, s) => 1 + sub.size(v as Fields, s);
        writeValue = (o, v, s, c) => {
          o.varint32(tag(2, LEN));
          sub.write(o, v as Fields, s, c);
        };
      } else {
        const codec = field.mapKind === 'enum' ? int32 : SCALARS[field.scalar];
        valueSize = (v) => 1 + codec.size(v);
        writeValue = (o, v) => {
          o.varint32(tag(2, codec.wire));
          codec.write(o, v);
        };
      }
      return {
        size: (m: Fields, s: number[]) => {
          let n = 0;
          for (const [k, v] of Object.entries(m[name] as Fields)) {
            const i = s.length;
            s.push(0);
            const entry = 1 + key.size(mapKey(k, keyType)) + valueSize(v, s);
            s[i] = entry;
            n += tagSize(no) + varint32Size(entry) + entry;
          }
          return n;
        },
        write: (o: Out, m: Fields, s: number[], c: Cursor) => {
          for (const [k, v] of Object.entries(m[name] as Fields)) {
            o.varint32(t);
            o.varint32(s[c.at++]!);
            o.varint32(keyTag);
            key.write(o, mapKey(k, keyType));
            writeValue(o, v, s, c);
          }
        },
      };
    }
    default:
      throw new Error(`${field.toString()}: generated in fieldCode`);
  }
}

/** Unknown fields kept on a message are not written: none of our answers carries any. */
export type Encoder<Desc extends DescMessage> = (message: MessageShape<Desc>) => Buffer;

/**
 * The encoder of one message type, or null if its schema uses something this does not
 * support (the caller then uses protobuf-es's `toBinary`).
 */
export function binaryEncoder<Desc extends DescMessage>(desc: Desc): Encoder<Desc> | null {
  let plan: Step;
  compiling = [];
  try {
    plan = compile(desc);
  } catch {
    for (const d of compiling) plans.delete(d);
    return null;
  } finally {
    compiling = [];
  }
  return (message: Message) => {
    const m = message as unknown as Fields;
    const sizes: number[] = [];
    const out = new Out(Buffer.allocUnsafe(plan.size(m, sizes)));
    plan.write(out, m, sizes, { at: 0 });
    return out.buf;
  };
}
