import {
  applyConsumes,
  cancelledBeforeCommit,
  type ConsumeCall,
  type ConsumeOutcome,
  type ConsumeResult,
  type CounterWrite,
  type PriorUsage,
  type SequencedEvent,
  type SubjectState,
} from '../domain/consume-batch.js';
import { counterKey } from '../domain/quota.js';
import { DEFAULT_SUBJECT } from '../domain/validate.js';
import {
  COUNTER_COLUMNS,
  counterFromRow,
  decodeData,
  encodeJson,
  QUOTA_COLUMNS,
  quotaFromRow,
  type CounterRow,
  type QuotaRow,
} from './codec.js';
import type { ConsumeCommand, LedgerDeps } from './commands.js';
import { countAppended, inTransaction, type Tx } from './db.js';

export type { ConsumeCall, ConsumeOutcome, ConsumeResult } from '../domain/consume-batch.js';
export { noQuota } from '../domain/consume-batch.js';

/** A call waiting in a flush; a fired signal before the decision drops it unrecorded. */
export interface PendingConsume extends ConsumeCall {
  signal?: AbortSignal;
}

/**
 * Applies consumes in one transaction, in the order given, with set-based SQL: one statement
 * locks every subject involved (sorted, so flushes never deadlock each other), one reads
 * their quotas, counters and earlier idempotency keys, one writes every event, counter and
 * sequence. Each call gets its own answer; only a failure of the transaction itself fails
 * them all, and then none is committed.
 */
export async function consumeMany(
  deps: LedgerDeps,
  calls: readonly PendingConsume[],
  signal?: AbortSignal,
): Promise<ConsumeOutcome[]> {
  return inTransaction(
    deps.db,
    async (tx) => {
      const bySubject = new Map<string, number[]>();
      calls.forEach((c, i) => {
        const list = bySubject.get(c.cmd.subject);
        if (list) list.push(i);
        else bySubject.set(c.cmd.subject, [i]);
      });
      const states = await loadSubjects(tx, [...bySubject.keys()], calls);
      const now = deps.clock.now();
      const outcomes: ConsumeOutcome[] = new Array<ConsumeOutcome>(calls.length);
      const events: SequencedEvent[] = [];
      const counters: (CounterWrite & { subject: string })[] = [];
      const sequences: { subject: string; last: bigint }[] = [];
      for (const [subject, indexes] of bySubject) {
        const live = indexes.filter((i) => {
          if (!calls[i]!.signal?.aborted) return true;
          outcomes[i] = { ok: false, error: cancelledBeforeCommit() };
          return false;
        });
        const state = states.get(subject)!;
        const before = state.lastSequence;
        const changes = applyConsumes(
          state,
          live.map((i) => calls[i]!),
          now,
        );
        live.forEach((i, k) => (outcomes[i] = changes.outcomes[k]!));
        events.push(...changes.events);
        for (const c of changes.counters) counters.push({ subject, ...c });
        if (changes.lastSequence !== before)
          sequences.push({ subject, last: changes.lastSequence });
      }
      await writeChanges(tx, events, counters, sequences);
      // A subject row made just now for calls that recorded nothing would be an empty trace
      // of failed calls; a call that changes nothing leaves nothing.
      const unused = [...states.values()].filter((s) => s.lastSequence === 0n);
      if (unused.length > 0) {
        await tx.query(
          'DELETE FROM subjects WHERE subject = ANY($1::text[]) AND last_sequence = 0',
          [unused.map((s) => s.subject)],
        );
      }
      return outcomes;
    },
    signal,
  );
}

/** One Consume in its own transaction: the unbatched path, and the reference for the batched one. */
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

async function loadSubjects(
  tx: Tx,
  subjects: string[],
  calls: readonly PendingConsume[],
): Promise<Map<string, SubjectState>> {
  subjects.sort();
  const lockSql = `SELECT subject, last_sequence FROM subjects WHERE subject = ANY($1::text[])
    ORDER BY subject FOR UPDATE`;
  const locked = new Map<string, bigint>();
  type SubjectRow = { subject: string; last_sequence: bigint };
  for (const r of (await tx.query<SubjectRow>(lockSql, [subjects])).rows) {
    locked.set(r.subject, r.last_sequence);
  }
  const missing = subjects.filter((s) => !locked.has(s));
  if (missing.length > 0) {
    await tx.query(
      `INSERT INTO subjects (subject) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING`,
      [missing],
    );
    for (const r of (await tx.query<SubjectRow>(lockSql, [missing])).rows) {
      locked.set(r.subject, r.last_sequence);
    }
  }

  // Read after the locks are held: in READ COMMITTED each statement sees what committed
  // before it started, so these rows are the latest any writer of these subjects left.
  const metrics = [...new Set(calls.map((c) => c.cmd.metric))];
  const keyed = calls.filter((c) => c.cmd.idempotencyKey);
  // One after another: a client runs one statement at a time anyway.
  const defs = await tx.query<QuotaRow>(
    `SELECT ${QUOTA_COLUMNS} FROM quotas WHERE subject = ANY($1::text[]) AND metric = ANY($2::text[])`,
    [[...subjects, DEFAULT_SUBJECT], metrics],
  );
  const counters = await tx.query<CounterRow>(
    `SELECT ${COUNTER_COLUMNS} FROM counters WHERE subject = ANY($1::text[]) AND metric = ANY($2::text[])`,
    [subjects, metrics],
  );
  const priors =
    keyed.length === 0
      ? null
      : await tx.query<PriorRow>(
          `SELECT e.subject, e.idempotency_key, e.metric, e.amount, e.sequence, e.data
             FROM unnest($1::text[], $2::text[]) AS k(subject, key)
             JOIN ledger_events e ON e.subject = k.subject AND e.type = 'USAGE' AND e.idempotency_key = k.key`,
          [keyed.map((c) => c.cmd.subject), keyed.map((c) => c.cmd.idempotencyKey)],
        );

  const defList = defs.rows.map(quotaFromRow);
  const states = new Map<string, SubjectState>();
  for (const subject of subjects) {
    states.set(subject, {
      subject,
      lastSequence: locked.get(subject)!,
      defs: defList,
      counters: new Map(),
      priors: new Map(),
    });
  }
  for (const r of counters.rows) {
    states.get(r.subject)!.counters.set(counterKey(r.metric, r.period), counterFromRow(r));
  }
  for (const r of priors?.rows ?? [])
    states.get(r.subject)!.priors.set(r.idempotency_key, prior(r));
  return states;
}

interface PriorRow {
  subject: string;
  idempotency_key: string;
  metric: string;
  amount: bigint;
  sequence: bigint;
  data: Record<string, unknown>;
}

function prior(r: PriorRow): PriorUsage {
  const data = decodeData(r.data);
  return {
    metric: r.metric,
    amount: r.amount,
    sequence: r.sequence,
    overLimit: data.overLimit ?? false,
    quotas: data.quotas ?? [],
  };
}

/** Every event, counter and subject sequence of a flush in one statement of array parameters. */
async function writeChanges(
  tx: Tx,
  events: SequencedEvent[],
  counters: (CounterWrite & { subject: string })[],
  sequences: { subject: string; last: bigint }[],
): Promise<void> {
  if (events.length === 0 && counters.length === 0) return;
  const col = <T>(f: (e: SequencedEvent) => T): T[] => events.map(f);
  const ccol = <T>(f: (c: CounterWrite & { subject: string }) => T): T[] => counters.map(f);
  await tx.query(
    `WITH appended AS (
       INSERT INTO ledger_events (subject, sequence, type, metric, amount, period, period_start,
         period_end, actor, reason, idempotency_key, attributes, data, recorded_at)
       SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::int8[], $6::text[],
         $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::jsonb[],
         $13::jsonb[], $14::timestamptz[])
     ), projected AS (
       INSERT INTO counters (${COUNTER_COLUMNS})
       SELECT * FROM unnest($15::text[], $16::text[], $17::text[], $18::int8[], $19::timestamptz[],
         $20::timestamptz[], $21::timestamptz[], $22::int8[])
       ON CONFLICT (subject, metric, period) DO UPDATE SET
         used = EXCLUDED.used, period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end,
         last_reset_at = EXCLUDED.last_reset_at, last_sequence = EXCLUDED.last_sequence
     )
     UPDATE subjects s SET last_sequence = u.last FROM unnest($23::text[], $24::int8[]) AS u(subject, last)
      WHERE s.subject = u.subject`,
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
      ccol((c) => c.subject),
      ccol((c) => c.metric),
      ccol((c) => c.period),
      ccol((c) => c.state.used),
      ccol((c) => c.state.periodStart),
      ccol((c) => c.state.periodEnd),
      ccol((c) => c.state.lastResetAt),
      ccol((c) => c.state.lastSequence),
      sequences.map((s) => s.subject),
      sequences.map((s) => s.last),
    ],
  );
  const counts: Record<string, number> = {};
  for (const e of events) counts[e.type] = (counts[e.type] ?? 0) + 1;
  countAppended(tx, counts);
}
