import type { PeriodKind } from './period.js';
import type { QuotaView } from './quota.js';

export type EventType =
  | 'USAGE'
  | 'REFUND'
  | 'QUOTA_SET'
  | 'QUOTA_DELETED'
  | 'RESET_SCHEDULED'
  | 'RESET_MANUAL'
  | 'RESERVED'
  | 'RESERVATION_COMMITTED'
  | 'RESERVATION_CANCELLED'
  | 'RESERVATION_EXPIRED';

/** The events that settle a reservation; the database allows one per reservation. */
export type SettlementType =
  'RESERVATION_COMMITTED' | 'RESERVATION_CANCELLED' | 'RESERVATION_EXPIRED';

export const EVENT_TYPES: readonly EventType[] = [
  'USAGE',
  'REFUND',
  'QUOTA_SET',
  'QUOTA_DELETED',
  'RESET_SCHEDULED',
  'RESET_MANUAL',
  'RESERVED',
  'RESERVATION_COMMITTED',
  'RESERVATION_CANCELLED',
  'RESERVATION_EXPIRED',
];

/** A change to one period counter, carried by USAGE (positive) and REFUND (negative) events. */
export interface Effect {
  period: PeriodKind;
  periodStart: Date;
  periodEnd: Date | null;
  delta: bigint;
}

/** The quota settings recorded by QUOTA_SET and QUOTA_DELETED. */
export interface QuotaSettings {
  limit: bigint;
  timeZone: string;
  anchorDay: number;
}

/** Type-specific payload, kept as JSON in the ledger. */
export interface EventData {
  effects?: Effect[];
  /** USAGE: the answer given, replayed to a retry with the same idempotency key. */
  quotas?: QuotaView[];
  overLimit?: boolean;
  refundedSequence?: bigint;
  previousPeriodStart?: Date;
  previousPeriodEnd?: Date;
  usedBefore?: bigint;
  quota?: QuotaSettings;
  /** Reservation events: the reservation they belong to. */
  reservationId?: string;
  /** RESERVED: when the hold stops counting. */
  expiresAt?: Date;
  /** RESERVATION_COMMITTED: the amount that was held. */
  reservedAmount?: bigint;
  /**
   * Reservation events: changes to counters' `reserved` (+amount when held, -amount when
   * released), only for counters still in the period the hold was made in.
   */
  holds?: Effect[];
  /** RESET_SCHEDULED written by a sweep: the reset run (GetResetStatus, ListResetRuns) that wrote it. */
  runId?: string;
}

export interface NewEvent {
  type: EventType;
  subject: string;
  metric: string | null;
  amount: bigint | null;
  period: PeriodKind | null;
  periodStart: Date | null;
  periodEnd: Date | null;
  actor: string;
  reason: string | null;
  idempotencyKey: string | null;
  attributes: Record<string, string> | null;
  recordedAt: Date;
  data: EventData;
}

export interface StoredEvent extends NewEvent {
  position: bigint;
  sequence: bigint;
}

/** Fills the fields an event type does not use. */
export function newEvent(
  e: Pick<NewEvent, 'type' | 'subject' | 'actor' | 'recordedAt'> & Partial<NewEvent>,
): NewEvent {
  return {
    metric: null,
    amount: null,
    period: null,
    periodStart: null,
    periodEnd: null,
    reason: null,
    idempotencyKey: null,
    attributes: null,
    data: {},
    ...e,
  };
}

/** The actor of the events the service writes on its own: period rolls and hold expiries. */
export const SCHEDULER_ACTOR = 'scheduler';
