import { DEFAULT_SUBJECT } from '../domain/quota.js';
import type { SubjectChanges } from '../domain/subject-state.js';
import { encodeJson, eventDataJson, isoString } from './codec.js';
import type { Db, Tx } from './db.js';
import { arrayLiteral, bareElement as bare, textElement as text } from './array-literal.js';

/** One subject's changes, with what its row must still be for them to be written. */
export interface SubjectAppend extends SubjectChanges {
  /** The subject row's xmin as read; null when the writer holds the row's lock. */
  version: string | null;
  /** The sequence the events follow (the expected version): still the subject's, or nothing is written. */
  lastSequence: bigint;
}

// Dates go as ISO text: pg's own conversion (local time and offset) costs as much as
// toISOString, which codec.ts's isoString mostly skips.
const iso = (d: Date | null): string | null => (d === null ? null : isoString(d));

const CALL = `SELECT quota_append_versioned(${Array.from({ length: 29 }, (_, i) => `$${i + 1}`).join(', ')}) AS version`;

/** What an append wrote. */
export interface Appended {
  /** How many events of each type. */
  counts: Record<string, number>;
  /** The version (xmin) every subject row it wrote now has; null if it wrote none. */
  version: string | null;
}

/**
 * Appends the changes of any number of subjects in one statement (quota_append_versioned, see
 * its migration): events, the counters they leave, each subject's new last sequence, checked
 * against the sequence and version read, and with `defaultsVersion` (undefined: unchecked)
 * against the defaults' version read. Fails with 40001 and writes nothing if any has changed.
 */
export async function append(
  q: Db | Tx,
  batch: readonly SubjectAppend[],
  defaultsVersion?: string | null,
): Promise<Appended> {
  // Column arrays, filled in one pass: a flush may carry thousands of events.
  const e = Array.from({ length: 12 }, (): (string | bigint)[] => []);
  // Payloads go as one JSON array each, element n for event n (see the function).
  const attributes: unknown[] = [];
  const data: string[] = [];
  const c = Array.from({ length: 9 }, (): (string | bigint)[] => []);
  const s = Array.from({ length: 4 }, (): (string | bigint)[] => []);
  const counts: Record<string, number> = {};
  for (const x of batch) {
    if (x.events.length === 0 && x.counters.length === 0) continue;
    for (const ev of x.events) {
      e[0]!.push(text(ev.subject));
      e[1]!.push(ev.sequence);
      e[2]!.push(text(ev.type));
      e[3]!.push(text(ev.metric));
      e[4]!.push(bare(ev.amount));
      e[5]!.push(text(ev.period));
      e[6]!.push(bare(iso(ev.periodStart)));
      e[7]!.push(bare(iso(ev.periodEnd)));
      e[8]!.push(text(ev.actor));
      e[9]!.push(text(ev.reason));
      e[10]!.push(text(ev.idempotencyKey));
      e[11]!.push(isoString(ev.recordedAt));
      attributes.push(ev.attributes);
      data.push(eventDataJson(ev));
      counts[ev.type] = (counts[ev.type] ?? 0) + 1;
    }
    for (const w of x.counters) {
      c[0]!.push(text(x.subject));
      c[1]!.push(text(w.metric));
      c[2]!.push(text(w.period));
      c[3]!.push(w.state.used);
      c[4]!.push(w.state.reserved);
      c[5]!.push(isoString(w.state.periodStart));
      c[6]!.push(bare(iso(w.state.periodEnd)));
      c[7]!.push(bare(iso(w.state.lastResetAt)));
      c[8]!.push(w.state.lastSequence);
    }
    s[0]!.push(text(x.subject));
    s[1]!.push(x.lastSequence);
    s[2]!.push(x.events.at(-1)?.sequence ?? x.lastSequence);
    s[3]!.push(bare(x.version));
  }
  if (s[0]!.length === 0) return { counts, version: null };
  // In the function's order: the event columns up to the key, the two JSON arrays, recorded_at,
  // the counter and subject columns, the defaults checked. Pushed one by one: built with array
  // spreads, this statement was deoptimised ("wrong map") and recompiled again and again under
  // load, about 150 ms of compiler time each round (docs/benchmarks.md, seventh round).
  const params: (string | null)[] = [];
  for (let i = 0; i < 11; i++) params.push(arrayLiteral(e[i]!));
  params.push(encodeJson(attributes), `[${data.join(',')}]`, arrayLiteral(e[11]!));
  for (const column of c) params.push(arrayLiteral(column));
  for (const column of s) params.push(arrayLiteral(column));
  if (defaultsVersion === undefined) params.push(null, null);
  else params.push(DEFAULT_SUBJECT, defaultsVersion);
  const { rows } = await q.query<{ version: string }>(CALL, params);
  return { counts, version: rows[0]!.version };
}
