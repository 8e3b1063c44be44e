/** Reads one request header, case-insensitively, from whichever transport carried the call. */
export type HeaderReader = (name: string) => string | undefined;

/**
 * One header from Node's parsed request headers (HTTP/1.1 or HTTP/2): Node lowercases the
 * names, and a repeated header's first value is the one taken.
 */
export function headerValue(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  name: string,
): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
