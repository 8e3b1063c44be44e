import type { Metrics } from '../metrics.js';
import type { Readiness } from '../rpc/health.js';
import { untraced } from '../untraced.js';
import type { NodeHandler, NodeRequest, NodeResponse } from './connect-adapter.js';

const sendText = (res: NodeResponse, status: number, body: string): void => {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(body + '\n');
};

/**
 * GET /healthz, /readyz and /metrics, then the console (GET / and /console/...) when it is on;
 * 404 for anything else that is not an RPC.
 */
export function httpEndpoints(
  metrics: Metrics,
  readiness: Readiness,
  console: ((req: NodeRequest, res: NodeResponse) => boolean) | null = null,
): NodeHandler {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') return sendText(res, 200, 'ok');
    if (req.method === 'GET' && path === '/metrics') {
      // A scrape queries the database (reset lag): housekeeping, not a trace of its own.
      void untraced(() => metrics.registry.metrics()).then((body) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(body);
      });
      return;
    }
    if (req.method === 'GET' && path === '/readyz') {
      void readiness
        .check()
        .then((ok) => sendText(res, ok ? 200 : 503, ok ? 'ready' : 'not ready'));
      return;
    }
    if (console?.(req, res)) return;
    sendText(res, 404, 'not found');
  };
}
