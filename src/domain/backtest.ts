import { nextWindow, periodContaining, type PeriodKind, type PeriodRule } from './period.js';

/** A quota definition someone is thinking of setting. */
export interface ProposedQuota extends PeriodRule {
  limit: bigint;
}

/** A recorded event the replay looks at, in ledger order. */
export interface ReplayEvent {
  subject: string;
  type: 'USAGE' | 'REFUND' | 'RESERVATION_COMMITTED';
  sequence: bigint;
  amount: bigint;
  recordedAt: Date;
  /** REFUND: the usage it gave back, if it named one. */
  refundedSequence?: bigint | null;
}

/** The highest usage one period of one proposed quota reached in the replay. */
export interface PeriodPeak {
  period: PeriodKind;
  periodStart: Date;
  periodEnd: Date | null;
  peak: bigint;
  limit: bigint;
}

export interface SubjectBacktest {
  subject: string;
  callsAllowed: bigint;
  amountAllowed: bigint;
  callsRefused: bigint;
  amountRefused: bigint;
  firstRefusedAt: Date | null;
  /** Each period that saw usage, oldest first, per proposed quota. */
  periods: PeriodPeak[];
}

export const BACKTEST_LIMITS = [
  'Only recorded events are replayed: calls the live service refused were never recorded, so they are missing here, and a stricter limit can only look better than it would have been.',
  'Usage the proposed limits refuse is dropped from the replay, so later calls of the same period see more room than they had.',
  'RECORD-mode usages and reservation commits are replayed like ENFORCE consumes (refused if over); open holds are not replayed.',
  'A refund that named a usage the replay refused gives nothing back; any other refund credits each current period, never below zero.',
  'Usage before start_time is not counted: the period containing start_time starts empty.',
];

interface Counter {
  start: Date;
  end: Date | null;
  used: bigint;
  peak: bigint;
}

interface SubjectState {
  result: SubjectBacktest;
  counters: (Counter | null)[];
  /** Sequences of usages the replay refused, for refunds that name them. */
  refused: Set<bigint>;
}

/**
 * Replays recorded usage of one metric against proposed quotas, with the live service's
 * period rules (a counter starts in the period containing its first event and rolls with
 * nextWindow). Pure and incremental: feed events in ledger order with `apply`, read `result`.
 * Memory grows with subjects and periods that saw usage, never with events.
 */
export class Backtest {
  private readonly subjects = new Map<string, SubjectState>();

  constructor(readonly quotas: readonly ProposedQuota[]) {}

  apply(e: ReplayEvent): void {
    const s = this.stateOf(e.subject);
    const counters = this.quotas.map((q, i) => this.roll(s, i, q, e.recordedAt));
    if (e.type === 'REFUND') {
      if (e.refundedSequence != null && s.refused.has(e.refundedSequence)) return;
      for (const c of counters) c.used -= c.used < e.amount ? c.used : e.amount;
      return;
    }
    const fits = counters.every((c, i) => c.used + e.amount <= this.quotas[i]!.limit);
    const r = s.result;
    if (!fits) {
      r.callsRefused += 1n;
      r.amountRefused += e.amount;
      r.firstRefusedAt ??= e.recordedAt;
      s.refused.add(e.sequence);
      return;
    }
    r.callsAllowed += 1n;
    r.amountAllowed += e.amount;
    for (const c of counters) {
      c.used += e.amount;
      if (c.used > c.peak) c.peak = c.used;
    }
  }

  /** Per subject, sorted by subject; periods closed so far and the open ones. */
  result(): SubjectBacktest[] {
    return [...this.subjects.keys()].sort().map((k) => {
      const s = this.subjects.get(k)!;
      s.counters.forEach((c, i) => c && this.close(s, i, c));
      s.counters = s.counters.map(() => null);
      const periods = [...s.result.periods].sort(
        (a, b) => a.periodStart.getTime() - b.periodStart.getTime(),
      );
      return { ...s.result, periods };
    });
  }

  private stateOf(subject: string): SubjectState {
    let s = this.subjects.get(subject);
    if (!s) {
      s = {
        result: {
          subject,
          callsAllowed: 0n,
          amountAllowed: 0n,
          callsRefused: 0n,
          amountRefused: 0n,
          firstRefusedAt: null,
          periods: [],
        },
        counters: this.quotas.map(() => null),
        refused: new Set(),
      };
      this.subjects.set(subject, s);
    }
    return s;
  }

  /** The counter of quota `i` in the period containing `at`, closing the one that ended. */
  private roll(s: SubjectState, i: number, q: ProposedQuota, at: Date): Counter {
    let c = s.counters[i];
    if (c && c.end !== null && c.end.getTime() <= at.getTime()) {
      this.close(s, i, c);
      const w = nextWindow(q, c.end, at);
      c = { start: w.start, end: w.end, used: 0n, peak: 0n };
    } else if (!c) {
      const w = periodContaining(q, at);
      c = { start: w.start, end: w.end, used: 0n, peak: 0n };
    }
    s.counters[i] = c;
    return c;
  }

  private close(s: SubjectState, i: number, c: Counter): void {
    if (c.peak === 0n) return; // a period without allowed usage says nothing
    const q = this.quotas[i]!;
    s.result.periods.push({
      period: q.period,
      periodStart: c.start,
      periodEnd: c.end,
      peak: c.peak,
      limit: q.limit,
    });
  }
}

/** The sum over subjects. */
export function totalsOf(results: readonly SubjectBacktest[]): Omit<SubjectBacktest, 'periods'> {
  const t = {
    subject: '*',
    callsAllowed: 0n,
    amountAllowed: 0n,
    callsRefused: 0n,
    amountRefused: 0n,
    firstRefusedAt: null as Date | null,
  };
  for (const r of results) {
    t.callsAllowed += r.callsAllowed;
    t.amountAllowed += r.amountAllowed;
    t.callsRefused += r.callsRefused;
    t.amountRefused += r.amountRefused;
    if (r.firstRefusedAt && (!t.firstRefusedAt || r.firstRefusedAt < t.firstRefusedAt))
      t.firstRefusedAt = r.firstRefusedAt;
  }
  return t;
}
