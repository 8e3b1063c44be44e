import {
  ScalarType,
  type DescEnum,
  type DescField,
  type DescMessage,
  type JsonValue,
} from '@bufbuild/protobuf';

/**
 * Finds the first thing in a Connect JSON request that proto3 JSON does not allow and the
 * decoder would report without saying where: an unknown field, or an enum name the enum does
 * not have (protobuf-es names the enum type but not the field). Returns "path: reason", the
 * path in the proto field names callers see in every other error ("items[2].mode"), or null
 * when the decoder may have it. Shapes it does not understand are left to the decoder.
 */
export function strictJsonProblem(desc: DescMessage, json: JsonValue, path = ''): string | null {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return null;
  // Well-known types (Timestamp, Duration, wrappers, Struct) have JSON forms of their own.
  if (desc.typeName.startsWith('google.protobuf.')) return null;
  for (const [key, value] of Object.entries(json)) {
    const field = desc.fields.find((f) => f.jsonName === key || f.name === key);
    const at = path ? `${path}.${key}` : key;
    if (!field) {
      const known = desc.fields.map((f) => f.name).join(', ');
      return `${at}: unknown field of ${desc.typeName} (known: ${known})`;
    }
    const problem = fieldProblem(field, value, path ? `${path}.${field.name}` : field.name);
    if (problem) return problem;
  }
  return null;
}

function enumProblem(e: DescEnum, value: JsonValue, at: string): string | null {
  if (typeof value !== 'string' || e.values.some((v) => v.name === value)) return null;
  const names = e.values.map((v) => v.name).join(', ');
  return `${at}: unknown ${e.typeName} value ${JSON.stringify(value)} (one of ${names})`;
}

const INT64_TYPES = new Set([
  ScalarType.INT64,
  ScalarType.SINT64,
  ScalarType.SFIXED64,
  ScalarType.UINT64,
  ScalarType.FIXED64,
]);

/**
 * 64-bit integers: a canonical decimal string ("1000", "-5"), or a JSON number that is a safe
 * integer. Proto3 JSON parsers differ on "0x3e8", "+1000", " 1000 " and 9007199254740993
 * (which a double cannot hold); an amount must mean one thing, so those are refused.
 */
function int64Problem(value: JsonValue, at: string): string | null {
  if (typeof value === 'string') {
    return /^-?(0|[1-9][0-9]{0,19})$/.test(value)
      ? null
      : `${at}: ${JSON.stringify(value)} is not a decimal integer (write 64-bit integers as "1000")`;
  }
  if (typeof value === 'number' && !Number.isSafeInteger(value))
    return `${at}: ${value} is not an integer a JSON number can hold exactly; send it as a decimal string`;
  return null;
}

function fieldProblem(field: DescField, value: JsonValue, at: string): string | null {
  if (value === null) return null;
  switch (field.fieldKind) {
    case 'scalar':
      return INT64_TYPES.has(field.scalar) ? int64Problem(value, at) : null;
    case 'enum':
      return enumProblem(field.enum, value, at);
    case 'message':
      return strictJsonProblem(field.message, value, at);
    case 'list':
      if (!Array.isArray(value)) return null;
      for (const [i, item] of value.entries()) {
        const p =
          field.listKind === 'enum'
            ? enumProblem(field.enum, item, `${at}[${i}]`)
            : field.listKind === 'message'
              ? strictJsonProblem(field.message, item, `${at}[${i}]`)
              : INT64_TYPES.has(field.scalar)
                ? int64Problem(item, `${at}[${i}]`)
                : null;
        if (p) return p;
      }
      return null;
    case 'map':
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
      for (const [k, item] of Object.entries(value)) {
        const p =
          field.mapKind === 'enum'
            ? enumProblem(field.enum, item, `${at}[${JSON.stringify(k)}]`)
            : field.mapKind === 'message'
              ? strictJsonProblem(field.message, item, `${at}[${JSON.stringify(k)}]`)
              : null;
        if (p) return p;
      }
      return null;
    default:
      return null;
  }
}
