import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

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

  readonly resetLag: Gauge;

  constructor(opts: { resetLagSeconds?: () => Promise<number>; defaultMetrics?: boolean } = {}) {
    const lag = opts.resetLagSeconds;
    this.resetLag = new Gauge({
      name: 'quota_reset_lag_seconds',
      help: 'Age of the oldest counter whose period has ended without its reset event (0 when none).',
      registers: [this.registry],
      async collect() {
        if (!lag) return;
        try {
          this.set(await lag());
        } catch {
          // Database away: keep the last value rather than fail the whole scrape.
        }
      },
    });
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }
}
