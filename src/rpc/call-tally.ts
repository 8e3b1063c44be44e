import type { Counter, Gauge } from 'prom-client';

type Transport = 'grpc' | 'connect';

/** One method on one transport: calls in flight, and finished calls by status code not yet reported. */
interface Meter {
  inFlight: number;
  /** Finished calls by gRPC status code (0–16 as an index, others in `other`) since the last scrape. */
  finished: number[];
  other: Map<number, number>;
}

// Plain gRPC status codes: OK (0) to UNAUTHENTICATED (16).
const CODES = 17;

/**
 * The in-flight gauge and the finished-calls counter of every RPC, counted in plain numbers and
 * handed to prom-client when it is scraped. Updating prom-client on every call built a label
 * key string (and checked the labels) three times per call, a few per cent of the service's
 * CPU per Consume (docs/benchmarks.md, seventh round); here a call costs a map lookup and two
 * additions. Scrapes read exact totals: the counter is brought up to date before it is read.
 */
export class CallTally {
  // By method, then transport: no string is built per call to find the meter.
  private readonly meters = new Map<string, Partial<Record<Transport, Meter>>>();

  started(method: string, transport: Transport): void {
    this.meter(method, transport).inFlight++;
  }

  finished(method: string, transport: Transport, code: number): void {
    const m = this.meter(method, transport);
    m.inFlight--;
    if (Number.isInteger(code) && code >= 0 && code < CODES) m.finished[code]!++;
    else m.other.set(code, (m.other.get(code) ?? 0) + 1);
  }

  /** Sets the gauge to the calls in flight now (prom-client's collect hook). */
  reportInFlight(gauge: Gauge<'method' | 'transport'>): void {
    for (const [method, byTransport] of this.meters) {
      for (const [transport, m] of Object.entries(byTransport)) {
        gauge.set({ method, transport }, m.inFlight);
      }
    }
  }

  /** Adds the calls finished since the last report to the counter (prom-client's collect hook). */
  reportFinished(
    counter: Counter<'method' | 'transport' | 'code'>,
    codeName: (code: number) => string,
  ): void {
    for (const [method, byTransport] of this.meters) {
      for (const [transport, m] of Object.entries(byTransport)) {
        m.finished.forEach((n, code) => {
          if (n === 0) return;
          counter.inc({ method, transport, code: codeName(code) }, n);
          m.finished[code] = 0;
        });
        for (const [code, n] of m.other)
          counter.inc({ method, transport, code: codeName(code) }, n);
        m.other.clear();
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
    });
  }
}
