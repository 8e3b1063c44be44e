import type { Effect, EventData, EventType, StoredEvent } from '../domain/events.js';
import type { PeriodKind } from '../domain/period.js';
import type { CounterState, QuotaDef, QuotaView } from '../domain/quota.js';

/**
 * JSON for the ledger's jsonb: bigints as decimal strings, dates as ISO strings; otherwise what
 * JSON.stringify gives. Written out by hand because JSON.stringify with a replacer function
 * (the only way it takes bigints) was about 8 % of a ConsumeBatch flush's CPU; this takes about
 * two thirds of its time for an event's payload.
 */
export function encodeJson(value: unknown): string {
  return encodeValue(value) ?? 'null';
}

// The ISO text of the last instants written. A flush writes the same few over and over (the
// period bounds of its counters, its own time): a lookup costs about 12 ns, toISOString about
// 450 ns, and an event carries six or seven dates between its columns and its payload.
const isoCache = new Map<number, string>();
const ISO_CACHE_SIZE = 512;

/** `d.toISOString()`, remembered for the instants most recently asked for. */
export function isoString(d: Date): string {
  const t = d.getTime();
  let s = isoCache.get(t);
  if (s === undefined) {
    s = d.toISOString(); // throws for an invalid date, as toISOString does, before caching
    if (isoCache.size >= ISO_CACHE_SIZE) isoCache.clear();
    isoCache.set(t, s);
  }
  return s;
}

// Characters a key must be escaped for; most keys have none and are written as they are.
// eslint-disable-next-line no-control-regex -- control characters are among those JSON escapes
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

function encodeValue(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'bigint':
      return `"${v}"`;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      if (v === null) return 'null';
      if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'null' : `"${isoString(v)}"`;
      if (Array.isArray(v)) {
        let out = '[';
        for (let i = 0; i < v.length; i++) out += (i ? ',' : '') + (encodeValue(v[i]) ?? 'null');
        return out + ']';
      }
      const o = v as Record<string, unknown> & { toJSON?: (key: string) => unknown };
      if (typeof o.toJSON === 'function') return encodeValue(o.toJSON(''));
      let out = '{';
      for (const key of Object.keys(o)) {
        const item = encodeValue(o[key]);
        if (item === undefined) continue;
        const name = NEEDS_ESCAPE.test(key) ? JSON.stringify(key) : `"${key}"`;
        out += (out.length > 1 ? ',' : '') + name + ':' + item;
      }
      return out + '}';
    }
    default:
      // undefined, functions and symbols: left out of objects, null in arrays, as JSON.stringify does.
      return undefined;
  }
}

type Json = Record<string, unknown>;

const date = (v: unknown): Date => new Date(v as string);
const optDate = (v: unknown): Date | null => (v == null ? null : date(v));
const big = (v: unknown): bigint => BigInt(v as string);

function decodeEffect(j: Json): Effect {
  return {
    period: j.period as PeriodKind,
    periodStart: date(j.periodStart),
    periodEnd: optDate(j.periodEnd),
    delta: big(j.delta),
  };
}

function decodeView(j: Json): QuotaView {
  return {
    subject: j.subject as string,
    metric: j.metric as string,
    period: j.period as PeriodKind,
    timeZone: j.timeZone as string,
    anchorDay: j.anchorDay as number,
    limit: big(j.limit),
    used: big(j.used),
    // Answers recorded before reservations existed carry no reserved amount.
    reserved: j.reserved == null ? 0n : big(j.reserved),
    remaining: big(j.remaining),
    periodStart: date(j.periodStart),
    periodEnd: optDate(j.periodEnd),
    lastResetAt: optDate(j.lastResetAt),
    isDefault: j.isDefault as boolean,
    exceeded: j.exceeded as boolean,
  };
}

export function decodeData(j: Json): EventData {
  const d: EventData = {};
  if (Array.isArray(j.effects)) d.effects = (j.effects as Json[]).map(decodeEffect);
  if (Array.isArray(j.quotas)) d.quotas = (j.quotas as Json[]).map(decodeView);
  if (typeof j.overLimit === 'boolean') d.overLimit = j.overLimit;
  if (j.refundedSequence != null) d.refundedSequence = big(j.refundedSequence);
  if (j.previousPeriodStart != null) d.previousPeriodStart = date(j.previousPeriodStart);
  if (j.previousPeriodEnd != null) d.previousPeriodEnd = date(j.previousPeriodEnd);
  if (j.usedBefore != null) d.usedBefore = big(j.usedBefore);
  if (typeof j.reservationId === 'string') d.reservationId = j.reservationId;
  if (j.expiresAt != null) d.expiresAt = date(j.expiresAt);
  if (j.reservedAmount != null) d.reservedAmount = big(j.reservedAmount);
  if (typeof j.runId === 'string') d.runId = j.runId;
  if (Array.isArray(j.holds)) d.holds = (j.holds as Json[]).map(decodeEffect);
  if (j.quota != null) {
    const q = j.quota as Json;
    d.quota = {
      limit: big(q.limit),
      timeZone: q.timeZone as string,
      anchorDay: q.anchorDay as number,
    };
  }
  return d;
}

export interface EventRow {
  position: bigint;
  subject: string;
  sequence: bigint;
  type: EventType;
  metric: string | null;
  amount: bigint | null;
  period: PeriodKind | null;
  period_start: Date | null;
  period_end: Date | null;
  actor: string;
  reason: string | null;
  idempotency_key: string | null;
  attributes: Record<string, string> | null;
  data: Json;
  recorded_at: Date;
}

export const EVENT_COLUMNS = `position, subject, sequence, type, metric, amount, period, period_start,
  period_end, actor, reason, idempotency_key, attributes, data, recorded_at`;

export function eventFromRow(r: EventRow): StoredEvent {
  return {
    position: r.position,
    subject: r.subject,
    sequence: r.sequence,
    type: r.type,
    metric: r.metric,
    amount: r.amount,
    period: r.period,
    periodStart: r.period_start,
    periodEnd: r.period_end,
    actor: r.actor,
    reason: r.reason,
    idempotencyKey: r.idempotency_key,
    attributes: r.attributes,
    data: decodeData(r.data),
    recordedAt: r.recorded_at,
  };
}

export interface QuotaRow {
  subject: string;
  metric: string;
  period: PeriodKind;
  quota_limit: bigint;
  time_zone: string;
  anchor_day: number;
  updated_at: Date;
}

export const QUOTA_COLUMNS =
  'subject, metric, period, quota_limit, time_zone, anchor_day, updated_at';

export const quotaFromRow = (r: QuotaRow): QuotaDef => ({
  subject: r.subject,
  metric: r.metric,
  period: r.period,
  limit: r.quota_limit,
  timeZone: r.time_zone,
  anchorDay: r.anchor_day,
  updatedAt: r.updated_at,
});

export interface CounterRow {
  subject: string;
  metric: string;
  period: PeriodKind;
  used: bigint;
  period_start: Date;
  period_end: Date | null;
  last_reset_at: Date | null;
  last_sequence: bigint;
  reserved: bigint;
}

export const COUNTER_COLUMNS =
  'subject, metric, period, used, period_start, period_end, last_reset_at, last_sequence, reserved';

export const counterFromRow = (r: CounterRow): CounterState => ({
  used: r.used,
  reserved: r.reserved,
  periodStart: r.period_start,
  periodEnd: r.period_end,
  lastResetAt: r.last_reset_at,
  lastSequence: r.last_sequence,
});
