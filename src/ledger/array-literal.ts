/**
 * PostgreSQL array literals for the append's column arrays, written directly. Given a JS
 * array, `pg` quotes and escapes every element through two regular-expression replacements
 * and a chain of string concatenations; with a flush carrying thousands of values that was
 * about 4 % of ConsumeBatch's CPU and a tenth of Consume's allocations. Here each element's
 * text is made as the value is collected (numbers and ISO instants bare, since they never
 * need quoting; text escaped only when it holds a quote or a backslash), and the literal is
 * one join.
 */

// Inside a double-quoted element only `"` and `\` need a backslash before them.
const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

/** A text[] element: any string, double-quoted; NULL for null. */
export const textElement = (v: string | null): string =>
  v === null ? 'NULL' : NEEDS_ESCAPE.test(v) ? `"${v.replace(ESCAPED, '\\$&')}"` : `"${v}"`;

/**
 * An int8[] or timestamptz[] element: a value whose text has no character an array literal
 * treats specially (digits and a sign, an ISO instant), as it is; NULL for null.
 */
export const bareElement = <T extends bigint | string>(v: T | null): T | 'NULL' =>
  v === null ? 'NULL' : v;

/** The array literal of elements made by textElement or bareElement. */
export const arrayLiteral = (elements: readonly (string | bigint)[]): string =>
  `{${elements.join(',')}}`;
