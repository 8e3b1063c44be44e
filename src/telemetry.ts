/** Whether any standard variable asks for traces to be exported. */
export function tracingRequested(env: NodeJS.ProcessEnv): boolean {
  if (env.OTEL_SDK_DISABLED === 'true') return false;
  return Boolean(
    env.OTEL_EXPORTER_OTLP_ENDPOINT ||
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ||
    (env.OTEL_TRACES_EXPORTER && env.OTEL_TRACES_EXPORTER !== 'none'),
  );
}

/**
 * Starts OpenTelemetry tracing, configured only by the standard OTEL_* variables, or does
 * nothing when none asks for it. Must run before `pg` is loaded so its queries become spans.
 * An unreachable collector costs dropped spans and a diagnostic, never a crash.
 * Metrics stay on Prometheus and logs on stdout unless OTEL_METRICS_EXPORTER /
 * OTEL_LOGS_EXPORTER say otherwise.
 *
 * The SDK is loaded only when tracing is asked for: it brings every exporter it knows of, each
 * with its own copies of the OpenTelemetry core, which cost the process 35–50 MB of memory
 * and a slower start that nobody without a collector needs.
 */
export async function startTelemetry(
  env: NodeJS.ProcessEnv = process.env,
): Promise<(() => Promise<void>) | null> {
  if (!tracingRequested(env)) return null;
  const [{ NodeSDK }, { PgInstrumentation }] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/instrumentation-pg'),
  ]);
  env.OTEL_METRICS_EXPORTER ??= 'none';
  env.OTEL_LOGS_EXPORTER ??= 'none';
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME || 'quota-ledger',
    instrumentations: [new PgInstrumentation({ enhancedDatabaseReporting: false })],
  });
  sdk.start();
  return () => sdk.shutdown();
}
