import type { CallSignal } from '../cancellation.js';
import type { ConsumeOutcome } from '../domain/consume.js';
import { QuotaError } from '../domain/errors.js';
import type { ConsumeCommand, LedgerDeps } from '../ledger/commands.js';
import { consumeMany, type ConsumeResult, type PendingConsume } from '../ledger/consume.js';
import { cancelledBeforeCommit, pgCode } from '../ledger/db.js';
import { FlushGate, type ParallelSettings } from './flush-gate.js';

export interface GroupCommitSettings extends ParallelSettings {
  /** Calls per transaction at most. */
  maxBatch: number;
}

export const DEFAULT_GROUP_COMMIT: GroupCommitSettings = {
  maxFlushes: 4,
  maxBatch: 500,
  minParallel: 64,
  maxWaitMs: 25,
};

export interface GroupCommitObserver {
  /** A transaction of `size` calls finished: committed, or failed as a whole. */
  flushed(size: number, seconds: number, ok: boolean): void;
}

interface Waiting extends PendingConsume {
  resolve(r: ConsumeResult): void;
  reject(e: unknown): void;
  queued: boolean;
}

// Errors after which nothing was committed and the same transaction may simply run again:
// a deadlock or serialization failure against a writer outside this process.
const RETRYABLE = new Set(['40P01', '40001']);
const MAX_ATTEMPTS = 3;

/**
 * Group commit for Consume. Calls that arrive while earlier transactions are running are
 * gathered into the next one, so the number of commits (and fsyncs) grows with load far
 * slower than the number of calls. A call that finds no transaction running starts one at
 * the end of the event-loop turn that brought it, without a timer; while one runs, calls wait
 * for it unless many are waiting or it has run for long (see drain).
 *
 * Order: a subject is in at most one transaction at a time, and its calls leave the queue in
 * arrival order, so each call sees exactly the calls of its subject that arrived before it.
 * A hot subject's calls pile up behind its running transaction and then go in together,
 * with a single counter update for all of them.
 *
 * Every call is answered only after its transaction has committed. If the transaction fails,
 * each of its calls gets the failure (UNAVAILABLE for a database that went away) and none is
 * acknowledged; calls in other transactions are untouched.
 */
export class ConsumeGroupCommitter {
  private queue: Waiting[] = [];
  private readonly busy = new Set<string>();
  private scheduled = false;
  private readonly gate: FlushGate;
  private idleWaiters: (() => void)[] = [];

  private readonly settings: GroupCommitSettings;

  constructor(
    private readonly deps: LedgerDeps,
    settings: Partial<GroupCommitSettings> = {},
    private readonly observer?: GroupCommitObserver,
  ) {
    this.settings = { ...DEFAULT_GROUP_COMMIT, ...settings };
    this.gate = new FlushGate(this.settings, () => this.drain());
  }

  submit(cmd: ConsumeCommand, actor: string, signal?: CallSignal): Promise<ConsumeResult> {
    return new Promise((resolve, reject) => {
      this.enqueue([{ cmd, actor, signal, resolve, reject, queued: true }], signal);
    });
  }

  /**
   * Queues calls in the given order and settles once all of them have, each with its own
   * outcome. One promise for the lot rather than one per call: a batch's calls stay queued for
   * most of a second under load, and whatever each holds meanwhile is promoted and marked
   * (docs/benchmarks.md, tenth round).
   */
  submitAll(
    cmds: readonly ConsumeCommand[],
    actor: string,
    signal?: CallSignal,
  ): Promise<PromiseSettledResult<ConsumeResult>[]> {
    return new Promise((done) => {
      const outcomes = new Outcomes(cmds.length, done);
      this.enqueue(
        cmds.map((cmd, i) => new Item(cmd, actor, signal, outcomes, i)),
        signal,
      );
    });
  }

  private enqueue(waiting: Waiting[], signal: CallSignal | undefined): void {
    if (signal?.aborted) {
      for (const w of waiting) w.reject(cancelledBeforeCommit());
      return;
    }
    // A caller that gives up while its calls are still queued leaves nothing behind. One
    // listener per request, however many items it carries.
    signal?.addEventListener(
      'abort',
      () => {
        const dropped = new Set(waiting.filter((w) => w.queued));
        if (dropped.size === 0) return;
        this.queue = this.queue.filter((w) => !dropped.has(w));
        for (const w of dropped) {
          w.queued = false;
          w.reject(cancelledBeforeCommit());
        }
        this.notifyIdle();
      },
      { once: true },
    );
    this.queue.push(...waiting);
    this.schedule();
  }

  /** Resolves once every call submitted so far has been answered. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.gate.inFlight === 0) return Promise.resolve();
    return new Promise((ok) => this.idleWaiters.push(ok));
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // The end of this event-loop turn, not a timer: every call decoded from the same burst
    // of network input joins the same transaction, and a lone call waits for nothing.
    setImmediate(() => {
      this.scheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    const { maxBatch } = this.settings;
    // How many transactions to start, and so how to share the queue: see FlushGate (one at a
    // time while few calls wait measured a quarter less CPU per call, service, PostgreSQL
    // and load generator together, than four of about five calls each; docs/benchmarks.md).
    for (let parts = this.gate.parts(this.queue.length); parts > 0;) {
      const limit = Math.min(maxBatch, Math.ceil(this.queue.length / parts));
      const batch: Waiting[] = [];
      const rest: Waiting[] = [];
      const subjects = new Set<string>();
      // Once one call of a subject stays behind, its later calls stay behind too (order).
      const held = new Set<string>();
      for (const w of this.queue) {
        const subject = w.cmd.subject;
        // Past the even share only calls of subjects already in this transaction join it:
        // they cost no extra rows to lock or read, and a hot subject is not cut into slivers.
        const full = batch.length >= maxBatch || (batch.length >= limit && !subjects.has(subject));
        if (this.busy.has(subject) || held.has(subject) || full) {
          rest.push(w);
          held.add(subject);
        } else {
          batch.push(w);
          subjects.add(subject);
        }
      }
      if (batch.length === 0) break;
      this.queue = rest;
      for (const s of subjects) this.busy.add(s);
      for (const w of batch) w.queued = false;
      this.gate.started();
      void this.flush(batch, subjects);
      parts = this.gate.parts(this.queue.length);
    }
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.queue.length === 0 && this.gate.inFlight === 0) {
      for (const ok of this.idleWaiters.splice(0)) ok();
    }
  }

  private async flush(batch: Waiting[], subjects: Set<string>): Promise<void> {
    const t0 = process.hrtime.bigint();
    let ok = true;
    try {
      const outcomes = await this.run(batch);
      batch.forEach((w, i) => settle(w, outcomes[i]!));
    } catch (err) {
      ok = false;
      if (batch.length > 1 && !(err instanceof QuotaError && err.code === 'UNAVAILABLE')) {
        // Something one call carried may have broken the statement: answer each alone, so
        // the others still go through and only the culprit sees the error.
        await this.isolate(batch);
      } else {
        for (const w of batch) w.reject(err);
      }
    } finally {
      this.observer?.flushed(batch.length, Number(process.hrtime.bigint() - t0) / 1e9, ok);
      this.gate.finished();
      for (const s of subjects) this.busy.delete(s);
      this.drain();
    }
  }

  private async run(batch: Waiting[]): Promise<ConsumeOutcome[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await consumeMany(this.deps, batch);
      } catch (err) {
        if (attempt >= MAX_ATTEMPTS || !RETRYABLE.has(pgCode(err) ?? '')) throw err;
      }
    }
  }

  private async isolate(batch: Waiting[]): Promise<void> {
    for (const w of batch) {
      try {
        settle(w, (await this.run([w]))[0]!);
      } catch (err) {
        w.reject(err);
      }
    }
  }
}

/** The outcomes of one submitAll, handed over when the last call has settled. */
class Outcomes {
  private readonly settled: PromiseSettledResult<ConsumeResult>[];
  private left: number;

  constructor(
    size: number,
    private readonly done: (all: PromiseSettledResult<ConsumeResult>[]) => void,
  ) {
    this.settled = new Array<PromiseSettledResult<ConsumeResult>>(size);
    this.left = size;
    if (size === 0) done(this.settled);
  }

  set(i: number, outcome: PromiseSettledResult<ConsumeResult>): void {
    // Settling twice changes nothing, as with a promise.
    if (this.settled[i] !== undefined) return;
    this.settled[i] = outcome;
    if (--this.left === 0) this.done(this.settled);
  }
}

/** A call of a submitAll: a plain object with its slot, no promise or closures of its own. */
class Item implements Waiting {
  queued = true;

  constructor(
    readonly cmd: ConsumeCommand,
    readonly actor: string,
    readonly signal: CallSignal | undefined,
    private readonly outcomes: Outcomes,
    private readonly index: number,
  ) {}

  resolve(value: ConsumeResult): void {
    this.outcomes.set(this.index, { status: 'fulfilled', value });
  }

  reject(reason: unknown): void {
    this.outcomes.set(this.index, { status: 'rejected', reason });
  }
}

function settle(w: Waiting, o: ConsumeOutcome): void {
  if (o.ok) w.resolve(o.result);
  else w.reject(o.error);
}
