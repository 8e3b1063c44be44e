import { create } from '@bufbuild/protobuf';
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import type { ConsumeMode as DomainMode } from '../domain/consume.js';
import { invalid } from '../domain/errors.js';
import type { Effect, EventType as DomainEventType, StoredEvent } from '../domain/events.js';
import type { PeriodKind } from '../domain/period.js';
import type { QuotaDef, QuotaView } from '../domain/quota.js';
import type { ResetAttempt } from '../ledger/reset-runs.js';
import type { CounterDifference as Difference } from '../ledger/verify.js';
import type { ChainBreak as DomainBreak } from '../ledger/ledger-chain.js';
import type { CounterState as DomainCounter } from '../domain/quota.js';
import {
  ChainBreakKind,
  ChainBreakSchema,
  type ChainBreak,
  CounterDifferenceSchema,
  CounterStateSchema,
  type CounterDifference,
  type CounterState,
} from '../gen/quota/v1/quota_admin_service_pb.js';
import {
  ConsumeMode,
  EventType,
  LedgerEventSchema,
  Period,
  PeriodAmountSchema,
  QuotaSchema,
  ResetRunSchema,
  type LedgerEvent,
  type ResetRun,
  type PeriodAmount,
  type Quota,
  type QuotaStatus,
} from '../gen/quota/v1/types_pb.js';

export const PERIODS: Record<PeriodKind, Period> = {
  DAY: Period.DAY,
  WEEK: Period.WEEK,
  MONTH: Period.MONTH,
  NEVER: Period.NEVER,
};

const EVENT_TYPES: Record<DomainEventType, EventType> = {
  USAGE: EventType.USAGE,
  REFUND: EventType.REFUND,
  QUOTA_SET: EventType.QUOTA_SET,
  QUOTA_DELETED: EventType.QUOTA_DELETED,
  RESET_SCHEDULED: EventType.RESET_SCHEDULED,
  RESET_MANUAL: EventType.RESET_MANUAL,
  RESERVED: EventType.RESERVED,
  RESERVATION_COMMITTED: EventType.RESERVATION_COMMITTED,
  RESERVATION_CANCELLED: EventType.RESERVATION_CANCELLED,
  RESERVATION_EXPIRED: EventType.RESERVATION_EXPIRED,
};

const invert = <K extends string, V extends number>(r: Record<K, V>): Map<number, K> =>
  new Map(Object.entries(r).map(([k, v]) => [v as number, k as K]));
const periodKinds = invert(PERIODS);
const eventTypes = invert(EVENT_TYPES);

export const periodToProto = (p: PeriodKind): Period => PERIODS[p];

/** A period the caller must name. */
export function periodFromProto(p: Period, field = 'period'): PeriodKind {
  const kind = periodKinds.get(p);
  if (!kind) {
    throw invalid(
      field,
      `must be PERIOD_DAY, PERIOD_WEEK, PERIOD_MONTH or PERIOD_NEVER (got ${p})`,
    );
  }
  return kind;
}

/** A period filter: PERIOD_UNSPECIFIED means any. */
export const optionalPeriodFromProto = (p: Period, field = 'period'): PeriodKind | null =>
  p === Period.UNSPECIFIED ? null : periodFromProto(p, field);

export function modeFromProto(m: ConsumeMode): DomainMode {
  switch (m) {
    case ConsumeMode.UNSPECIFIED:
    case ConsumeMode.ENFORCE:
      return 'ENFORCE';
    case ConsumeMode.RECORD:
      return 'RECORD';
    case ConsumeMode.DRY_RUN:
      return 'DRY_RUN';
    default:
      throw invalid(
        'mode',
        `must be CONSUME_MODE_ENFORCE, CONSUME_MODE_RECORD or CONSUME_MODE_DRY_RUN (got ${m})`,
      );
  }
}

export function eventTypeFromProto(t: EventType, field = 'types'): DomainEventType {
  const kind = eventTypes.get(t);
  if (!kind) throw invalid(field, `${t} is not an event type`);
  return kind;
}

/**
 * A Timestamp as protobuf-es's `timestampFromDate` makes it, written as the plain object a
 * message is: `create` walks the schema's fields for every message, a few µs per answer of
 * the hot calls for their timestamps and statuses (docs/benchmarks.md, eighth round).
 */
export function ts(d: Date): Timestamp {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return {
    $typeName: 'google.protobuf.Timestamp',
    seconds: BigInt(seconds),
    nanos: (ms - seconds * 1000) * 1_000_000,
  };
}
const optTs = (d: Date | null | undefined): Timestamp | undefined => (d ? ts(d) : undefined);

/** An optional timestamp field, checked to be a real instant. */
export function dateFromProto(t: Timestamp | undefined, field: string): Date | null {
  if (!t) return null;
  if (t.nanos < 0 || t.nanos > 999_999_999) throw invalid(field, 'nanos must be 0-999999999');
  // The range google.protobuf.Timestamp defines: 0001-01-01 to 9999-12-31.
  if (t.seconds < -62_135_596_800n || t.seconds > 253_402_300_799n) {
    throw invalid(field, 'must be between 0001-01-01 and 9999-12-31');
  }
  const d = timestampDate(t);
  if (Number.isNaN(d.getTime())) throw invalid(field, 'is not a valid instant');
  return d;
}

// A plain object, as `ts` above; the type requires every field.
export const statusToProto = (v: QuotaView): QuotaStatus => ({
  $typeName: 'quota.v1.QuotaStatus',
  subject: v.subject,
  metric: v.metric,
  period: PERIODS[v.period],
  timeZone: v.timeZone,
  anchorDay: v.anchorDay,
  limit: v.limit,
  used: v.used,
  reserved: v.reserved,
  remaining: v.remaining,
  periodStart: ts(v.periodStart),
  periodEnd: optTs(v.periodEnd),
  lastResetAt: optTs(v.lastResetAt),
  isDefault: v.isDefault,
  exceeded: v.exceeded,
});

export const quotaToProto = (q: QuotaDef): Quota =>
  create(QuotaSchema, {
    subject: q.subject,
    metric: q.metric,
    period: PERIODS[q.period],
    limit: q.limit,
    timeZone: q.timeZone,
    anchorDay: q.anchorDay,
    updatedAt: ts(q.updatedAt),
  });

export const periodAmountToProto = (e: Effect): PeriodAmount =>
  create(PeriodAmountSchema, {
    period: PERIODS[e.period],
    periodStart: ts(e.periodStart),
    amount: e.delta,
  });

export function eventToProto(e: StoredEvent): LedgerEvent {
  const q = e.data.quota;
  return create(LedgerEventSchema, {
    position: e.position,
    subject: e.subject,
    sequence: e.sequence,
    type: EVENT_TYPES[e.type],
    metric: e.metric ?? '',
    amount: e.amount ?? 0n,
    period: e.period ? PERIODS[e.period] : Period.UNSPECIFIED,
    periodStart: optTs(e.periodStart),
    periodEnd: optTs(e.periodEnd),
    previousPeriodStart: optTs(e.data.previousPeriodStart),
    actor: e.actor,
    reason: e.reason ?? '',
    idempotencyKey: e.idempotencyKey ?? '',
    attributes: e.attributes ?? {},
    recordedAt: ts(e.recordedAt),
    quota:
      q && e.metric && e.period
        ? quotaToProto({
            subject: e.subject,
            metric: e.metric,
            period: e.period,
            ...q,
            updatedAt: e.recordedAt,
          })
        : undefined,
    usedBefore: e.data.usedBefore ?? 0n,
    overLimit: e.data.overLimit ?? false,
    credited:
      e.type === 'REFUND'
        ? (e.data.effects ?? []).map((fx) => periodAmountToProto({ ...fx, delta: -fx.delta }))
        : [],
    refundedSequence: e.data.refundedSequence ?? 0n,
    reservationId: e.data.reservationId ?? '',
  });
}

export const runToProto = (r: ResetAttempt): ResetRun =>
  create(ResetRunSchema, {
    id: r.id ?? 0n,
    startedAt: ts(r.startedAt),
    finishedAt: optTs(r.finishedAt),
    trigger: r.trigger,
    replicaId: r.replicaId,
    countersRolled: BigInt(r.countersRolled),
    attempt: r.attempt,
    outcome: r.outcome,
    error: r.error ?? '',
  });

const counterToProto = (c: DomainCounter): CounterState =>
  create(CounterStateSchema, {
    used: c.used,
    reserved: c.reserved,
    periodStart: ts(c.periodStart),
    periodEnd: optTs(c.periodEnd),
    lastResetAt: optTs(c.lastResetAt),
    lastSequence: c.lastSequence,
  });

export const differenceToProto = (d: Difference): CounterDifference =>
  create(CounterDifferenceSchema, {
    subject: d.subject,
    metric: d.metric,
    period: PERIODS[d.period],
    ledger: d.ledger ? counterToProto(d.ledger) : undefined,
    projection: d.projection ? counterToProto(d.projection) : undefined,
    positions: d.positions,
  });

export const chainBreakToProto = (b: DomainBreak): ChainBreak =>
  create(ChainBreakSchema, {
    kind: ChainBreakKind[b.kind],
    subject: b.subject,
    sequence: b.sequence,
    position: b.position ?? 0n,
    detail: b.detail,
  });
