import { Writable } from 'node:stream';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Tracing must be in place before `pg` is loaded, as src/main.ts does: so the SDK starts
// here and everything touching the database is imported afterwards.
const spans = new InMemorySpanExporter();
const sdk = new NodeSDK({
  serviceName: 'quota-ledger-test',
  spanProcessors: [new SimpleSpanProcessor(spans)],
  instrumentations: [new PgInstrumentation()],
});
sdk.start();

const { startTestServer } = await import('../support/server.js');
const { createLogger } = await import('../../src/logger.js');
const { QuotaService } = await import('../../src/gen/quota/v1/quota_service_pb.js');
const { Period } = await import('../../src/gen/quota/v1/types_pb.js');

const lines: Record<string, unknown>[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    for (const l of chunk.toString().split('\n').filter(Boolean))
      lines.push(JSON.parse(l) as Record<string, unknown>);
    cb();
  },
});

let s: Awaited<ReturnType<typeof startTestServer>>;
beforeAll(async () => {
  s = await startTestServer({ logger: createLogger('debug', sink), tracing: true });
  await s.connect.admin.setQuota({
    subject: 'acme',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 5n,
  });
});
afterAll(async () => {
  await s.close();
  await sdk.shutdown();
});

describe('tracing', () => {
  it('makes a server span per call with RPC attributes and Postgres spans beneath it', async () => {
    spans.reset();
    await s.grpc.call(QuotaService, QuotaService.method.consume, {
      subject: 'acme',
      metric: 'api_calls',
      amount: 1n,
    });
    const finished = spans.getFinishedSpans();
    const server = finished.find((x) => x.name === 'quota.v1.QuotaService/Consume');
    expect(server).toBeDefined();
    expect(server!.kind).toBe(1); // SpanKind.SERVER
    expect(server!.attributes).toMatchObject({
      'rpc.system': 'grpc',
      'rpc.service': 'quota.v1.QuotaService',
      'rpc.method': 'Consume',
      'rpc.grpc.status_code': 0,
    });
    const { traceId, spanId } = server!.spanContext();
    const pgSpans = finished.filter(
      (x) => x.name.startsWith('pg.query') && x.spanContext().traceId === traceId,
    );
    // The state read and the write (a lone call is a group commit of one).
    expect(pgSpans.length).toBeGreaterThanOrEqual(2);
    expect(pgSpans.some((x) => x.parentSpanContext?.spanId === spanId)).toBe(true);
    expect(pgSpans.every((x) => x.attributes['db.system.name'] === 'postgresql')).toBe(true);
  });

  it("continues the caller's trace and names Connect calls too", async () => {
    spans.reset();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const res = await fetch(`${s.baseUrl}/quota.v1.QuotaService/GetQuota`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
      },
      body: JSON.stringify({ subject: 'acme' }),
    });
    expect(res.status).toBe(200);
    const server = spans
      .getFinishedSpans()
      .find((x) => x.name === 'quota.v1.QuotaService/GetQuota');
    expect(server!.spanContext().traceId).toBe(traceId);
    expect(server!.attributes['rpc.system']).toBe('connect_rpc');
  });

  it('puts trace and span ids in the log line of each call, and no subject', async () => {
    spans.reset();
    lines.length = 0;
    await s.connect.quota
      .consume({ subject: 'acme-secret-subject', metric: 'api_calls', amount: 1n })
      .catch(() => {});
    const server = spans
      .getFinishedSpans()
      .find((x) => x.name === 'quota.v1.QuotaService/Consume')!;
    const call = lines.find(
      (l) => l.msg === 'call' && l.method === 'quota.v1.QuotaService/Consume',
    );
    expect(call).toMatchObject({
      trace_id: server.spanContext().traceId,
      span_id: server.spanContext().spanId,
      code: 'NOT_FOUND',
    });
    expect(JSON.stringify(lines)).not.toContain('acme-secret-subject');
  });

  it('starts no trace for readiness probes and metric scrapes', async () => {
    spans.reset();
    await new Promise((r) => setTimeout(r, 600)); // past the half second pings are shared for
    let pinged = 0;
    s.database.db.on('acquire', () => pinged++);
    expect(await s.server.readiness.check()).toBe(true);
    expect((await fetch(`${s.baseUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${s.baseUrl}/metrics`)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2_200)); // and one timed readiness ping
    expect(pinged).toBeGreaterThanOrEqual(2); // the database really was asked
    expect(spans.getFinishedSpans().map((x) => x.name)).toEqual([]);
  });
});
