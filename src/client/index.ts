// The typed client for other TypeScript services. Everything a caller needs comes from here:
// createQuotaClient and the generated messages and enums.
import { randomUUID } from 'node:crypto';
import {
  Code,
  ConnectError,
  createClient,
  type Client,
  type Interceptor,
} from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { QuotaAdminService } from '../gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../gen/quota/v1/quota_service_pb.js';

export * from '../gen/quota/v1/quota_admin_service_pb.js';
export * from '../gen/quota/v1/quota_service_pb.js';
export * from '../gen/quota/v1/types_pb.js';
export { Code, ConnectError };

export interface QuotaClientOptions {
  /** "grpc" (HTTP/2, the cheaper path on the server) or "connect" (HTTP/1.1). Default "grpc". */
  transport?: 'grpc' | 'connect';
  /** Sent as "authorization: Bearer <key>". */
  apiKey?: string;
  /** Deadline of each call, in milliseconds. Default 5000. */
  timeoutMs?: number;
  /** How often a call that failed with UNAVAILABLE is tried again. Default 2. */
  retries?: number;
  /** Delay before the first retry; it doubles each time. Default 50 ms. */
  retryDelayMs?: number;
}

export interface QuotaClient {
  quota: Client<typeof QuotaService>;
  admin: Client<typeof QuotaAdminService>;
}

/**
 * Methods that are safe to send twice: reads, SetQuota (same request, same result), and the
 * three that carry idempotency keys, which the client fills in when the caller left them empty.
 */
const RETRYABLE = new Set([
  'Consume',
  'ConsumeBatch',
  'Refund',
  'GetQuota',
  'SetQuota',
  'ListQuotas',
  'ListEvents',
  'ListResetRuns',
]);

function withKeys(): Interceptor {
  return (next) => async (req) => {
    const name = req.method.name;
    const msg = req.message as { idempotencyKey?: string };
    // One key for all attempts of this call: a retry after a lost answer replays, never doubles.
    // The key goes on a copy: the caller's message may be reused for its next call.
    if (!req.stream && (name === 'Consume' || name === 'Refund') && !msg.idempotencyKey) {
      const message = { ...req.message, idempotencyKey: randomUUID() } as typeof req.message;
      return next({ ...req, message });
    }
    const batch = req.message as { items?: { idempotencyKey: string }[] };
    if (!req.stream && name === 'ConsumeBatch' && batch.items?.some((i) => !i.idempotencyKey)) {
      const items = batch.items.map((i) =>
        i.idempotencyKey ? i : { ...i, idempotencyKey: randomUUID() },
      );
      return next({ ...req, message: { ...req.message, items } as typeof req.message });
    }
    return next(req);
  };
}

function withRetries(retries: number, delayMs: number): Interceptor {
  return (next) => async (req) => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await next(req);
      } catch (err) {
        const again =
          attempt < retries &&
          RETRYABLE.has(req.method.name) &&
          err instanceof ConnectError &&
          err.code === Code.Unavailable &&
          !req.signal.aborted;
        if (!again) throw err;
        await new Promise((r) => setTimeout(r, delayMs * 2 ** attempt));
      }
    }
  };
}

function withApiKey(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set('authorization', `Bearer ${key}`);
    return next(req);
  };
}

/** A client for the service at `url` (e.g. "http://127.0.0.1:50051"). */
export function createQuotaClient(url: string, options: QuotaClientOptions = {}): QuotaClient {
  const interceptors = [
    withKeys(),
    withRetries(options.retries ?? 2, options.retryDelayMs ?? 50),
    ...(options.apiKey ? [withApiKey(options.apiKey)] : []),
  ];
  const common = { baseUrl: url, interceptors, defaultTimeoutMs: options.timeoutMs ?? 5_000 };
  const transport =
    options.transport === 'connect'
      ? createConnectTransport({ ...common, httpVersion: '1.1' })
      : createGrpcTransport({ ...common });
  return {
    quota: createClient(QuotaService, transport),
    admin: createClient(QuotaAdminService, transport),
  };
}
