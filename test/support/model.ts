/**
 * A small model of the quota rules, written apart from src/ (it imports nothing from it): the
 * reference that model-based and history tests compare the service with, call by call.
 *
 * Scope: one metric, quotas of the subject's own and defaults (subject "*"), UTC periods (DAY, ISO WEEK
 * from Monday, MONTH on the 1st or anchored on a day 1-31, NEVER), ENFORCE / RECORD / DRY_RUN,
 * idempotency keys on consumes and refunds, refunds naming a usage, manual resets, and lazy
 * period rolls (a counter whose period has ended moves to the period containing now, with one
 * RESET_SCHEDULED event, when a call touches it).
 */

export type Period = 'DAY' | 'WEEK' | 'MONTH' | 'NEVER';
export const PERIODS: readonly Period[] = ['DAY', 'WEEK', 'MONTH', 'NEVER'];
export type Mode = 'ENFORCE' | 'RECORD' | 'DRY_RUN';

const DAY_MS = 86_400_000;

export interface Window {
  start: number;
  end: number | null;
}

/** The UTC period containing `t` (ms since the epoch). anchor 0: calendar months. */
export function windowAt(period: Period, anchor: number, t: number): Window {
  const d = new Date(t);
  const midnight = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  switch (period) {
    case 'DAY':
      return { start: midnight, end: midnight + DAY_MS };
    case 'WEEK': {
      const sinceMonday = (d.getUTCDay() + 6) % 7;
      const start = midnight - sinceMonday * DAY_MS;
      return { start, end: start + 7 * DAY_MS };
    }
    case 'MONTH': {
      const boundary = (y: number, m: number): number => {
        const days = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
        return Date.UTC(y, m, Math.min(anchor === 0 ? 1 : anchor, days));
      };
      const [y, m] = [d.getUTCFullYear(), d.getUTCMonth()];
      const here = boundary(y, m);
      return t >= here
        ? { start: here, end: boundary(y, m + 1) }
        : { start: boundary(y, m - 1), end: here };
    }
    case 'NEVER':
      return { start: 0, end: null };
  }
}

export interface ModelQuota {
  period: Period;
  limit: bigint;
  anchor: number;
}

export interface ModelCounter {
  used: bigint;
  start: number;
  end: number | null;
}

/** What a caller sees of one quota. */
export interface View {
  period: Period;
  limit: bigint;
  used: bigint;
  exceeded: boolean;
  start: number;
  end: number | null;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; code: string };

export interface ConsumeAnswer {
  allowed: boolean;
  recorded: boolean;
  replayed: boolean;
  quotas: View[];
}

export interface RefundAnswer {
  replayed: boolean;
  credited: [Period, bigint][];
  quotas: View[];
}

interface Usage {
  amount: bigint;
  overLimit: boolean;
  quotas: View[];
  /** The (period, start) of each counter it charged. */
  charged: [Period, number][];
  refunded: bigint;
}

interface SubjectModel {
  quotas: Map<Period, ModelQuota>;
  counters: Map<Period, ModelCounter>;
  usages: Map<string, Usage>;
  refunds: Map<string, { amount: bigint; credited: [Period, bigint][] }>;
  events: Record<string, number>;
  /** Every period start a RESET_SCHEDULED may carry, per period. */
  rolls: [Period, number][];
}

const fail = (code: string): { ok: false; code: string } => ({ ok: false, code });

/** The subject whose quotas are everyone's defaults. */
export const DEFAULTS = '*';

/** The model of every subject of one metric. Time is passed into each call. */
export class QuotaModel {
  readonly subjects = new Map<string, SubjectModel>();

  /** An independent copy (for searches that try several orders). */
  clone(): QuotaModel {
    const c = new QuotaModel();
    for (const [k, v] of this.subjects) c.subjects.set(k, structuredClone(v));
    return c;
  }

  /** The whole state as a string: equal strings, equal states. */
  fingerprint(): string {
    return JSON.stringify(
      [...this.subjects].map(([k, v]) => [
        k,
        [...v.quotas],
        [...v.counters],
        [...v.usages].sort(([a], [b]) => a.localeCompare(b)),
        [...v.refunds].sort(([a], [b]) => a.localeCompare(b)),
        Object.entries(v.events).sort(([a], [b]) => a.localeCompare(b)),
      ]),
      (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x),
    );
  }

  private subject(s: string): SubjectModel {
    let m = this.subjects.get(s);
    if (!m) {
      m = {
        quotas: new Map(),
        counters: new Map(),
        usages: new Map(),
        refunds: new Map(),
        events: {},
        rolls: [],
      };
      this.subjects.set(s, m);
    }
    return m;
  }

  private event(m: SubjectModel, type: string): void {
    m.events[type] = (m.events[type] ?? 0) + 1;
  }

  /** The quotas of `s`, DAY..NEVER, with their counters rolled to `now` (events appended). */
  /** The quota of each period that applies to `m`: its own, else the default ("*") one. */
  private applicable(m: SubjectModel): ModelQuota[] {
    const star = this.subjects.get(DEFAULTS)?.quotas;
    return PERIODS.map((p) => m.quotas.get(p) ?? star?.get(p)).filter(
      (q): q is ModelQuota => q !== undefined,
    );
  }

  private live(m: SubjectModel, now: number): { q: ModelQuota; c: ModelCounter | null }[] {
    return this.applicable(m).map((q) => {
      const p = q.period;
      let c = m.counters.get(p) ?? null;
      if (c && c.end !== null && c.end <= now) {
        const w = windowAt(p, q.anchor, now);
        c = { used: 0n, start: w.start, end: w.end };
        m.counters.set(p, c);
        m.rolls.push([p, w.start]);
        this.event(m, 'RESET_SCHEDULED');
      }
      return { q, c };
    });
  }

  private view(q: ModelQuota, c: ModelCounter | null, now: number, used?: bigint): View {
    const w = c ?? windowAt(q.period, q.anchor, now);
    return {
      period: q.period,
      limit: q.limit,
      used: used ?? c?.used ?? 0n,
      exceeded: false,
      start: w.start,
      end: w.end,
    };
  }

  /** Events the subject's ledger holds, by type. */
  events(s: string): Record<string, number> {
    return { ...this.subject(s).events };
  }

  /** The stored counters, DAY..NEVER. */
  counters(s: string): [Period, bigint, number, number | null][] {
    const m = this.subject(s);
    return PERIODS.filter((p) => m.counters.has(p)).map((p) => {
      const c = m.counters.get(p)!;
      return [p, c.used, c.start, c.end];
    });
  }

  /** Period starts that RESET_SCHEDULED events of `s` may carry (each at most once). */
  rollStarts(s: string): [Period, number][] {
    return [...this.subject(s).rolls];
  }

  setQuota(s: string, period: Period, limit: bigint, anchor: number): Outcome<null> {
    const m = this.subject(s);
    m.quotas.set(period, { period, limit, anchor: period === 'MONTH' ? anchor : 0 });
    this.event(m, 'QUOTA_SET');
    return { ok: true, value: null };
  }

  /** Deletes a subject's own quota of one period; its counter stays, unused, as it was. */
  deleteQuota(s: string, period: Period): Outcome<null> {
    const m = this.subject(s);
    if (!m.quotas.delete(period)) return fail('NOT_FOUND');
    this.event(m, 'QUOTA_DELETED');
    return { ok: true, value: null };
  }

  consume(
    s: string,
    amount: bigint,
    mode: Mode,
    key: string | null,
    now: number,
  ): Outcome<ConsumeAnswer> {
    const m = this.subject(s);
    const prior = key === null ? undefined : m.usages.get(key);
    if (prior) {
      if (prior.amount !== amount) return fail('ALREADY_EXISTS');
      return {
        ok: true,
        value: { allowed: !prior.overLimit, recorded: true, replayed: true, quotas: prior.quotas },
      };
    }
    if (this.applicable(m).length === 0) return fail('NOT_FOUND');
    const live = this.live(m, now);
    const over = live.map(({ q, c }) => (c?.used ?? 0n) + amount > q.limit);
    const allowed = !over.includes(true);
    const recorded = mode === 'RECORD' || (mode === 'ENFORCE' && allowed);
    const quotas = live.map(({ q, c }, i) => ({
      ...this.view(q, c, now, (c?.used ?? 0n) + (recorded ? amount : 0n)),
      exceeded: over[i]!,
    }));
    if (recorded) {
      const charged: [Period, number][] = [];
      for (const { q, c } of live) {
        const w = c ?? windowAt(q.period, q.anchor, now);
        m.counters.set(q.period, { used: (c?.used ?? 0n) + amount, start: w.start, end: w.end });
        charged.push([q.period, w.start]);
      }
      this.event(m, 'USAGE');
      if (key !== null)
        m.usages.set(key, { amount, overLimit: !allowed, quotas, charged, refunded: 0n });
    }
    return { ok: true, value: { allowed, recorded, replayed: false, quotas } };
  }

  refund(
    s: string,
    amount: bigint,
    key: string | null,
    usageKey: string | null,
    now: number,
  ): Outcome<RefundAnswer> {
    const m = this.subject(s);
    if (key !== null) {
      const prior = m.refunds.get(key);
      if (prior) {
        if (prior.amount !== amount) return fail('ALREADY_EXISTS');
        const live = this.live(m, now);
        return {
          ok: true,
          value: {
            replayed: true,
            credited: prior.credited,
            quotas: live.map(({ q, c }) => this.view(q, c, now)),
          },
        };
      }
    }
    let usage: Usage | undefined;
    if (usageKey !== null) {
      usage = m.usages.get(usageKey);
      if (!usage) return fail('NOT_FOUND');
    } else if (key !== null) {
      usage = m.usages.get(key);
    }
    if (usage && amount > usage.amount - usage.refunded) return fail('FAILED_PRECONDITION');
    if (this.applicable(m).length === 0 && !usage) return fail('NOT_FOUND');
    const live = this.live(m, now);
    const credited: [Period, bigint][] = [];
    for (const { q, c } of live) {
      if (!c) continue;
      if (usage && !usage.charged.some(([p, start]) => p === q.period && start === c.start))
        continue;
      const credit = c.used < amount ? c.used : amount;
      if (credit === 0n) continue;
      c.used -= credit;
      credited.push([q.period, credit]);
    }
    if (usage) usage.refunded += amount;
    if (key !== null) m.refunds.set(key, { amount, credited });
    this.event(m, 'REFUND');
    return {
      ok: true,
      value: {
        replayed: false,
        credited,
        quotas: live.map(({ q, c }) => this.view(q, c, now)),
      },
    };
  }

  reset(s: string, now: number): Outcome<View[]> {
    const m = this.subject(s);
    if (this.applicable(m).length === 0) return fail('NOT_FOUND');
    const live = this.live(m, now);
    for (const { c } of live) {
      if (!c) continue;
      c.used = 0n;
      this.event(m, 'RESET_MANUAL');
    }
    return { ok: true, value: live.map(({ q, c }) => this.view(q, c, now)) };
  }

  getQuota(s: string, now: number): Outcome<View[]> {
    const m = this.subject(s);
    if (this.applicable(m).length === 0) return fail('NOT_FOUND');
    return { ok: true, value: this.live(m, now).map(({ q, c }) => this.view(q, c, now)) };
  }

  /** Limit and usage in the current period of each quota at `now`, changing nothing. */
  getQuotaPeek(s: string, now: number): { period: Period; limit: bigint; used: bigint }[] {
    const m = this.subject(s);
    return this.applicable(m).map((q) => {
      const c = m.counters.get(q.period);
      const used = c && (c.end === null || c.end > now) ? c.used : 0n;
      return { period: q.period, limit: q.limit, used };
    });
  }
}
