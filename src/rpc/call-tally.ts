import type { Counter, Gauge } from 'prom-client';

/** One series of a histogram, as prom-client's registry formats it. */
export interface HistogramValue {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

type Transport = 'grpc' | 'connect';

/** One method on one transport. */
interface Meter {
  inFlight: number;
  /** Finished calls by gRPC status code (0–16 as an index, others in `other`) since the last scrape. */
  finished: number[];
  other: Map<number, number>;
  /** Finished calls by duration bucket (the last one is +Inf), since the start; not cumulative. */
  buckets: number[];
  seconds: number;
  count: number;
}

// Plain gRPC status codes: OK (0) to UNAUTHENTICATED (16).
const CODES = 17;

/**
 * The in-flight gauge, the finished-calls counter and the duration histogram of every RPC,
 * counted in plain numbers and handed to prom-client when it is scraped. prom-client builds a
 * label key string and checks the labels on every update; at three updates a call that was a
 * few per cent of the service's CPU per Consume (docs/benchmarks.md, seventh and eighth
 * rounds). Here a call costs a map lookup and a few additions, and scrapes read exact totals.
 */
export class CallTally {
  // By method, then transport: no string is built per call to find the meter.
  private readonly meters = new Map<string, Partial<Record<Transport, Meter>>>();

  /** `bounds`: the histogram's upper bounds in seconds, ascending. */
  constructor(readonly bounds: readonly number[]) {}

  started(method: string, transport: Transport): void {
    this.meter(method, transport).inFlight++;
  }

  finished(method: string, transport: Transport, code: number, seconds: number): void {
    const m = this.meter(method, transport);
    m.inFlight--;
    if (Number.isInteger(code) && code >= 0 && code < CODES) m.finished[code]!++;
    else m.other.set(code, (m.other.get(code) ?? 0) + 1);
    let b = 0;
    while (b < this.bounds.length && seconds > this.bounds[b]!) b++;
    m.buckets[b]!++;
    m.seconds += seconds;
    m.count++;
  }

  /** Sets the gauge to the calls in flight now (prom-client's collect hook). */
  reportInFlight(gauge: Gauge<'method' | 'transport'>): void {
    for (const [method, transport, m] of this.each()) {
      gauge.set({ method, transport }, m.inFlight);
    }
  }

  /** Adds the calls finished since the last report to the counter (prom-client's collect hook). */
  reportFinished(
    counter: Counter<'method' | 'transport' | 'code'>,
    codeName: (code: number) => string,
  ): void {
    for (const [method, transport, m] of this.each()) {
      m.finished.forEach((n, code) => {
        if (n === 0) return;
        counter.inc({ method, transport, code: codeName(code) }, n);
        m.finished[code] = 0;
      });
      for (const [code, n] of m.other) counter.inc({ method, transport, code: codeName(code) }, n);
      m.other.clear();
    }
  }

  /**
   * The duration histogram as prom-client's own histograms present themselves to a registry:
   * cumulative `_bucket` series by `le`, then `_sum` and `_count`, per method and transport.
   */
  durations(name: string): HistogramValue[] {
    const values: HistogramValue[] = [];
    for (const [method, transport, m] of this.each()) {
      let cumulative = 0;
      m.buckets.forEach((n, b) => {
        cumulative += n;
        const le = b < this.bounds.length ? this.bounds[b]! : '+Inf';
        values.push({
          metricName: `${name}_bucket`,
          labels: { le, method, transport },
          value: cumulative,
        });
      });
      values.push({ metricName: `${name}_sum`, labels: { method, transport }, value: m.seconds });
      values.push({ metricName: `${name}_count`, labels: { method, transport }, value: m.count });
    }
    return values;
  }

  private *each(): Generator<[string, Transport, Meter]> {
    for (const [method, byTransport] of this.meters) {
      for (const [transport, m] of Object.entries(byTransport)) {
        yield [method, transport as Transport, m];
      }
    }
  }

  private meter(method: string, transport: Transport): Meter {
    let byTransport = this.meters.get(method);
    if (!byTransport) this.meters.set(method, (byTransport = {}));
    return (byTransport[transport] ??= {
      inFlight: 0,
      finished: new Array<number>(CODES).fill(0),
      other: new Map(),
      buckets: new Array<number>(this.bounds.length + 1).fill(0),
      seconds: 0,
      count: 0,
    });
  }
}
