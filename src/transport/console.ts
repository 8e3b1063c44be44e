import { readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeRequest, NodeResponse } from './connect-adapter.js';

/** The committed, built console (console/dist), found from this file in src/ or dist/. */
export const CONSOLE_DIR = fileURLToPath(new URL('../../console/dist/', import.meta.url));

/**
 * Everything the console needs comes from this origin; nothing inline (the bundle sets styles
 * through the CSSOM only, which style-src does not govern), nothing remote, no framing.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "font-src 'none'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

interface Asset {
  body: Buffer;
  type: string;
}

/**
 * Serves GET / (index.html) and GET /console/<file> (console/dist/console/) from files read once:
 * a fixed map, so no request path ever reaches the file system. Returns false for any other
 * request, which is then not the console's.
 */
export function consoleHandler(
  dir: string = CONSOLE_DIR,
): (req: NodeRequest, res: NodeResponse) => boolean {
  const assets = new Map<string, Asset>();
  try {
    for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (!e.isFile()) continue;
      const type = TYPES[extname(e.name)];
      if (!type) continue;
      const path = join(e.parentPath, e.name);
      const name = relative(dir, path).split(sep).join('/');
      assets.set(name === 'index.html' ? '/' : `/${name}`, {
        body: readFileSync(path),
        type,
      });
    }
  } catch {
    // No built console (a checkout without console/dist): every console path is a 404.
  }
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    if (path !== '/' && !path.startsWith('/console/')) return false;
    const asset = assets.get(path);
    const headers = {
      'content-security-policy': CONSOLE_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      // Small files that change with each release: revalidate rather than serve a stale app.
      'cache-control': 'no-cache',
    };
    if (!asset) {
      res.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8' });
      res.end('not found\n');
      return true;
    }
    res.writeHead(200, {
      ...headers,
      'content-type': asset.type,
      'content-length': String(asset.body.length),
    });
    if (req.method === 'HEAD') res.end();
    else res.end(asset.body);
    return true;
  };
}
