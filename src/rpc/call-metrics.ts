import type { DescService } from '@bufbuild/protobuf';
import type { Logger } from 'pino';
import { safeError } from '../logger.js';
import { codeName, type Metrics } from '../metrics.js';
import { ANONYMOUS } from './context.js';
import type { Authenticator, TransportHooks } from './transport.js';

/**
 * What every call reports, on either transport: the in-flight gauge, the request counter and
 * the duration histogram, an error log for failures of ours, a debug line for the rest.
 * Without `authenticate`, everyone is "anonymous" (auth off).
 */
export function callHooks(
  metrics: Metrics,
  log: Logger,
  authenticate: Authenticator | undefined,
  tracing: boolean,
): TransportHooks {
  return {
    authenticate: authenticate ?? (() => ANONYMOUS),
    tracing,
    onCallStart(method, transport) {
      metrics.calls.started(method, transport);
    },
    onCallEnd(method, transport, code, seconds, failure) {
      metrics.calls.finished(method, transport, code, seconds);
      if (failure?.internal)
        log.error({ err: safeError(failure.internal), method, transport }, 'call failed');
      // Method and outcome only: subjects and keys stay out of the logs.
      log.debug(
        { method, transport, code: codeName(code), ms: Math.round(seconds * 1e4) / 10 },
        'call',
      );
    },
  };
}

/**
 * Counts a call refused before any handler ran like every other call (unknown paths as
 * "other", so a caller cannot mint label values), and logs it at debug.
 */
export function refusalRecorder(
  metrics: Metrics,
  log: Logger,
  services: readonly DescService[],
): (path: string, transport: 'grpc' | 'connect', code: number) => void {
  const methodPaths = new Set(
    services.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)),
  );
  return (path, transport, code) => {
    const method = methodPaths.has(path) ? path.slice(1) : 'other';
    metrics.rpcRequests.inc({ method, transport, code: codeName(code) });
    log.debug({ method, transport, code: codeName(code) }, 'refused before reading the request');
  };
}
