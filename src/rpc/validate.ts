import { invalid } from '../domain/errors.js';
import { isValidTimeZone, type PeriodKind } from '../domain/period.js';
import { DEFAULT_SUBJECT } from '../domain/quota.js';

// Every request field checked, each error naming the field as the proto spells it: the RPC
// layer's job (the domain decides on commands already valid).

export const LIMITS = {
  subjectBytes: 256,
  idempotencyKeyBytes: 256,
  reasonBytes: 1024,
  attributeCount: 32,
  attributeKeyBytes: 64,
  attributeValueBytes: 1024,
  maxPageSize: 1000,
  defaultPageSize: 100,
} as const;

const METRIC = /^[a-z][a-z0-9_.-]{0,63}$/;
const encoder = new TextEncoder();

export const byteLength = (s: string): number => encoder.encode(s).length;

/** Text PostgreSQL can store and a person can read back: valid UTF-16 (so valid UTF-8), no NUL. */
function checkText(field: string, value: string, maxBytes: number): void {
  if (!value.isWellFormed()) throw invalid(field, 'is not valid UTF-8');
  if (value.includes('\0')) throw invalid(field, 'must not contain NUL characters');
  const n = byteLength(value);
  if (n > maxBytes) throw invalid(field, `is ${n} bytes long; the maximum is ${maxBytes}`);
}

/** A subject that can consume: 1-256 bytes of UTF-8, and not the default marker "*". */
/**
 * The start of a value quoted back in an error message, cut between code points: a cut through
 * a surrogate pair would leave half of it, which no UTF-8 encoder can carry.
 */
function clip(value: string, max = 80): string {
  const head = value.slice(0, max);
  return /[\uD800-\uDBFF]$/.test(head) ? head.slice(0, -1) : head;
}

export function checkSubject(value: string, field = 'subject', allowDefault = false): string {
  if (value.length === 0) throw invalid(field, 'is required (1-256 bytes of UTF-8)');
  checkText(field, value, LIMITS.subjectBytes);
  if (value === DEFAULT_SUBJECT && !allowDefault) {
    throw invalid(field, '"*" names the default quotas and cannot be used here');
  }
  return value;
}

export function checkMetric(value: string, field = 'metric'): string {
  if (value.length === 0) throw invalid(field, 'is required');
  if (!value.isWellFormed()) throw invalid(field, 'is not valid UTF-8');
  if (!METRIC.test(value)) {
    throw invalid(field, `"${clip(value)}" does not match [a-z][a-z0-9_.-]{0,63}`);
  }
  return value;
}

export function checkOptionalMetric(value: string, field = 'metric'): string | null {
  return value === '' ? null : checkMetric(value, field);
}

export function checkAmount(value: bigint, field = 'amount'): bigint {
  if (value <= 0n) throw invalid(field, `must be greater than zero (got ${value})`);
  return value;
}

export function checkLimit(value: bigint, field = 'limit'): bigint {
  if (value < 0n) throw invalid(field, `must be zero or more (got ${value})`);
  return value;
}

export function checkIdempotencyKey(value: string, field = 'idempotency_key'): string | null {
  if (value === '') return null;
  checkText(field, value, LIMITS.idempotencyKeyBytes);
  return value;
}

/** An optional free-text filter, e.g. an actor name. */
export function checkOptionalText(value: string, field: string, maxBytes = 256): string | null {
  if (value === '') return null;
  checkText(field, value, maxBytes);
  return value;
}

export function checkReason(value: string, field = 'reason'): string | null {
  if (value === '') return null;
  checkText(field, value, LIMITS.reasonBytes);
  return value;
}

export function checkAttributes(
  value: Record<string, string>,
  field = 'attributes',
): Record<string, string> {
  const entries = Object.entries(value);
  if (entries.length > LIMITS.attributeCount) {
    throw invalid(field, `has ${entries.length} entries; the maximum is ${LIMITS.attributeCount}`);
  }
  for (const [k, v] of entries) {
    if (k === '') throw invalid(field, 'keys must not be empty');
    checkText(`${field} key`, k, LIMITS.attributeKeyBytes);
    checkText(`${field}["${k}"]`, v, LIMITS.attributeValueBytes);
  }
  return Object.fromEntries(entries);
}

export function checkTimeZone(value: string, field = 'time_zone'): string {
  if (value === '') return 'UTC';
  if (!value.isWellFormed()) throw invalid(field, 'is not valid UTF-8');
  if (value.length > 64 || !isValidTimeZone(value)) {
    throw invalid(field, `"${clip(value)}" is not an IANA time zone (e.g. "Europe/Paris")`);
  }
  return value;
}

export function checkAnchorDay(value: number, period: PeriodKind, field = 'anchor_day'): number {
  if (value === 0) return 0;
  if (period !== 'MONTH') throw invalid(field, 'applies only to PERIOD_MONTH; leave it 0');
  if (!Number.isInteger(value) || value < 1 || value > 31) {
    throw invalid(field, `must be 1-31, or 0 for the calendar month (got ${value})`);
  }
  return value;
}

export function checkPageSize(value: number, field = 'page_size'): number {
  if (value === 0) return LIMITS.defaultPageSize;
  if (!Number.isInteger(value) || value < 0 || value > LIMITS.maxPageSize) {
    throw invalid(field, `must be 1-${LIMITS.maxPageSize}, or 0 for ${LIMITS.defaultPageSize}`);
  }
  return value;
}

/** The shortest and longest hold a Reserve may ask for. */
export const MIN_TTL_MS = 1_000;
export const MAX_TTL_MS = 24 * 3600 * 1000;

export function checkTtlMs(ms: number | null, field = 'ttl'): number {
  if (ms === null) throw invalid(field, `is required (${MIN_TTL_MS / 1000} s to 24 h)`);
  if (!Number.isFinite(ms) || ms < MIN_TTL_MS || ms > MAX_TTL_MS) {
    throw invalid(field, `must be between 1 s and 24 h (got ${ms} ms)`);
  }
  return ms;
}

export function checkReservationId(value: string, field = 'reservation_id'): string {
  if (value.length === 0) throw invalid(field, 'is required (the id Reserve answered)');
  if (!/^[A-Za-z0-9-]{1,64}$/.test(value)) {
    throw invalid(field, `"${clip(value)}" is not a reservation id Reserve answers`);
  }
  return value;
}
