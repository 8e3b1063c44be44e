import { cors as connectCors } from '@connectrpc/connect';
import type { NodeHandler } from './connect-adapter.js';

/** What browsers may send: Connect's and gRPC-Web's own headers, then ours. */
export const CORS_ALLOW_HEADERS = [
  ...new Set([
    ...connectCors.allowedHeaders.map((h) => h.toLowerCase()),
    'x-api-key',
    'authorization',
    'grpc-timeout',
    'traceparent',
    'tracestate',
  ]),
].join(', ');
/** What browser scripts may read: gRPC-Web's status lives in these headers. */
export const CORS_EXPOSE_HEADERS = connectCors.exposedHeaders
  .map((h) => h.toLowerCase())
  .join(', ');
export const CORS_ALLOW_METHODS = connectCors.allowedMethods.join(', ');

/**
 * QUOTA_CORS_ORIGINS: comma-separated exact origins ("https://app.example.com"), or "*".
 * Returns the origins (empty: CORS off) or an error naming what is wrong.
 */
export function parseCorsOrigins(raw: string | undefined): { origins: string[]; error?: string } {
  const items = (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const o of items) {
    if (o === '*') continue;
    let ok = false;
    try {
      const u = new URL(o);
      ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === o;
    } catch {
      ok = false;
    }
    if (!ok)
      return {
        origins: [],
        error: `QUOTA_CORS_ORIGINS: "${o}" is not an origin (scheme://host[:port], no path or trailing slash) or *`,
      };
  }
  return { origins: items };
}

/**
 * Answers browser preflights and marks the answers to allowed origins. Off (the handler
 * itself) when no origin is configured. An origin that is not listed gets no allow header, so
 * its browser refuses to hand the answer to the page; the request itself is not refused,
 * because a non-browser client sends no Origin and must not care.
 */
export function withCors(origins: string[], next: NodeHandler): NodeHandler {
  if (origins.length === 0) return next;
  const any = origins.includes('*');
  const allowed = new Set(origins);
  return (req, res) => {
    const origin = req.headers.origin;
    const ok = typeof origin === 'string' && (any || allowed.has(origin));
    // Caches must keep answers to different origins apart.
    if (!any) res.setHeader('vary', 'Origin');
    if (ok) res.setHeader('access-control-allow-origin', any ? '*' : origin);
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      if (ok) {
        res.setHeader('access-control-allow-methods', CORS_ALLOW_METHODS);
        res.setHeader('access-control-allow-headers', CORS_ALLOW_HEADERS);
        res.setHeader('access-control-max-age', '7200');
      }
      res.statusCode = 204;
      res.end();
      return;
    }
    if (ok) res.setHeader('access-control-expose-headers', CORS_EXPOSE_HEADERS);
    next(req, res);
  };
}
