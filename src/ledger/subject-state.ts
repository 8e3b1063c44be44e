import type { PeriodKind } from '../domain/period.js';
import { counterKey, type OpenHold, type QuotaDef } from '../domain/quota.js';
import type { PriorUsage, SubjectState } from '../domain/subject-state.js';
import { DEFAULT_SUBJECT } from '../domain/quota.js';
import { decodeData } from './codec.js';
import type { Db, Tx } from './db.js';

/** A subject as read for a decision, with the row version a later write checks against. */
export interface LoadedSubject extends SubjectState {
  /** The subject row's version (xmin): any writer of the subject changes it. Null: no row yet. */
  version: string | null;
  /** Its last sequence as read; a decision moves lastSequence, the append expects this. */
  readSequence: bigint;
  /** The version of the defaults' row ("*") as read; null if no defaults were ever written. */
  defaultsVersion: string | null;
}

export interface StateKeys {
  subjects: readonly string[];
  /** Null reads every metric. */
  metrics: readonly string[] | null;
  /** (subject, idempotency key) of every consume that has a key. */
  keyed?: readonly { subject: string; key: string }[];
  /**
   * Loads the open holds that expire at or before this instant (the ones a decision at that
   * time must leave out, see OpenHold). Null loads none.
   */
  lapsedAt?: Date | null;
  /**
   * The command may decide from the states this process's last append left (SubjectCache),
   * and says in its outcome when its answer needs a read (Outcome.needsRead).
   */
  cached?: boolean;
}

// Everything a decision needs, in one statement and one round trip: the subject rows, the
// defaults' row, their quotas and the defaults, their counters, the usages already recorded
// under the keys the calls carry, and the holds that have lapsed. quota_read_subjects
// (migrations 1700000000031 and …032) returns them as one row shape, `kind` saying which;
// each kind fills its own columns.
const READ_SQL = 'SELECT * FROM quota_read_subjects($1, $2, $3, $4, $5, $6)';

interface Row {
  kind: 'subject' | 'defaults' | 'quota' | 'counter' | 'usage' | 'hold';
  subject: string;
  metric: string | null;
  period: PeriodKind | null;
  last_sequence: bigint | null;
  version: string | null;
  quota_limit: bigint | null;
  time_zone: string | null;
  anchor_day: number | null;
  updated_at: Date | null;
  used: bigint | null;
  reserved: bigint | null;
  period_start: Date | null;
  period_end: Date | null;
  last_reset_at: Date | null;
  amount: bigint | null;
  sequence: bigint | null;
  idempotency_key: string | null;
  data: Record<string, unknown> | null;
  expires_at: Date | null;
  reservation_id: string | null;
  holds: { period: PeriodKind; periodStart: string }[] | null;
}

/**
 * Reads the state of the given subjects in one statement: what every decision starts from.
 * A subject without a row yet (nothing ever written) has version null: only a locked
 * transaction may create its row.
 */
export async function readSubjects(
  q: Db | Tx,
  keys: StateKeys,
): Promise<Map<string, LoadedSubject>> {
  const keyed = keys.keyed ?? [];
  const rows = await q.query<Row>(READ_SQL, [
    keys.subjects,
    keys.metrics,
    keyed.map((k) => k.subject),
    keyed.map((k) => k.key),
    DEFAULT_SUBJECT,
    keys.lapsedAt ?? null,
  ]);
  // The defaults are shared by every subject of the read.
  const defs: QuotaDef[] = [];
  const defaultsVersion =
    rows.rows.find((r) => r.kind === 'defaults' && r.subject === DEFAULT_SUBJECT)?.version ?? null;
  const states = new Map<string, LoadedSubject>();
  for (const subject of keys.subjects) {
    states.set(subject, {
      subject,
      lastSequence: 0n,
      readSequence: 0n,
      version: null,
      defaultsVersion,
      defs,
      counters: new Map(),
      priors: new Map(),
      lapsed: [],
    });
  }
  for (const r of rows.rows) {
    const state = states.get(r.subject);
    switch (r.kind) {
      case 'subject':
        state!.lastSequence = state!.readSequence = r.last_sequence!;
        state!.version = r.version;
        break;
      case 'defaults':
        break;
      case 'quota':
        defs.push({
          subject: r.subject,
          metric: r.metric!,
          period: r.period!,
          limit: r.quota_limit!,
          timeZone: r.time_zone!,
          anchorDay: r.anchor_day!,
          updatedAt: r.updated_at!,
        });
        break;
      case 'counter':
        // In the order every other CounterState is built in (counterFromRow, the domain's
        // fresh counters): one hidden class, so the code deciding on counters read here and on
        // counters it made itself stays monomorphic instead of being deoptimised and
        // recompiled as the two meet.
        state!.counters.set(counterKey(r.metric!, r.period!), {
          used: r.used!,
          reserved: r.reserved!,
          periodStart: r.period_start!,
          periodEnd: r.period_end,
          lastResetAt: r.last_reset_at,
          lastSequence: r.last_sequence!,
        });
        break;
      case 'usage':
        state!.priors.set(r.idempotency_key!, priorOf(r));
        break;
      case 'hold':
        state!.lapsed.push(holdOf(r));
        break;
    }
  }
  return states;
}

function priorOf(r: Row): PriorUsage {
  const data = decodeData(r.data ?? {}, { subject: r.subject, metric: r.metric });
  return {
    metric: r.metric!,
    amount: r.amount!,
    sequence: r.sequence!,
    overLimit: data.overLimit ?? false,
    quotas: data.quotas ?? [],
  };
}

/** The columns of a `reservations` row that make an open hold. */
export type HoldRow = Pick<
  Row,
  'reservation_id' | 'metric' | 'amount' | 'expires_at' | 'sequence' | 'holds'
>;

/** An open hold from a `reservations` row (or a read row of kind `hold`). */
export function holdOf(r: HoldRow): OpenHold {
  return {
    reservationId: r.reservation_id!,
    metric: r.metric!,
    amount: r.amount!,
    expiresAt: r.expires_at!,
    sequence: r.sequence!,
    holds: (r.holds ?? []).map((h) => ({ period: h.period, periodStart: new Date(h.periodStart) })),
  };
}
