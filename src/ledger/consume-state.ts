import type { PriorUsage, SubjectState } from '../domain/consume-batch.js';
import type { PeriodKind } from '../domain/period.js';
import { counterKey, type OpenHold, type QuotaDef } from '../domain/quota.js';
import { DEFAULT_SUBJECT } from '../domain/validate.js';
import { decodeData } from './codec.js';
import type { Db, Tx } from './db.js';

/** A subject as read for a flush, with the row version a later write checks against. */
export interface LoadedSubject extends SubjectState {
  /** The subject row's version (xmin): any writer of the subject changes it. Null: no row yet. */
  version: string | null;
}

export interface ConsumeKeys {
  subjects: readonly string[];
  /** Null reads every metric. */
  metrics: readonly string[] | null;
  /** (subject, idempotency key) of every call that has a key. */
  keyed: readonly { subject: string; key: string }[];
  /**
   * Loads the open holds that expire at or before this instant (the ones a decision at that
   * time must leave out, see OpenHold). Null loads none.
   */
  lapsedAt?: Date | null;
}

// Everything a flush needs, in one statement and one round trip: the subject rows, their
// quotas and the defaults, their counters, and the usages already recorded under the keys
// the calls carry. One row shape for all four; `k` says which it is.
const READ_SQL = `
  SELECT 's' AS k, subject, NULL AS metric, NULL AS period, last_sequence AS n1, NULL::int8 AS n2,
         NULL::timestamptz AS t1, NULL::timestamptz AS t2, NULL::timestamptz AS t3,
         xmin::text AS x, NULL::int AS i, NULL::jsonb AS j, NULL::int8 AS n3
    FROM subjects WHERE subject = ANY($1::text[])
  UNION ALL
  SELECT 'q', subject, metric, period, quota_limit, NULL, updated_at, NULL, NULL, time_zone,
         anchor_day, NULL, NULL
    FROM quotas WHERE subject = ANY(array_append($1::text[], $5::text))
     AND ($2::text[] IS NULL OR metric = ANY($2::text[]))
  UNION ALL
  SELECT 'c', subject, metric, period, used, last_sequence, period_start, period_end,
         last_reset_at, NULL, NULL, NULL, reserved
    FROM counters WHERE subject = ANY($1::text[]) AND ($2::text[] IS NULL OR metric = ANY($2::text[]))
  UNION ALL
  SELECT 'p', e.subject, e.metric, NULL, e.amount, e.sequence, NULL, NULL, NULL,
         e.idempotency_key, NULL, e.data, NULL
    FROM unnest($3::text[], $4::text[]) AS k(subject, key)
    JOIN ledger_events e ON e.subject = k.subject AND e.type = 'USAGE' AND e.idempotency_key = k.key
  UNION ALL
  SELECT 'h', subject, metric, NULL, amount, sequence, expires_at, NULL, NULL, reservation_id,
         NULL, holds, NULL
    FROM reservations WHERE $6::timestamptz IS NOT NULL AND subject = ANY($1::text[])
     AND ($2::text[] IS NULL OR metric = ANY($2::text[])) AND expires_at <= $6`;

interface Row {
  k: 's' | 'q' | 'c' | 'p' | 'h';
  subject: string;
  metric: string | null;
  period: PeriodKind | null;
  n1: bigint;
  n2: bigint | null;
  t1: Date | null;
  t2: Date | null;
  t3: Date | null;
  x: string | null;
  i: number | null;
  j: Record<string, unknown> | null;
  n3: bigint | null;
}

/**
 * Reads the state of the given subjects, one statement: for flushes of consumes, and for every
 * writer that opens a SubjectWriter. A subject without a row yet
 * (nothing ever written) has version null: only a locked transaction may create its row.
 */
export async function readConsumeState(
  q: Db | Tx,
  keys: ConsumeKeys,
): Promise<Map<string, LoadedSubject>> {
  const rows = await q.query<Row>(READ_SQL, [
    keys.subjects,
    keys.metrics,
    keys.keyed.map((k) => k.subject),
    keys.keyed.map((k) => k.key),
    DEFAULT_SUBJECT,
    keys.lapsedAt ?? null,
  ]);
  const defs: QuotaDef[] = [];
  const states = new Map<string, LoadedSubject>();
  for (const subject of keys.subjects) {
    states.set(subject, {
      subject,
      lastSequence: 0n,
      version: null,
      defs,
      counters: new Map(),
      priors: new Map(),
      lapsed: [],
    });
  }
  for (const r of rows.rows) {
    if (r.k === 's') {
      const state = states.get(r.subject)!;
      state.lastSequence = r.n1;
      state.version = r.x!;
    }
  }
  for (const r of rows.rows) {
    const state = states.get(r.subject);
    if (r.k === 'q') {
      defs.push({
        subject: r.subject,
        metric: r.metric!,
        period: r.period!,
        limit: r.n1,
        timeZone: r.x!,
        anchorDay: r.i!,
        updatedAt: r.t1!,
      });
    } else if (r.k === 'c' && state) {
      state.counters.set(counterKey(r.metric!, r.period!), {
        used: r.n1,
        reserved: r.n3!,
        lastSequence: r.n2!,
        periodStart: r.t1!,
        periodEnd: r.t2,
        lastResetAt: r.t3,
      });
    } else if (r.k === 'p' && state) {
      state.priors.set(r.x!, prior(r));
    } else if (r.k === 'h' && state) {
      state.lapsed.push(holdFromRow(r));
    }
  }
  return states;
}

function prior(r: Row): PriorUsage {
  const data = decodeData(r.j ?? {});
  return {
    metric: r.metric!,
    amount: r.n1,
    sequence: r.n2!,
    overLimit: data.overLimit ?? false,
    quotas: data.quotas ?? [],
  };
}

function holdFromRow(r: Row): OpenHold {
  return {
    reservationId: r.x!,
    metric: r.metric!,
    amount: r.n1,
    expiresAt: r.t1!,
    sequence: r.n2!,
    holds: ((r.j ?? []) as unknown as { period: PeriodKind; periodStart: string }[]).map((h) => ({
      period: h.period,
      periodStart: new Date(h.periodStart),
    })),
  };
}
