import type { Effect, EventData, EventType, NewEvent, StoredEvent } from '../domain/events.js';
import type { PeriodKind } from '../domain/period.js';
import { remainingOf, type CounterState, type QuotaDef, type QuotaView } from '../domain/quota.js';

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

// Characters a JSON string must escape; most strings here have none and are written as they are.
// eslint-disable-next-line no-control-regex -- control characters are among those JSON escapes
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/** A JSON string literal; most strings here (keys, zones, names) need no escaping and are copied. */
const jsonString = (v: string): string => (NEEDS_ESCAPE.test(v) ? JSON.stringify(v) : `"${v}"`);

function encodeValue(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return jsonString(v);
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
        out += (out.length > 1 ? ',' : '') + jsonString(key) + ':' + item;
      }
      return out + '}';
    }
    default:
      // undefined, functions and symbols: left out of objects, null in arrays, as JSON.stringify does.
      return undefined;
  }
}

/**
 * An event's `data` as the ledger stores it. A USAGE event keeps the answer its call got, to
 * replay to a retry with the same key, in a compact form (`answer`): entry n belongs to effect
 * n, whose period and bounds it shares, the subject and metric are the event's, `remaining`
 * follows from limit, used and reserved, and zero, null and false values are left out. That
 * is about 40 % fewer bytes than the full views (`quotas`, as earlier releases wrote), to
 * send, check, hash and keep. A payload that does not have that shape is stored in full.
 */
export function eventDataJson(ev: NewEvent): string {
  return (ev.type === 'USAGE' && usageJson(ev)) || encodeJson(ev.data);
}

function usageJson(ev: NewEvent): string | null {
  const { effects, quotas, overLimit } = ev.data;
  if (!effects || !quotas || effects.length !== quotas.length || overLimit === undefined) {
    return null;
  }
  for (const key in ev.data) {
    if (key !== 'effects' && key !== 'quotas' && key !== 'overLimit') return null;
  }
  let answer = '';
  let fxs = '';
  for (let i = 0; i < quotas.length; i++) {
    const q = quotas[i]!;
    const fx = effects[i]!;
    // As encodeJson writes an effect, without walking its keys.
    const end = fx.periodEnd === null ? 'null' : `"${isoString(fx.periodEnd)}"`;
    fxs += `${i ? ',' : ''}{"period":${jsonString(fx.period)},"periodStart":"${isoString(fx.periodStart)}","periodEnd":${end},"delta":"${fx.delta}"}`;
    if (
      q.subject !== ev.subject ||
      q.metric !== ev.metric ||
      q.period !== fx.period ||
      q.periodStart.getTime() !== fx.periodStart.getTime() ||
      (q.periodEnd?.getTime() ?? null) !== (fx.periodEnd?.getTime() ?? null) ||
      q.remaining !== remainingOf(q.limit, q.used, q.reserved)
    ) {
      return null;
    }
    answer += `${i ? ',' : ''}{"timeZone":${jsonString(q.timeZone)},"anchorDay":${q.anchorDay},"limit":"${q.limit}","used":"${q.used}"`;
    if (q.reserved !== 0n) answer += `,"reserved":"${q.reserved}"`;
    if (q.lastResetAt !== null) answer += `,"lastResetAt":"${isoString(q.lastResetAt)}"`;
    if (q.isDefault) answer += ',"isDefault":true';
    if (q.exceeded) answer += ',"exceeded":true';
    answer += '}';
  }
  return `{"overLimit":${overLimit},"effects":[${fxs}],"answer":[${answer}]}`;
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

// An entry of a USAGE event's compact answer (see eventDataJson), with what it leaves to the
// event and to its effect of the same index.
function answerView(j: Json, fx: Effect, subject: string, metric: string): QuotaView {
  const limit = big(j.limit);
  const used = big(j.used);
  const reserved = j.reserved == null ? 0n : big(j.reserved);
  return {
    subject,
    metric,
    period: fx.period,
    timeZone: j.timeZone as string,
    anchorDay: j.anchorDay as number,
    limit,
    used,
    reserved,
    remaining: remainingOf(limit, used, reserved),
    periodStart: fx.periodStart,
    periodEnd: fx.periodEnd,
    lastResetAt: optDate(j.lastResetAt),
    isDefault: j.isDefault === true,
    exceeded: j.exceeded === true,
  };
}

/** An event's `data` as stored, in either form a USAGE answer has been written in. */
export function decodeData(j: Json, event: { subject: string; metric: string | null }): EventData {
  const d: EventData = {};
  if (Array.isArray(j.effects)) d.effects = (j.effects as Json[]).map(decodeEffect);
  if (Array.isArray(j.quotas)) d.quotas = (j.quotas as Json[]).map(decodeView);
  if (Array.isArray(j.answer) && d.effects) {
    const effects = d.effects;
    d.quotas = (j.answer as Json[]).map((a, i) =>
      answerView(a, effects[i]!, event.subject, event.metric ?? ''),
    );
  }
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
    data: decodeData(r.data, r),
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
