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
    m.calls.finished(consume, 'grpc', 0);
    m.calls.finished(consume, 'grpc', 3);

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
    m.calls.finished(consume, 'grpc', 0);
    m.calls.finished(consume, 'connect', 0);
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
    m.calls.finished('m/X', 'connect', 99);
    const text = await m.registry.metrics();
    expect(
      value(text, 'quota_rpc_requests_total{method="m/X",transport="connect",code="99"}'),
    ).toBe(1);
  });

  it('keeps calls refused before any handler ran, counted directly, beside the tallied ones', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.rpcRequests.inc({ method: 'other', transport: 'grpc', code: 'UNIMPLEMENTED' });
    m.calls.started('m/X', 'grpc');
    m.calls.finished('m/X', 'grpc', 0);
    const values = (await m.rpcRequests.get()).values;
    expect(values.map((v) => [v.labels.method, v.labels.code, v.value]).sort()).toEqual([
      ['m/X', 'OK', 1],
      ['other', 'UNIMPLEMENTED', 1],
    ]);
  });
});
