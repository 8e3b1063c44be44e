import { createHash } from 'node:crypto';
import { invalid } from '../domain/errors.js';

/**
 * Opaque page tokens: the position to continue after, bound to the filters of the request
 * that produced it, so a token cannot silently be reused with other filters.
 */
const fingerprint = (filters: unknown): string =>
  createHash('sha256').update(JSON.stringify(filters)).digest('base64url').slice(0, 16);

export function encodePageToken(after: unknown, filters: unknown): string {
  return Buffer.from(JSON.stringify({ a: after, f: fingerprint(filters) })).toString('base64url');
}

export function decodePageToken<T>(
  token: string,
  filters: unknown,
  check: (a: unknown) => a is T,
): T | null {
  if (token === '') return null;
  let parsed: { a?: unknown; f?: unknown };
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as typeof parsed;
  } catch {
    throw invalid('page_token', 'is not a token this service issued');
  }
  if (typeof parsed !== 'object' || parsed === null || !check(parsed.a)) {
    throw invalid('page_token', 'is not a token this service issued');
  }
  if (parsed.f !== fingerprint(filters)) {
    throw invalid(
      'page_token',
      'was issued for different filters; repeat the original filters or start over',
    );
  }
  return parsed.a;
}
