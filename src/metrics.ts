import { status as GrpcStatus } from '@grpc/grpc-js';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Db, DbObserver } from './ledger/db.js';
import type { GroupCommitObserver } from './batching/group-commit.js';
import { CallTally } from './rpc/call-tally.js';
import { CounterTally } from './rpc/counter-tally.js';

const CODE_NAMES = new Map(
  Object.entries(GrpcStatus)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);
/** The gRPC status name of a code ("OK", "INVALID_ARGUMENT", ...), used for both transports. */
export const codeName = (code: number): string => CODE_NAMES.get(code) ?? String(code);

const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/**
 * The service's Prometheus metrics, on a registry of its own (so several servers in one
 * process, as in tests, never collide). Labels never carry subjects: their number is unbounded.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly resetRuns = new Counter({
    name: 'quota_reset_runs_total',
    help: 'Reset sweep attempts, by trigger and outcome (success or failure).',
    labelNames: ['trigger', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly resetRunDuration = new Histogram({
    name: 'quota_reset_run_duration_seconds',
    help: 'Duration of reset sweep attempts.',
    labelNames: ['trigger'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300],
    registers: [this.registry],
  });

  readonly countersRolled = new Counter({
    name: 'quota_reset_counters_rolled_total',
    help: 'Counters rolled to a new period by reset sweeps (lazy rolls not included).',
    registers: [this.registry],
  });

  readonly lastResetSuccess = new Gauge({
    name: 'quota_reset_last_success_timestamp_seconds',
    help: 'Unix time at which the last successful reset sweep of this replica finished.',
    registers: [this.registry],
  });

  /**
   * Calls started and finished, counted per call and reported by the two metrics below and the
   * duration histogram (registered in the constructor).
   */
  readonly calls = new CallTally(LATENCY_BUCKETS);

  readonly rpcInFlight: Gauge<'method' | 'transport'> = new Gauge({
    name: 'quota_rpc_in_flight',
    help: 'Calls started and not yet answered, by method and transport (a stop drains them).',
    labelNames: ['method', 'transport'] as const,
    registers: [this.registry],
    collect: () => this.calls.reportInFlight(this.rpcInFlight),
  });
  readonly rpcRequests: Counter<'method' | 'transport' | 'code'> = new Counter({
    name: 'quota_rpc_requests_total',
    help: 'Finished RPCs, by method, transport (grpc or connect) and gRPC status code.',
    labelNames: ['method', 'transport', 'code'] as const,
    registers: [this.registry],
    collect: () => this.calls.reportFinished(this.rpcRequests, codeName),
  });

  /** Consume answers, counted per call and added to `consumeAnswers` when it is scraped. */
  readonly consumes = new CounterTally<'metric' | 'mode' | 'outcome'>([
    'metric',
    'mode',
    'outcome',
  ]);

  readonly consumeAnswers: Counter<'metric' | 'mode' | 'outcome'> = new Counter({
    name: 'quota_consume_total',
    help: 'Answered Consume calls by metric, mode and outcome (allowed, denied, replayed).',
    labelNames: ['metric', 'mode', 'outcome'] as const,
    registers: [this.registry],
    collect: () => this.consumes.report(this.consumeAnswers),
  });

  readonly eventsAppended = new Counter({
    name: 'quota_ledger_events_appended_total',
    help: 'Ledger events committed, by type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  readonly keptStates = new Counter({
    name: 'quota_kept_state_total',
    help: 'Consume writes by what became of the states this replica kept: used, stale (something else wrote), reread (a refusal or a key only a read can clear), missing.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly dbTransactions = new Histogram({
    name: 'quota_db_transaction_duration_seconds',
    help: 'Ledger transactions, by outcome: commit, rollback (a refusal) or error (the database failed).',
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly dbReads = new Histogram({
    name: 'quota_db_read_duration_seconds',
    help: 'Plain reads outside transactions, by outcome (ok or error).',
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly dbUp = new Gauge({
    name: 'quota_db_up',
    help: '1 while the last readiness check reached PostgreSQL, else 0.',
    registers: [this.registry],
  });

  readonly groupCommitSize = new Histogram({
    name: 'quota_group_commit_calls',
    help: 'Consume calls per group-commit transaction, by outcome (commit or error).',
    labelNames: ['outcome'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 500],
    registers: [this.registry],
  });

  readonly groupCommitDuration = new Histogram({
    name: 'quota_group_commit_duration_seconds',
    help: 'Time a group-commit transaction took, from its first statement to its commit.',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly reservations = new Counter({
    name: 'quota_reservations_total',
    help: 'Answered Reserve calls by metric and outcome (allowed, denied, replayed).',
    labelNames: ['metric', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly reservationsSettled = new Counter({
    name: 'quota_reservations_settled_total',
    help: 'Holds settled, by outcome: committed, cancelled, or expired (written by the sweep).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly resetLag: Gauge;

  constructor(opts: { resetLagSeconds?: () => Promise<number>; defaultMetrics?: boolean } = {}) {
    const lag = opts.resetLagSeconds;
    this.resetLag = new Gauge({
      name: 'quota_reset_lag_seconds',
      help: 'Age of the oldest counter whose period has ended without its reset event (0 when none).',
      registers: [this.registry],
      async collect() {
        if (!lag) return;
        let timer: NodeJS.Timeout | undefined;
        try {
          const timeout = new Promise<never>((_, fail) => {
            timer = setTimeout(() => fail(new Error('timed out')), 2_000);
          });
          this.set(await Promise.race([lag(), timeout]));
        } catch {
          // Database away or slow: keep the last value rather than fail or stall the scrape.
        } finally {
          clearTimeout(timer);
        }
      },
    });
    // prom-client's Histogram takes one observation at a time, each with its label checks; the
    // calls' durations are tallied by CallTally and handed to the registry as they stand.
    const durationName = 'quota_rpc_duration_seconds';
    const durationHelp = 'RPC handling time, from decoded request to answer.';
    const durations = {
      name: durationName,
      help: durationHelp,
      type: 'histogram',
      aggregator: 'sum',
      get: () =>
        Promise.resolve({
          name: durationName,
          help: durationHelp,
          type: 'histogram',
          aggregator: 'sum',
          values: this.calls.durations(durationName),
        }),
      // Totals since the start, as a histogram's are; a registry reset leaves them.
      reset: () => {},
    };
    this.registry.registerMetric(durations as unknown as Histogram);
    if (opts.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
      // prom-client names three gauges with "_total", which is for counters (promtool says so);
      // nodejs_active_resources and nodejs_active_handles (by type) say the same, well named.
      for (const name of [
        'nodejs_active_handles_total',
        'nodejs_active_requests_total',
        'nodejs_active_resources_total',
      ]) {
        this.registry.removeSingleMetric(name);
      }
    }
  }

  /**
   * Open holds by metric, sampled at scrape time: the amount still held (unexpired) and the
   * number of expired holds the sweep has not settled yet (should stay near zero).
   */
  watchReservations(db: Db, now: () => Date): void {
    const read = () =>
      db.query<{ metric: string; held: string; lapsed: string }>(
        `SELECT metric, coalesce(sum(amount) FILTER (WHERE expires_at > $1), 0)::text AS held,
                count(*) FILTER (WHERE expires_at <= $1)::text AS lapsed
           FROM reservations GROUP BY metric`,
        [now()],
      );
    const sample = async (g: Gauge, pick: (r: { held: string; lapsed: string }) => string) => {
      try {
        const rows = (await read()).rows;
        g.reset();
        for (const r of rows) g.set({ metric: r.metric }, Number(pick(r)));
      } catch {
        // Database away: keep the last value rather than fail the scrape.
      }
    };
    new Gauge({
      name: 'quota_reserved_amount',
      help: 'Amount held by open, unexpired reservations, by metric.',
      labelNames: ['metric'] as const,
      registers: [this.registry],
      async collect() {
        await sample(this, (r) => r.held);
      },
    });
    new Gauge({
      name: 'quota_reservations_expired_unswept',
      help: 'Holds past their expiry whose RESERVATION_EXPIRED event the sweep has not written yet.',
      labelNames: ['metric'] as const,
      registers: [this.registry],
      async collect() {
        await sample(this, (r) => r.lapsed);
      },
    });
  }

  /** The pool's connections, sampled at scrape time. */
  watchPool(db: Db): void {
    new Gauge({
      name: 'quota_db_pool_connections',
      help: 'PostgreSQL pool connections by state: total, idle, and callers waiting for one.',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        this.set({ state: 'total' }, db.totalCount);
        this.set({ state: 'idle' }, db.idleCount);
        this.set({ state: 'waiting' }, db.waitingCount);
      },
    });
  }

  /**
   * How far followers of the ledger feed are held back by transactions still in progress:
   * committed events not yet handed out, and the age of the oldest. Sampled at scrape time.
   */
  watchFeed(heldBack: () => Promise<{ events: number; seconds: number }>): void {
    // Both gauges come from one query per scrape: the first collect starts it, the other shares it.
    let sample: { at: number; value: Promise<{ events: number; seconds: number }> } | undefined;
    const read = async (): Promise<{ events: number; seconds: number } | undefined> => {
      if (!sample || Date.now() - sample.at > 1_000) {
        sample = { at: Date.now(), value: withTimeout(heldBack(), 2_000) };
      }
      // Database away or slow: keep the last values rather than fail or stall the scrape.
      return sample.value.catch(() => undefined);
    };
    new Gauge({
      name: 'quota_feed_held_back_events',
      help: 'Committed ledger events not yet handed to followers: an older transaction is still open.',
      registers: [this.registry],
      async collect() {
        const h = await read();
        if (h) this.set(h.events);
      },
    });
    new Gauge({
      name: 'quota_feed_lag_seconds',
      help: 'Age of the oldest committed ledger event not yet handed to followers (0 when none).',
      registers: [this.registry],
      async collect() {
        const h = await read();
        if (h) this.set(h.seconds);
      },
    });
  }

  get groupCommitObserver(): GroupCommitObserver {
    return {
      flushed: (size, seconds, ok) => {
        this.groupCommitSize.observe({ outcome: ok ? 'commit' : 'error' }, size);
        this.groupCommitDuration.observe(seconds);
      },
    };
  }

  get dbObserver(): DbObserver {
    return {
      transaction: (seconds, outcome) => this.dbTransactions.observe({ outcome }, seconds),
      read: (seconds, ok) => this.dbReads.observe({ outcome: ok ? 'ok' : 'error' }, seconds),
      eventsAppended: (type, n) => this.eventsAppended.inc({ type }, n),
      keptState: (outcome) => this.keptStates.inc({ outcome }),
    };
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, fail) => {
        timer = setTimeout(() => fail(new Error('timed out')), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
