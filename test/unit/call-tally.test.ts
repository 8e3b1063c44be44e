import fc from 'fast-check';
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics.js';

const value = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('call metrics counted per call and reported at scrape time', () => {
  it('reports calls in flight and finished calls by code, each call once across scrapes', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const consume = 'quota.v1.QuotaService/Consume';
    for (let i = 0; i < 3; i++) m.calls.started(consume, 'grpc');
    m.calls.started(consume, 'connect');
    m.calls.finished(consume, 'grpc', 0, 0.003);
    m.calls.finished(consume, 'grpc', 3, 0.003);

    let text = await m.registry.metrics();
    expect(value(text, `quota_rpc_in_flight{method="${consume}",transport="grpc"}`)).toBe(1);
    expect(value(text, `quota_rpc_in_flight{method="${consume}",transport="connect"}`)).toBe(1);
    expect(
      value(text, `quota_rpc_requests_total{method="${consume}",transport="grpc",code="OK"}`),
    ).toBe(1);
    expect(
      value(
        text,
        `quota_rpc_requests_total{method="${consume}",transport="grpc",code="INVALID_ARGUMENT"}`,
      ),
    ).toBe(1);

    // A second scrape adds only what finished since the first.
    m.calls.finished(consume, 'grpc', 0, 0.003);
    m.calls.finished(consume, 'connect', 0, 0.003);
    text = await m.registry.metrics();
    expect(value(text, `quota_rpc_in_flight{method="${consume}",transport="grpc"}`)).toBe(0);
    expect(value(text, `quota_rpc_in_flight{method="${consume}",transport="connect"}`)).toBe(0);
    expect(
      value(text, `quota_rpc_requests_total{method="${consume}",transport="grpc",code="OK"}`),
    ).toBe(2);
    expect(
      value(text, `quota_rpc_requests_total{method="${consume}",transport="connect",code="OK"}`),
    ).toBe(1);
    text = await m.registry.metrics();
    expect(
      value(text, `quota_rpc_requests_total{method="${consume}",transport="grpc",code="OK"}`),
    ).toBe(2);
  });

  it('counts a code outside gRPC’s under its number', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.calls.started('m/X', 'connect');
    m.calls.finished('m/X', 'connect', 99, 0.003);
    const text = await m.registry.metrics();
    expect(
      value(text, 'quota_rpc_requests_total{method="m/X",transport="connect",code="99"}'),
    ).toBe(1);
  });

  it('keeps calls refused before any handler ran, counted directly, beside the tallied ones', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.rpcRequests.inc({ method: 'other', transport: 'grpc', code: 'UNIMPLEMENTED' });
    m.calls.started('m/X', 'grpc');
    m.calls.finished('m/X', 'grpc', 0, 0.003);
    const values = (await m.rpcRequests.get()).values;
    expect(values.map((v) => [v.labels.method, v.labels.code, v.value]).sort()).toEqual([
      ['m/X', 'OK', 1],
      ['other', 'UNIMPLEMENTED', 1],
    ]);
  });

  it('exposes the same duration histogram and Consume counts as prom-client fed call by call', async () => {
    // prom-client's own metrics, updated on every call as before, are the oracle.
    const call = fc.record({
      method: fc.constantFrom('quota.v1.QuotaService/Consume', 'quota.v1.QuotaService/GetQuota'),
      transport: fc.constantFrom('grpc' as const, 'connect' as const),
      seconds: fc.oneof(
        fc.double({ min: 0, max: 20, noNaN: true }),
        fc.constantFrom(0.0005, 0.001, 0.25, 10),
      ),
      metric: fc.constantFrom('api_calls', 'tokens', 'a"b\\c'),
      mode: fc.constantFrom('ENFORCE', 'DRY_RUN'),
      outcome: fc.constantFrom('allowed', 'denied', 'replayed'),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(call, { maxLength: 30 }), { maxLength: 3 }),
        async (scrapes) => {
          const m = new Metrics({ defaultMetrics: false });
          const oracle = new Registry();
          const bounds = m.calls.bounds as number[];
          const histogram = new Histogram({
            name: 'quota_rpc_duration_seconds',
            help: 'h',
            labelNames: ['method', 'transport'],
            buckets: bounds,
            registers: [oracle],
          });
          const counter = new Counter({
            name: 'quota_consume_total',
            help: 'h',
            labelNames: ['metric', 'mode', 'outcome'],
            registers: [oracle],
          });
          const series = async (r: Registry, name: string) =>
            (await r.getSingleMetricAsString(name))
              .split('\n')
              .filter((l) => !l.startsWith('#'))
              .map((l) => {
                // Label order is not part of the format: compare label sets.
                const [, metric, labels = '', value] = /^([^{ ]+)(?:\{(.*)\})? (.*)$/.exec(l)!;
                return `${metric}{${labels
                  .split(/,(?=[a-z_]+=)/)
                  .sort()
                  .join(',')}} ${value}`;
              })
              .sort();
          for (const calls of scrapes) {
            for (const c of calls) {
              m.calls.started(c.method, c.transport);
              m.calls.finished(c.method, c.transport, 0, c.seconds);
              histogram.observe({ method: c.method, transport: c.transport }, c.seconds);
              m.consumes.inc(c.metric, c.mode, c.outcome);
              counter.inc({ metric: c.metric, mode: c.mode, outcome: c.outcome });
            }
            for (const name of ['quota_rpc_duration_seconds', 'quota_consume_total']) {
              expect(await series(m.registry, name)).toEqual(await series(oracle, name));
            }
          }
        },
      ),
      { numRuns: 50 },
    );
  });
});
