import { DEFAULT_SUBJECT, type CounterState, type QuotaDef } from '../domain/quota.js';
import type { LoadedSubject } from './subject-state.js';

interface Entry {
  /** The subject row's version (xmin) our append left. */
  version: string;
  sequence: bigint;
  /** The metrics whose quotas and counters were read, and so are all here. */
  metrics: readonly string[];
  own: readonly QuotaDef[];
  counters: readonly [string, CounterState][];
}

/**
 * The state of each subject as this process's last append left it, so that the next Consume
 * of the subject can be decided without reading it first: one round trip instead of two.
 *
 * Nothing here is trusted. The append that follows a decision taken from a kept state checks
 * that the subject's sequence and row version, and the defaults' version, are still the ones
 * kept (quota_append_versioned, migration …032); any other writer, in this process or another
 * replica, or a repair, moves them, and the append then fails with 40001 and writes nothing,
 * after which the writer reads afresh. A decision that appends nothing to a subject is not
 * checked by any append, and neither is the absence of an idempotency key; the writer decides
 * those again from a fresh read (see writeSubjects).
 *
 * States with open holds are not kept: the decisions leave out holds that have lapsed by now,
 * which only a read can tell.
 */
export class SubjectCache {
  private readonly entries = new Map<string, Entry>();
  private defaults: { version: string | null; byMetric: Map<string, QuotaDef[]> } | null = null;

  /** `capacity` subjects at most; the least recently written go first. */
  constructor(readonly capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Fresh copies of the kept states of `subjects` for `metrics`, as a read would return them
   * without idempotency keys and lapsed holds; null unless every one of them is kept.
   */
  states(
    subjects: readonly string[],
    metrics: readonly string[],
  ): Map<string, LoadedSubject> | null {
    const defaults = this.defaults;
    if (!defaults || !metrics.every((m) => defaults.byMetric.has(m))) return null;
    const defs: QuotaDef[] = metrics.flatMap((m) => defaults.byMetric.get(m)!);
    const found: [string, Entry][] = [];
    for (const subject of subjects) {
      const e = this.entries.get(subject);
      if (!e || !metrics.every((m) => e.metrics.includes(m))) return null;
      found.push([subject, e]);
    }
    const states = new Map<string, LoadedSubject>();
    for (const [subject, e] of found) {
      defs.push(...e.own);
      states.set(subject, {
        subject,
        lastSequence: e.sequence,
        readSequence: e.sequence,
        version: e.version,
        defaultsVersion: defaults.version,
        // Shared by the subjects of one decision, as in a read.
        defs,
        counters: new Map(e.counters),
        priors: new Map(),
        lapsed: [],
      });
    }
    return states;
  }

  /**
   * Keeps the states a committed append left: `written` are the subjects whose rows it wrote,
   * which now have `version`; `metrics` are the metrics the states were read for.
   */
  remember(
    states: ReadonlyMap<string, LoadedSubject>,
    metrics: readonly string[],
    written: ReadonlySet<string>,
    version: string,
  ): void {
    const first = states.values().next().value;
    if (!first) return;
    // One list of quotas is shared by the subjects of a read: split it by subject once.
    const bySubject = new Map<string, QuotaDef[]>();
    for (const d of first.defs) {
      const list = bySubject.get(d.subject);
      if (list) list.push(d);
      else bySubject.set(d.subject, [d]);
    }
    if (this.defaults?.version !== first.defaultsVersion) {
      this.defaults = { version: first.defaultsVersion, byMetric: new Map() };
    }
    const defaults = bySubject.get(DEFAULT_SUBJECT) ?? [];
    for (const m of metrics) {
      this.defaults.byMetric.set(
        m,
        defaults.filter((d) => d.metric === m),
      );
    }
    for (const [subject, s] of states) {
      this.entries.delete(subject);
      if (!written.has(subject) || s.lapsed.length > 0) continue;
      const counters = [...s.counters];
      if (counters.some(([, c]) => c.reserved !== 0n)) continue;
      this.entries.set(subject, {
        version,
        sequence: s.lastSequence,
        metrics,
        own: bySubject.get(subject) ?? [],
        counters,
      });
    }
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.capacity) break;
      this.entries.delete(oldest);
    }
  }

  /** Drops everything kept. */
  clear(): void {
    this.entries.clear();
    this.defaults = null;
  }

  /** Drops what is kept of `subjects` (and of the defaults, for "*"). */
  forget(subjects: Iterable<string>): void {
    for (const s of subjects) {
      this.entries.delete(s);
      if (s === DEFAULT_SUBJECT) this.defaults = null;
    }
  }
}
