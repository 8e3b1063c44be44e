import { randomUUID } from 'node:crypto';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import schedule, { type Job } from 'node-schedule';
import type { Logger } from 'pino';
import type { Clock } from '../domain/clock.js';
import type { Db, DbObserver, Store } from '../ledger/db.js';
import type { ResetSettings } from './settings.js';
import type { ResetAttempt, ResetTrigger } from '../ledger/reset-runs.js';
import { expireReservations, nextExpiry } from '../ledger/reservation-sweep.js';
import { nextBoundary, oldestDue, sweep } from '../ledger/reset-sweep.js';
import { writeCheckpoint } from '../ledger/ledger-chain.js';
import { safeError } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { reportAttempt, RunLog, skippedAttempt } from './run-log.js';

/** The reset settings (all but `enabled`: a scheduler that exists runs), and what it uses. */
export interface ResetSchedulerOptions extends Omit<ResetSettings, 'enabled'> {
  db: Db;
  /** Told of the sweeps' transactions and appended events (metrics). */
  observer?: DbObserver;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** Longest the boundary timer sleeps before looking again (quotas may change elsewhere). */
  maxTimerMs?: number;
  /** On stop, how long a running sweep may take to finish its batch. */
  stopTimeoutMs?: number;
}

const tracer = trace.getTracer('quota-ledger');

/** What GetResetStatus reports about this replica's scheduler. */
export interface ResetStatus {
  enabled: boolean;
  schedule: string;
  timeZone: string;
  replicaId: string;
  nextRunTime: Date | null;
  runningSince: Date | null;
}

/**
 * Emits the scheduled resets: a timer for the next period boundary of any counter, a
 * safety-net sweep on a cron schedule, a catch-up sweep at start, and sweeps on demand.
 * Runs of one replica never overlap; replicas share the work through the sweep's row locks.
 */
export class ResetScheduler {
  private cronJob: Job | null = null;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ResetAttempt> | null = null;
  private runningSince: Date | null = null;
  private nextTimerAt: Date | null = null;
  private stopping = false;
  private readonly abort = new AbortController();
  private readonly runLog: RunLog;

  private readonly store: Store;

  constructor(private readonly o: ResetSchedulerOptions) {
    this.runLog = new RunLog(o.db);
    this.store = { db: o.db, observer: o.observer };
  }

  /** Arms the cron job and the boundary timer, and starts the catch-up sweep. */
  start(): void {
    const rule = { rule: this.o.cron, tz: this.o.timeZone };
    this.cronJob = schedule.scheduleJob(rule, () => void this.cronTick());
    if (!this.cronJob)
      throw new Error(`QUOTA_RESET_SCHEDULE: "${this.o.cron}" is not a valid cron expression`);
    const next = this.cronJob.nextInvocation();
    this.o.logger.info(
      {
        schedule: this.o.cron,
        timeZone: this.o.timeZone,
        nextCron: next ? new Date(next.getTime()).toISOString() : null,
        replicaId: this.o.replicaId,
      },
      'reset scheduler enabled: boundary timer, cron safety net and a catch-up sweep now',
    );
    void this.trigger('startup');
  }

  /**
   * This replica's scheduler as GetResetStatus shows it (the last run is read elsewhere).
   * Enabled once started; the next run is the earlier of what is armed.
   */
  status(): ResetStatus {
    const enabled = this.cronJob !== null && !this.stopping;
    const cronNext = this.cronJob?.nextInvocation();
    const times = [this.nextTimerAt, cronNext ? new Date(cronNext.getTime()) : null].filter(
      (d): d is Date => d !== null,
    );
    return {
      enabled,
      schedule: this.o.cron,
      timeZone: this.o.timeZone,
      replicaId: this.o.replicaId,
      nextRunTime:
        !this.stopping && times.length
          ? new Date(Math.min(...times.map((d) => d.getTime())))
          : null,
      runningSince: this.running ? this.runningSince : null,
    };
  }

  /** What the cron job does on each tick (tests call it rather than wait for the clock). */
  cronTick(): Promise<void> {
    return this.trigger('cron');
  }

  /**
   * Runs a sweep now unless one is already running on this replica (then that one counts).
   * A cron tick that finds one running is recorded as a skipped run, so it leaves a trace.
   */
  private async trigger(trigger: ResetTrigger): Promise<void> {
    if (this.stopping) return;
    if (this.running) {
      if (trigger === 'cron') await this.recordSkip(trigger);
      return;
    }
    await this.run(trigger).catch((err: unknown) =>
      this.o.logger.error({ err: safeError(err) }, 'reset run crashed'),
    );
  }

  private async recordSkip(trigger: ResetTrigger): Promise<void> {
    const since = this.runningSince?.toISOString() ?? 'earlier';
    const skip = skippedAttempt(trigger, this.o.replicaId, this.o.clock.now(), since);
    this.o.metrics.resetRuns.inc({ trigger, outcome: 'skipped' });
    this.o.logger.warn({ trigger, runningSince: since }, 'reset tick skipped: a sweep is running');
    await this.runLog.record(skip);
  }

  /** Runs a sweep (waiting for one in progress first) and returns its last attempt. */
  async run(trigger: ResetTrigger): Promise<ResetAttempt> {
    while (this.running) await this.running.catch(() => {});
    if (this.stopping) throw new Error('the scheduler is stopping');
    this.runningSince = this.o.clock.now();
    this.running = this.attempts(trigger);
    try {
      return await this.running;
    } finally {
      this.running = null;
      if (!this.stopping && this.cronJob) void this.armTimer();
    }
  }

  private async attempts(trigger: ResetTrigger): Promise<ResetAttempt> {
    const runId = randomUUID();
    let last: ResetAttempt | null = null;
    for (let attempt = 1; attempt <= this.o.maxAttempts; attempt++) {
      last = await this.attempt(runId, trigger, attempt);
      if (last.outcome === 'success' || this.stopping || attempt === this.o.maxAttempts) break;
      await this.sleep(this.o.retryBaseMs * 2 ** (attempt - 1));
    }
    return last!;
  }

  private async attempt(
    runId: string,
    trigger: ResetTrigger,
    attempt: number,
  ): Promise<ResetAttempt> {
    const a: ResetAttempt = {
      id: null,
      runId,
      trigger,
      replicaId: this.o.replicaId,
      attempt,
      startedAt: this.o.clock.now(),
      finishedAt: null,
      countersRolled: 0,
      outcome: 'running',
      error: null,
    };
    const t0 = process.hrtime.bigint();
    // Attribute names of the reset-job design (seed 000) that operators already query.
    return tracer.startActiveSpan(
      'quota_reset.execute',
      { attributes: { 'quota_reset.trigger': trigger, 'quota_reset.attempt': attempt } },
      async (span) => {
        await this.runLog.record(a);
        try {
          const r = await sweep(this.store, {
            now: a.startedAt,
            batchSize: this.o.batchSize,
            runId,
            shouldStop: () => this.stopping,
            onRolled: (n) => (a.countersRolled += n),
          });
          // Holds past their ttl get their RESERVATION_EXPIRED in the same run.
          const expired = await expireReservations(this.store, a.startedAt, {
            shouldStop: () => this.stopping,
          });
          this.o.metrics.reservationsSettled.inc({ outcome: 'expired' }, expired);
          // A sweep cut short by a stop is no success: counters may still be due.
          a.outcome = r.complete ? 'success' : 'interrupted';
          if (!r.complete) a.error = 'stopped before it had taken every due counter';
        } catch (err) {
          a.outcome = 'failure';
          a.error = err instanceof Error ? err.message : String(err);
          span.recordException(err instanceof Error ? err : new Error(String(err)));
          span.setStatus({ code: SpanStatusCode.ERROR, message: a.error });
        }
        a.finishedAt = this.o.clock.now();
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        const ok = a.outcome === 'success';
        reportAttempt(span, this.o.metrics, a, seconds);
        await this.runLog.record(a);
        const fields = {
          runId,
          trigger,
          attempt,
          rolled: a.countersRolled,
          ms: Math.round(seconds * 1000),
        };
        if (ok) this.o.logger.info(fields, 'reset run');
        else this.o.logger.warn({ ...fields, error: a.error }, 'reset run failed');
        if (ok) await this.checkpoint();
        return a;
      },
    );
  }

  /**
   * Records a checkpoint of the ledger's hash chains after each successful run, so a cut tail
   * is detectable (VerifyLedger). The root goes to the log too: a copy outside the database
   * that whoever rewrites the database cannot rewrite with it. Never throws.
   */
  private async checkpoint(): Promise<void> {
    try {
      const cp = await writeCheckpoint(this.o.db, this.o.clock.now());
      this.o.logger.info(
        { checkpoint: String(cp.id), subjects: String(cp.subjects), root: cp.root },
        'ledger checkpoint',
      );
    } catch (err) {
      this.o.logger.warn({ err: safeError(err) }, 'ledger checkpoint failed');
    }
  }

  /**
   * Sets the timer for the next boundary of any counter, or a minute from now at the latest.
   * Counters already due are left to the sweep in progress, the cron sweep or the lazy roll,
   * so a subject that stays locked cannot make the timer spin.
   */
  async armTimer(): Promise<void> {
    if (this.stopping) return;
    const maxMs = this.o.maxTimerMs ?? 60_000;
    let delay = maxMs;
    try {
      const now = this.o.clock.now();
      // The next period boundary or hold expiry, whichever comes first.
      const [boundary, expiry] = await Promise.all([
        nextBoundary(this.o.db, now),
        nextExpiry(this.o.db, now),
      ]);
      const next =
        boundary && expiry ? (boundary < expiry ? boundary : expiry) : (boundary ?? expiry);
      if (next) delay = Math.min(maxMs, Math.max(0, next.getTime() - now.getTime()));
    } catch {
      // Database away: look again later; the cron sweep and the lazy roll cover the gap.
    }
    if (this.stopping) return; // stop() may have come while we looked
    clearTimeout(this.timer);
    this.nextTimerAt = new Date(Date.now() + delay);
    // A plain timer: node-schedule ignores a date already past, which would end the chain.
    this.timer = setTimeout(() => {
      void (async () => {
        // Sweep only if a period has really ended (the timer may just be looking again).
        const due = await oldestDue(this.o.db, this.o.clock.now()).catch(() => null);
        if (due) await this.trigger('timer');
        else {
          // No period ended, but a hold may have expired: settle those without a full run.
          await this.expireHolds();
          await this.armTimer();
        }
      })();
    }, delay);
  }

  /** Writes RESERVATION_EXPIRED for the holds past their ttl; a failure waits for the next run. */
  private async expireHolds(): Promise<void> {
    try {
      const n = await expireReservations(this.store, this.o.clock.now(), {
        shouldStop: () => this.stopping,
      });
      this.o.metrics.reservationsSettled.inc({ outcome: 'expired' }, n);
    } catch {
      // Database away: the lazy rule already leaves these holds out; the next run writes them.
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((ok) => {
      const t = setTimeout(ok, ms);
      this.abort.signal.addEventListener('abort', () => {
        clearTimeout(t);
        ok();
      });
    });
  }

  /** Takes no new run, lets a running sweep finish its batch (bounded), cancels the timers. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    this.cronJob?.cancel();
    clearTimeout(this.timer);
    if (this.running) {
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>(
        (ok) => (timer = setTimeout(ok, this.o.stopTimeoutMs ?? 30_000)),
      );
      await Promise.race([this.running.catch(() => {}), limit]);
      clearTimeout(timer);
    }
  }
}
