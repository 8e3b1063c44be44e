import { evolveCounters } from './counter.js';
import type { NewEvent } from './events.js';
import type { PeriodKind } from './period.js';
import type { CounterState, OpenHold, QuotaDef, QuotaView } from './quota.js';

/** What the first usage with an idempotency key answered; a retry gets it again. */
export interface PriorUsage {
  metric: string;
  amount: bigint;
  sequence: bigint;
  overLimit: boolean;
  quotas: QuotaView[];
}

/** A subject as read for a decision: everything the commands on it can touch. */
export interface SubjectState {
  subject: string;
  lastSequence: bigint;
  /** Its own quotas and the defaults ("*"), at least for every metric the commands name. */
  defs: readonly QuotaDef[];
  /** Its counters by counterKey(metric, period), at least for every metric the commands name. */
  counters: Map<string, CounterState>;
  /** Usages already in the ledger, by idempotency key, at least for every key the commands carry. */
  priors: Map<string, PriorUsage>;
  /** Open holds that may have expired by the decision (see liveQuotasOf). */
  lapsed: OpenHold[];
}

export interface SequencedEvent extends NewEvent {
  sequence: bigint;
}

/** The state of one counter after the events of a decision. */
export interface CounterWrite {
  metric: string;
  period: PeriodKind;
  state: CounterState;
}

/** What a decision appends to one subject: the events, and the counters they leave. */
export interface SubjectChanges {
  subject: string;
  /** In sequence order, following the subject's last sequence. */
  events: SequencedEvent[];
  /** Each counter the events changed, once, as evolveCounter left it. */
  counters: CounterWrite[];
}

/** A decision: what to append, and what to answer once it is committed. */
export interface Decided<R> {
  changes: SubjectChanges;
  result: R;
}

/**
 * Records the events a decision makes on a subject's state: each gets the next sequence and is
 * applied to the counters with evolveCounter, so what is written is exactly what the ledger
 * folds to. Mutates `state`, the decision's own copy.
 */
export class Stage {
  readonly events: SequencedEvent[] = [];
  private readonly dirty = new Map<string, { metric: string; period: PeriodKind }>();
  /** Since the latest mark: each counter replaced, as it was, and whether it was dirty. */
  private undo: { key: string; counter: CounterState | null; dirty: boolean }[] | null = null;

  constructor(readonly state: SubjectState) {}

  record(e: NewEvent): SequencedEvent {
    this.state.lastSequence += 1n;
    const event = { ...e, sequence: this.state.lastSequence };
    this.events.push(event);
    for (const c of evolveCounters(this.state.counters, event)) {
      this.undo?.push({ key: c.key, counter: c.before, dirty: this.dirty.has(c.key) });
      this.dirty.set(c.key, { metric: c.metric, period: c.period });
    }
    return event;
  }

  /**
   * A point to go back to: a failed call must leave no trace. What is recorded after it is
   * undone from a log of the counters it replaced, so a mark costs next to nothing.
   */
  mark(): () => void {
    const seq = this.state.lastSequence;
    const n = this.events.length;
    const log: NonNullable<Stage['undo']> = [];
    this.undo = log;
    return () => {
      for (const u of log.reverse()) {
        if (u.counter) this.state.counters.set(u.key, u.counter);
        else this.state.counters.delete(u.key);
        if (!u.dirty) this.dirty.delete(u.key);
      }
      this.state.lastSequence = seq;
      this.events.length = n;
      this.undo = null;
    };
  }

  changes(): SubjectChanges {
    return {
      subject: this.state.subject,
      events: this.events,
      counters: [...this.dirty].map(([key, c]) => ({
        metric: c.metric,
        period: c.period,
        state: this.state.counters.get(key)!,
      })),
    };
  }

  decided<R>(result: R): Decided<R> {
    return { changes: this.changes(), result };
  }
}
