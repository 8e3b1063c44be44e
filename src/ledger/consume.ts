import {
  applyConsumes,
  cancelledBeforeCommit,
  type ConsumeCall,
  type ConsumeOutcome,
  type ConsumeResult,
  type CounterWrite,
  type SequencedEvent,
} from '../domain/consume-batch.js';
import { COUNTER_COLUMNS, encodeJson } from './codec.js';
import type { ConsumeCommand, LedgerDeps } from './commands.js';
import { readConsumeState, type ConsumeKeys, type LoadedSubject } from './consume-state.js';
import {
  autocommit,
  countAppended,
  countByType,
  inTransaction,
  mapDbError,
  pgCode,
  type Db,
  type Tx,
} from './db.js';

export type { ConsumeCall, ConsumeOutcome, ConsumeResult } from '../domain/consume-batch.js';
export { noQuota } from '../domain/consume-batch.js';

/** A call waiting in a flush; a fired signal before the decision drops it unrecorded. */
export interface PendingConsume extends ConsumeCall {
  signal?: AbortSignal;
}

/** What a flush writes: events, the final state of each counter, and each subject's check. */
interface Changes {
  outcomes: ConsumeOutcome[];
  events: SequencedEvent[];
  counters: (CounterWrite & { subject: string })[];
  subjects: { subject: string; last: bigint; version: string | null }[];
}

// Raised by quota_expect when another writer got to a subject between our read and write.
const CONFLICT = '40001';
// An idempotency key recorded by another writer in between: the locked path replays it.
const DUPLICATE_KEY = '23505';

/**
 * Applies consumes in the order given, each answered on its own, and commits them together.
 *
 * First without any lock, in two round trips: one statement reads every subject's state, the
 * calls are decided in memory, and one autocommitted statement writes every event, counter
 * and sequence, provided no other writer has touched those subjects since the read (their
 * row versions are checked in the same statement). If one has, or a subject is new, the
 * flush is redone in a transaction that locks the subjects first (sorted, so flushes never
 * deadlock each other). Either way a call is answered only after its writes have committed,
 * and a failure of the write fails every call of the flush with nothing committed.
 */
export async function consumeMany(
  deps: LedgerDeps,
  calls: readonly PendingConsume[],
  signal?: AbortSignal,
): Promise<ConsumeOutcome[]> {
  // Holds lapsed by now are left out of the decisions; one that lapses between this read and
  // the decision still counts, which can only refuse, never overspend.
  const keys = { ...keysOf(calls), lapsedAt: deps.clock.now() };
  try {
    const states = await readConsumeState(deps.db, keys);
    if ([...states.values()].every((s) => s.version !== null)) {
      const changes = decide(states, calls, deps.clock.now());
      if (signal?.aborted) throw cancelledBeforeCommit();
      const counts = countByType(changes.events);
      await autocommit(deps.db, counts, () => writeChanges(deps.db, changes, true));
      return changes.outcomes;
    }
  } catch (err) {
    const code = pgCode(err);
    if (code !== CONFLICT && code !== DUPLICATE_KEY) throw mapDbError(err);
  }
  return consumeLocked(deps, calls, keys, signal);
}

/** The same under the subjects' locks, creating the subject rows that do not exist yet. */
function consumeLocked(
  deps: LedgerDeps,
  calls: readonly PendingConsume[],
  keys: ConsumeKeys,
  signal?: AbortSignal,
): Promise<ConsumeOutcome[]> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const created = await lockSubjects(tx, keys.subjects);
      // Read after the locks are held: in READ COMMITTED each statement sees what committed
      // before it started, so these rows are the latest any writer of these subjects left.
      const now = deps.clock.now();
      const states = await readConsumeState(tx, { ...keys, lapsedAt: now });
      const changes = decide(states, calls, now);
      await writeChanges(tx, changes, false);
      countAppended(tx, countByType(changes.events));
      // A subject row made just now for calls that recorded nothing would be an empty trace
      // of failed calls; a call that changes nothing leaves nothing. (The service's role may
      // not DELETE from subjects; this function removes only rows that never got an event.)
      const unused = created.filter((s) => states.get(s)!.lastSequence === 0n);
      if (unused.length > 0) {
        await tx.query('SELECT quota_forget_unused_subjects($1::text[])', [unused]);
      }
      return changes.outcomes;
    },
    signal,
  );
}

/** One Consume in its own flush: the unbatched path, and the reference for the batched one. */
export async function consume(
  deps: LedgerDeps,
  cmd: ConsumeCommand,
  actor: string,
  signal?: AbortSignal,
): Promise<ConsumeResult> {
  const [outcome] = await consumeMany(deps, [{ cmd, actor }], signal);
  if (!outcome!.ok) throw outcome!.error;
  return outcome!.result;
}

function keysOf(calls: readonly PendingConsume[]): ConsumeKeys {
  const subjects = [...new Set(calls.map((c) => c.cmd.subject))].sort();
  const metrics = [...new Set(calls.map((c) => c.cmd.metric))];
  const keyed = calls
    .filter((c) => c.cmd.idempotencyKey)
    .map((c) => ({ subject: c.cmd.subject, key: c.cmd.idempotencyKey! }));
  return { subjects, metrics, keyed };
}

/** Locks the subjects in sorted order; returns those whose rows it had to create. */
async function lockSubjects(tx: Tx, subjects: readonly string[]): Promise<string[]> {
  const lockSql = `SELECT subject FROM subjects WHERE subject = ANY($1::text[])
    ORDER BY subject FOR UPDATE`;
  const found = new Set(
    (await tx.query<{ subject: string }>(lockSql, [subjects])).rows.map((r) => r.subject),
  );
  const missing = subjects.filter((s) => !found.has(s));
  if (missing.length > 0) {
    await tx.query(
      `INSERT INTO subjects (subject) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING`,
      [missing],
    );
    await tx.query(lockSql, [missing]);
  }
  return missing;
}

/** Decides every call, subject by subject, each subject's calls in arrival order. */
function decide(
  states: Map<string, LoadedSubject>,
  calls: readonly PendingConsume[],
  now: Date,
): Changes {
  const bySubject = new Map<string, number[]>();
  calls.forEach((c, i) => {
    const list = bySubject.get(c.cmd.subject);
    if (list) list.push(i);
    else bySubject.set(c.cmd.subject, [i]);
  });
  const changes: Changes = {
    outcomes: new Array(calls.length),
    events: [],
    counters: [],
    subjects: [],
  };
  for (const [subject, indexes] of bySubject) {
    const live = indexes.filter((i) => {
      if (!calls[i]!.signal?.aborted) return true;
      changes.outcomes[i] = { ok: false, error: cancelledBeforeCommit() };
      return false;
    });
    const state = states.get(subject)!;
    const before = state.lastSequence;
    const applied = applyConsumes(
      state,
      live.map((i) => calls[i]!),
      now,
    );
    live.forEach((i, k) => (changes.outcomes[i] = applied.outcomes[k]!));
    changes.events.push(...applied.events);
    for (const c of applied.counters) changes.counters.push({ subject, ...c });
    if (applied.lastSequence !== before) {
      changes.subjects.push({ subject, last: applied.lastSequence, version: state.version });
    }
  }
  return changes;
}

/**
 * Every event, counter and subject sequence of a flush in one statement of array parameters.
 * With `checkVersions`, the statement also fails (40001, nothing written) if any subject row
 * changed since it was read.
 */
async function writeChanges(q: Db | Tx, c: Changes, checkVersions: boolean): Promise<void> {
  if (c.events.length === 0 && c.counters.length === 0) return;
  const col = <T>(f: (e: SequencedEvent) => T): T[] => c.events.map(f);
  const ccol = <T>(f: (x: CounterWrite & { subject: string }) => T): T[] => c.counters.map(f);
  await q.query(
    `WITH appended AS (
       INSERT INTO ledger_events (subject, sequence, type, metric, amount, period, period_start,
         period_end, actor, reason, idempotency_key, attributes, data, recorded_at)
       SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::text[],
         $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::jsonb[],
         $13::jsonb[], $14::timestamptz[])
     ), projected AS (
       INSERT INTO counters (${COUNTER_COLUMNS})
       SELECT * FROM unnest($15::text[], $16::text[], $17::text[], $18::int8[], $19::timestamptz[],
         $20::timestamptz[], $21::timestamptz[], $22::int8[], $28::int8[])
       ON CONFLICT (subject, metric, period) DO UPDATE SET
         used = EXCLUDED.used, reserved = EXCLUDED.reserved, period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end,
         last_reset_at = EXCLUDED.last_reset_at, last_sequence = EXCLUDED.last_sequence
     ), sequenced AS (
       UPDATE subjects s SET last_sequence = u.last
         FROM unnest($23::text[], $24::int8[], $25::text[]) AS u(subject, last, version)
        WHERE s.subject = u.subject AND ($26::boolean IS FALSE OR s.xmin::text = u.version)
       RETURNING 1
     )
     SELECT quota_expect((SELECT count(*) FROM sequenced) = $27, 'a subject changed since it was read')`,
    [
      col((e) => e.subject),
      col((e) => e.sequence),
      col((e) => e.type),
      col((e) => e.metric),
      col((e) => e.amount),
      col((e) => e.period),
      col((e) => e.periodStart),
      col((e) => e.periodEnd),
      col((e) => e.actor),
      col((e) => e.reason),
      col((e) => e.idempotencyKey),
      col((e) => (e.attributes ? encodeJson(e.attributes) : null)),
      col((e) => encodeJson(e.data)),
      col((e) => e.recordedAt),
      ccol((x) => x.subject),
      ccol((x) => x.metric),
      ccol((x) => x.period),
      ccol((x) => x.state.used),
      ccol((x) => x.state.periodStart),
      ccol((x) => x.state.periodEnd),
      ccol((x) => x.state.lastResetAt),
      ccol((x) => x.state.lastSequence),
      c.subjects.map((s) => s.subject),
      c.subjects.map((s) => s.last),
      c.subjects.map((s) => s.version),
      checkVersions,
      c.subjects.length,
      ccol((x) => x.state.reserved),
    ],
  );
}
