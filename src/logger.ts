import { trace } from '@opentelemetry/api';
import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * JSON logs (pino). Every line written inside a traced call carries its trace and span ids,
 * so a log line leads to its trace and back.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'quota-ledger' },
      mixin() {
        const span = trace.getActiveSpan();
        if (!span) return {};
        const { traceId, spanId } = span.spanContext();
        return { trace_id: traceId, span_id: spanId };
      },
    },
    destination,
  );
}

/**
 * An error as it may be logged: what failed and where, without the driver's `detail`,
 * `where` and parameter echoes, which can quote subjects or other caller data.
 */
export function safeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const e = err as Error & { code?: unknown; cause?: unknown };
  return {
    type: e.name,
    message: e.message,
    code: e.code,
    stack: e.stack,
    cause: e.cause === undefined ? undefined : safeError(e.cause),
  };
}
