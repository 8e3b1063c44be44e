import {
  create,
  createFileRegistry,
  ScalarType,
  toBinary,
  type DescField,
  type DescMessage,
} from '@bufbuild/protobuf';
import {
  DescriptorProtoSchema,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  GeneratedCodeInfoSchema,
  SourceCodeInfoSchema,
  StructSchema,
} from '@bufbuild/protobuf/wkt';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';
import { binaryEncoder } from '../../src/rpc/binary-encode.js';

/** Every message type our services send or take, and every type inside them. */
function messagesOf(roots: DescMessage[]): DescMessage[] {
  const seen = new Map<string, DescMessage>();
  const visit = (d: DescMessage) => {
    if (seen.has(d.typeName)) return;
    seen.set(d.typeName, d);
    for (const f of d.fields) if (f.message) visit(f.message);
  };
  roots.forEach(visit);
  return [...seen.values()];
}

const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const uint64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });

function scalar(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.DOUBLE:
      return fc.double({ noNaN: true });
    case ScalarType.FLOAT:
      return fc.float({ noNaN: true });
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return fc.oneof(int64, fc.bigInt({ min: -300n, max: 300n }));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(uint64, fc.bigInt({ min: 0n, max: 300n }));
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(int32, fc.integer({ min: -300, max: 300 }));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.integer({ min: 0, max: 2 ** 32 - 1 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.STRING:
      return fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ maxLength: 300 }));
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 200 });
  }
}

const enumValue = (f: { enum: { values: { number: number }[] } }) =>
  fc.oneof(fc.constantFrom(...f.enum.values.map((v) => v.number)), int32);

/** Initialisers of `desc` with every field sometimes set, sometimes not. */
function init(desc: DescMessage, depth: number): fc.Arbitrary<Record<string, unknown>> {
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  // A list item or a map value, by its kind.
  const element = (
    kind: 'scalar' | 'enum' | 'message',
    f: { scalar?: ScalarType; enum?: { values: { number: number }[] }; message?: DescMessage },
  ): fc.Arbitrary<unknown> | null =>
    kind === 'scalar'
      ? scalar(f.scalar!)
      : kind === 'enum'
        ? enumValue({ enum: f.enum! })
        : depth > 0
          ? init(f.message!, depth - 1)
          : null;
  const value = (f: DescField): fc.Arbitrary<unknown> | null => {
    switch (f.fieldKind) {
      case 'scalar':
      case 'enum':
      case 'message':
        return element(f.fieldKind, f);
      case 'list': {
        const item = element(f.listKind, f);
        return item && fc.array(item, { maxLength: 4 });
      }
      case 'map': {
        const v = element(f.mapKind, f);
        // Keys as the message holds them: property names.
        const key = scalar(f.mapKey).map((k) => String(k));
        return v && fc.dictionary(key, v, { maxKeys: 4 });
      }
    }
  };
  for (const f of desc.fields) {
    if (f.oneof) continue;
    const v = value(f);
    if (v) fields[f.localName] = v;
  }
  for (const o of desc.oneofs) {
    const cases = o.fields.flatMap((f) => {
      const v = value(f);
      return v ? [v.map((value) => ({ case: f.localName, value }))] : [];
    });
    if (cases.length) fields[o.localName] = fc.oneof(...cases);
  }
  return fc.record(fields, { requiredKeys: [] });
}

const messages = messagesOf(
  [QuotaService, QuotaAdminService].flatMap((s) => s.methods.flatMap((m) => [m.input, m.output])),
);

describe('binary encoder', () => {
  it.each(messages.map((d) => [d.typeName, d] as const))(
    'writes %s exactly as protobuf-es does',
    (_name, desc) => {
      const encode = binaryEncoder(desc);
      expect(encode).not.toBeNull();
      fc.assert(
        fc.property(init(desc, 2), (i) => {
          const msg = create(desc, i);
          expect(Buffer.from(encode!(msg)).toString('hex')).toBe(
            Buffer.from(toBinary(desc, msg)).toString('hex'),
          );
        }),
        { numRuns: 60 },
      );
    },
  );

  // Every scalar type, singular, repeated (packed) and as map keys and values, in a message
  // made here: our own schemas use only a few of them.
  const allScalars = (() => {
    const types = Object.values(ScalarType).filter((t): t is ScalarType => typeof t === 'number');
    const entry = (name: string, key: ScalarType, value: ScalarType) => ({
      name,
      options: { mapEntry: true },
      field: [
        { name: 'key', number: 1, label: Label.OPTIONAL, type: key as number as Type },
        { name: 'value', number: 2, label: Label.OPTIONAL, type: value as number as Type },
      ],
    });
    const file = create(FileDescriptorProtoSchema, {
      name: 'all.proto',
      package: 't',
      syntax: 'proto3',
      messageType: [
        {
          name: 'All',
          field: [
            ...types.map((t) => ({
              name: `s${t}`,
              number: t as number,
              label: Label.OPTIONAL,
              type: t as number as Type,
            })),
            ...types.map((t) => ({
              name: `r${t}`,
              number: 100 + (t as number),
              label: Label.REPEATED,
              type: t as number as Type,
            })),
            ...[ScalarType.SINT64, ScalarType.BOOL, ScalarType.FIXED32, ScalarType.STRING].map(
              (t, i) => ({
                name: `m${t}`,
                number: 200 + i,
                label: Label.REPEATED,
                type: Type.MESSAGE,
                typeName: `.t.All.M${t}Entry`,
              }),
            ),
          ],
          nestedType: [
            entry(`M${ScalarType.SINT64}Entry`, ScalarType.SINT64, ScalarType.STRING),
            entry(`M${ScalarType.BOOL}Entry`, ScalarType.BOOL, ScalarType.FIXED32),
            entry(`M${ScalarType.FIXED32}Entry`, ScalarType.FIXED32, ScalarType.SFIXED64),
            entry(`M${ScalarType.STRING}Entry`, ScalarType.STRING, ScalarType.DOUBLE),
          ],
        },
      ],
    });
    return createFileRegistry(file, () => undefined).getMessage('t.All')!;
  })();

  it.each([
    ['every scalar type (proto3)', allScalars],
    ['google.protobuf.Struct (maps of messages, oneofs, recursion)', StructSchema],
    [
      'google.protobuf.GeneratedCodeInfo (proto2: explicit presence, packed lists)',
      GeneratedCodeInfoSchema,
    ],
    ['google.protobuf.SourceCodeInfo (proto2: unpacked lists)', SourceCodeInfoSchema],
  ])('writes %s exactly as protobuf-es does', (_name, desc) => {
    const encode = binaryEncoder(desc)!;
    fc.assert(
      fc.property(init(desc, 3), (i) => {
        const msg = create(desc, i);
        expect(Buffer.from(encode(msg)).toString('hex')).toBe(
          Buffer.from(toBinary(desc, msg)).toString('hex'),
        );
      }),
      { numRuns: 200 },
    );
  });

  it('leaves to protobuf-es what it does not support (required fields)', () => {
    expect(binaryEncoder(FileDescriptorProtoSchema)).toBeNull();
    // Types compiled on the way and left unfinished are not kept: DescriptorProto refers to
    // options whose uninterpreted parts have required fields.
    expect(binaryEncoder(DescriptorProtoSchema)).toBeNull();
  });
});
